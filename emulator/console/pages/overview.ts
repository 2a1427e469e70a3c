// Overview: what a firmware developer needs to point a device at this instance (ID scope,
// endpoints, the CA and the firmware's mcconfig line) and the service connection string,
// masked until asked for (a copy button, or Show).
import { mcconfigLine } from '../../firmware-line.js';
import { csrfField, type Html, html, page } from '../html.js';
import { frame, type Reply, type Route, type RouteContext } from '../routes.js';

export interface ResourceView {
  etag: string;
  properties: {
    idScope: string;
    allocationPolicy: string;
    iotHubs: Array<{
      connectionString: string;
      name: string;
      location?: string;
      allocationWeight?: number | null;
      applyAllocationPolicy?: boolean | null;
    }>;
    serviceOperationsHostName: string;
    deviceProvisioningHostName: string;
  };
}

export const overviewRoutes: Route[] = [
  { method: 'GET', path: /^\/$/, handle: (context) => overview(context, false) },
  { method: 'POST', path: /^\/reveal-connection-string$/, handle: (context) => overview(context, true) },
  {
    method: 'POST',
    path: /^\/connection-string$/,
    handle: async (context) => ({ json: { value: context.info.connectionString } }),
  },
  {
    method: 'GET',
    path: /^\/ca\.pem$/,
    handle: async (context) => ({ file: { name: 'dps-emulator-ca.pem', type: 'application/x-pem-file', body: context.info.caPem } }),
  },
];

async function overview(context: RouteContext, reveal: boolean): Promise<Reply> {
  const { service, info } = context;
  const [resource, groups, individuals] = await Promise.all([
    service.json<ResourceView>('GET', '/resource'),
    service.query<{ enrollmentGroupId: string; provisioningStatus?: string }>('/enrollmentGroups/query'),
    service.query<{ registrationId: string }>('/enrollments/query'),
  ]);
  const p = resource.properties;
  const masked = info.connectionString.replace(/SharedAccessKey=[^;]*/i, 'SharedAccessKey=****');
  const line = mcconfigLine(
    { idScope: p.idScope, caPath: info.caPath, enrollmentGroups: groups, individualEnrollments: individuals },
    { platform: 'lin', endpoint: info.deviceEndpoint, hubEndpoint: info.hubEndpoint },
  );
  const rows: Array<[string, Html | string]> = [
    ['ID scope', html`<code id="id-scope">${p.idScope}</code>`],
    ['Device endpoint (MQTT over TLS)', html`<code>${info.deviceEndpoint}</code>`],
    ['Device HTTPS endpoint', html`<code>https://${info.httpsEndpoint}</code>`],
    ['MQTT over WebSockets', html`<code>wss://${info.httpsEndpoint}/$iothub/websocket</code>`],
    ['IoT hubs endpoint', html`<code>${info.hubEndpoint}</code>`],
    ['Service endpoint', html`<code>${info.serviceUrl}</code>`],
    ['Allocation policy', html`<a href="/allocation-policy">${p.allocationPolicy}</a>`],
    ['Linked IoT hubs', html`<a href="/linked-hubs">${p.iotHubs.length}</a>`],
    ['Enrollments', html`<a href="/enrollments">${plural(groups.length, 'group')}, ${individuals.length} individual</a>`],
  ];
  const body = html`<dl class="facts">${rows.map(([term, value]) => html`<dt>${term}</dt><dd>${value}</dd>`)}</dl>
<section aria-labelledby="cs-title"><h2 id="cs-title">Service connection string</h2>
<p class="secret"><code id="connection-string">${reveal ? info.connectionString : masked}</code></p>
<div class="actions"><button type="button" data-copy-secret="/connection-string">Copy</button>
${reveal ? '' : html`<form method="post" action="/reveal-connection-string" class="inline">${csrfField(context.csrf)}<button type="submit">Show</button></form>`}
<span role="status" class="copied" data-copy-status></span></div>
<p class="hint">What the <code>dps</code> and <code>hub</code> commands take as <code>--service</code> or <code>DPS_SERVICE_CONNECTION_STRING</code>.</p></section>
<section aria-labelledby="ca-title"><h2 id="ca-title">Trust the emulator's CA</h2>
<p><a href="/ca.pem" download>Download the CA certificate</a> (also <code>${info.caPath}</code>); the CLI takes it as <code>--ca</code>.</p>
<p>Build the firmware for the Moddable simulator against this emulator:</p>
<pre class="command"><code id="mcconfig">${line}</code></pre></section>`;
  return { html: page({ title: 'Overview', active: '/', body, ...frame(context) }) };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
