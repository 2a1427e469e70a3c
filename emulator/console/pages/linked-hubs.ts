// Linked IoT hubs and the instance's allocation policy, as the portal's pages of those names:
// each change is a get-modify-put of the DPS resource guarded by its etag, as `dps linked-hub`
// and `dps update` do it, with the CLI's checks before the request and the service API's
// message, next to the field it names, when it refuses.
import { csrfField, field, html, page, postButton, select } from '../html.js';
import { frame, type Reply, type Route, type RouteContext } from '../routes.js';
import { ServiceFailure } from '../service.js';
import type { ResourceView } from './overview.js';

type HubEntry = ResourceView['properties']['iotHubs'][number];
type HubErrors = Partial<Record<'connectionString' | 'location' | 'allocationWeight' | 'applyAllocationPolicy', string>>;

interface HubSummary {
  name: string;
  linkProblem: string | null;
  deviceCount: number;
}

const POLICIES = [
  ['Hashed', 'Evenly weighted distribution (hashed): each device to a hub chosen by the weights'],
  ['GeoLatency', 'Lowest latency (geoLatency): the hub nearest to this endpoint’s region'],
  ['Static', 'Static configuration (static): the hub the enrollment names'],
] as const;

export const linkedHubRoutes: Route[] = [
  { method: 'GET', path: /^\/linked-hubs$/, handle: (context) => linkedHubs(context) },
  { method: 'POST', path: /^\/linked-hubs$/, handle: (context) => linkHub(context) },
  { method: 'GET', path: /^\/linked-hubs\/([^/]+)\/edit$/, handle: (context, [host]) => editHub(context, host!) },
  { method: 'POST', path: /^\/linked-hubs\/([^/]+)$/, handle: (context, [host]) => updateHub(context, host!) },
  { method: 'POST', path: /^\/linked-hubs\/([^/]+)\/unlink$/, handle: (context, [host]) => unlinkHub(context, host!) },
  { method: 'GET', path: /^\/allocation-policy$/, handle: (context) => allocationPolicy(context) },
  { method: 'POST', path: /^\/allocation-policy$/, handle: (context) => setAllocationPolicy(context) },
];

async function linkedHubs(context: RouteContext, form?: { values: URLSearchParams; errors: HubErrors }): Promise<Reply> {
  const [resource, hubs] = await Promise.all([
    context.service.json<ResourceView>('GET', '/resource'),
    context.service.json<HubSummary[]>('GET', '/hubs'),
  ]);
  const linked = resource.properties.iotHubs;
  const total = linked.filter((h) => h.applyAllocationPolicy !== false).reduce((sum, h) => sum + (h.allocationWeight ?? 1), 0);
  const summary = new Map(hubs.map((h) => [h.name.toLowerCase(), h]));
  const table =
    linked.length === 0
      ? html`<p>No IoT hub is linked: devices cannot be assigned until one is.</p>`
      : html`<table><caption class="visually-hidden">Linked IoT hubs</caption><thead><tr><th scope="col">Name</th><th scope="col">Location</th>
<th scope="col">Allocation weight</th><th scope="col">Share of hashed allocations</th><th scope="col">Apply allocation policy</th>
<th scope="col">Devices</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody>${linked.map((hub) => {
          const info = summary.get(hub.name.toLowerCase());
          const apply = hub.applyAllocationPolicy !== false;
          const share = apply && total > 0 ? `${Math.round((100 * (hub.allocationWeight ?? 1)) / total)}%` : '–';
          return html`<tr data-hub="${hub.name}"><th scope="row">${hub.name}${
            info?.linkProblem ? html` <span class="badge warn" title="${info.linkProblem}">out of date</span>` : ''
          }</th><td>${hub.location || '–'}</td><td class="num">${hub.allocationWeight ?? 1}</td><td class="num">${share}</td><td>${
            apply ? 'yes' : 'no'
          }</td><td class="num">${info?.deviceCount ?? 0}</td><td class="row-actions"><a href="/linked-hubs/${encodeURIComponent(
            hub.name,
          )}/edit">Edit<span class="visually-hidden"> ${hub.name}</span></a> ${postButton(
            `/linked-hubs/${encodeURIComponent(hub.name)}/unlink`,
            `Unlink`,
            context.csrf,
            { confirm: `Unlink ${hub.name}? Devices already assigned to it stay there.`, className: 'danger' },
          )}</td></tr>`;
        })}</tbody></table>`;
  const values = form?.values ?? new URLSearchParams();
  const errors = form?.errors ?? {};
  const body = html`${table}
<section aria-labelledby="link-title"><h2 id="link-title">Link an IoT hub</h2>
<form method="post" action="/linked-hubs" class="card" novalidate>${csrfField(context.csrf)}${hubFields(values, errors, true)}
<button type="submit">Link hub</button></form></section>`;
  return {
    ...(form && { status: 400 }),
    html: page({ title: 'Linked IoT hubs', active: '/linked-hubs', body, ...frame(context) }),
  };
}

function hubFields(values: URLSearchParams, errors: HubErrors, creating: boolean): ReturnType<typeof html> {
  return html`${field({
    name: 'connectionString',
    label: creating ? 'Connection string' : 'New connection string (optional)',
    type: 'password',
    autocomplete: 'off',
    // Never sent back: it holds the hub's key (after a refusal it is pasted again).
    value: '',
    error: errors.connectionString,
    hint: creating
      ? 'HostName=<hub>.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=… (a policy with RegistryWrite and ServiceConnect; an unknown hub is created)'
      : 'Re-links this hub with another key of its, e.g. after a key renewal; leave empty to keep the current one',
  })}${field({
    name: 'location',
    label: 'Location',
    value: values.get('location') ?? '',
    error: errors.location,
    hint: 'An Azure region, e.g. westus (used by the lowest-latency policy)',
  })}${field({
    name: 'allocationWeight',
    label: 'Allocation weight',
    inputmode: 'numeric',
    value: values.get('allocationWeight') ?? '',
    error: errors.allocationWeight,
    hint: '1 to 1000; empty means 1',
  })}${select({
    name: 'applyAllocationPolicy',
    label: 'Apply allocation policy',
    value: values.get('applyAllocationPolicy') ?? 'true',
    choices: [
      ['true', 'Yes: the policy may choose this hub'],
      ['false', 'No: only enrollments that list it'],
    ],
    error: errors.applyAllocationPolicy,
  })}`;
}

/** The CLI's checks of the flags (cli/dps/linked-hub.ts), on the form's fields. */
function changesFrom(values: URLSearchParams, errors: HubErrors): Partial<HubEntry> {
  const out: Partial<HubEntry> = {};
  const location = (values.get('location') ?? '').trim();
  if (location !== '') out.location = location;
  const weight = (values.get('allocationWeight') ?? '').trim();
  if (weight !== '') {
    if (!/^-?\d{1,9}$/.test(weight)) errors.allocationWeight = 'The allocation weight must be a whole number from 1 to 1000';
    else out.allocationWeight = Number(weight);
  }
  const apply = values.get('applyAllocationPolicy') ?? 'true';
  if (apply !== 'true' && apply !== 'false') errors.applyAllocationPolicy = 'Apply allocation policy must be true or false';
  else out.applyAllocationPolicy = apply === 'true';
  return out;
}

async function linkHub(context: RouteContext): Promise<Reply> {
  const values = context.form;
  const errors: HubErrors = {};
  const connectionString = (values.get('connectionString') ?? '').trim();
  if (connectionString === '') errors.connectionString = 'Give the connection string of the IoT hub to link';
  const changes = changesFrom(values, errors);
  if (Object.keys(errors).length > 0) return linkedHubs(context, { values, errors });
  const resource = await context.service.json<ResourceView>('GET', '/resource');
  resource.properties.iotHubs.push({ connectionString, ...changes } as HubEntry);
  return put(context, resource, `Linked ${hostNameOf(connectionString) ?? 'the hub'}`, (e) => linkedHubs(context, { values, errors: e }));
}

async function editHub(context: RouteContext, host: string, form?: { values: URLSearchParams; errors: HubErrors }): Promise<Reply> {
  const resource = await context.service.json<ResourceView>('GET', '/resource');
  const hub = resource.properties.iotHubs.find((h) => h.name.toLowerCase() === host.toLowerCase());
  if (!hub) return { redirect: '/linked-hubs', flash: { kind: 'error', text: `The IoT hub ${host} is not linked to this DPS instance` } };
  const values =
    form?.values ??
    new URLSearchParams({
      location: hub.location ?? '',
      allocationWeight: String(hub.allocationWeight ?? 1),
      applyAllocationPolicy: String(hub.applyAllocationPolicy !== false),
    });
  const body = html`<form method="post" action="/linked-hubs/${encodeURIComponent(hub.name)}" class="card" novalidate>${csrfField(
    context.csrf,
  )}${hubFields(values, form?.errors ?? {}, false)}<button type="submit">Save</button> <a href="/linked-hubs">Cancel</a></form>`;
  return {
    ...(form && { status: 400 }),
    html: page({ title: `Edit ${hub.name}`, active: '/linked-hubs', body, ...frame(context) }),
  };
}

async function updateHub(context: RouteContext, host: string): Promise<Reply> {
  const values = context.form;
  const errors: HubErrors = {};
  const changes = changesFrom(values, errors);
  const connectionString = (values.get('connectionString') ?? '').trim();
  const named = connectionString === '' ? undefined : hostNameOf(connectionString);
  if (named !== undefined && named.toLowerCase() !== host.toLowerCase()) {
    errors.connectionString = `This connection string names the hub ${named}, not ${host}: it re-links a hub with another key; to link another hub, use Link an IoT hub`;
  }
  if (Object.keys(errors).length > 0) return editHub(context, host, { values, errors });
  const resource = await context.service.json<ResourceView>('GET', '/resource');
  const hub = resource.properties.iotHubs.find((h) => h.name.toLowerCase() === host.toLowerCase());
  if (!hub) return { redirect: '/linked-hubs', flash: { kind: 'error', text: `The IoT hub ${host} is not linked to this DPS instance` } };
  Object.assign(hub, changes, connectionString !== '' && { connectionString });
  if (values.get('location')?.trim() === '') delete hub.location;
  return put(context, resource, `Saved ${hub.name}`, (e) => editHub(context, host, { values, errors: e }));
}

async function unlinkHub(context: RouteContext, host: string): Promise<Reply> {
  const resource = await context.service.json<ResourceView>('GET', '/resource');
  const hubs = resource.properties.iotHubs;
  const index = hubs.findIndex((h) => h.name.toLowerCase() === host.toLowerCase());
  if (index < 0)
    return { redirect: '/linked-hubs', flash: { kind: 'error', text: `The IoT hub ${host} is not linked to this DPS instance` } };
  hubs.splice(index, 1);
  return put(context, resource, `Unlinked ${host}`, () =>
    Promise.resolve({ redirect: '/linked-hubs', flash: { kind: 'error', text: `Could not unlink ${host}` } }),
  );
}

/** PUT /resource with the etag read; a refusal goes back to the form, next to the field it names. */
async function put(
  context: RouteContext,
  resource: ResourceView,
  done: string,
  refused: (errors: HubErrors) => Promise<Reply>,
): Promise<Reply> {
  try {
    await context.service.json('PUT', '/resource', { body: resource, headers: { 'if-match': `"${resource.etag}"` } });
  } catch (error) {
    if (!(error instanceof ServiceFailure)) throw error;
    if (error.status === 412) return refused({ connectionString: 'The linked hubs changed meanwhile: look again, then retry' });
    return refused({ [fieldOf(error.message)]: error.message.replace(/^iotHubs\[\d+\]: /, '') });
  }
  return { redirect: '/linked-hubs', flash: { kind: 'ok', text: done } };
}

/** Which field a service API message is about. */
function fieldOf(message: string): keyof HubErrors {
  if (/allocationWeight/.test(message)) return 'allocationWeight';
  if (/applyAllocationPolicy/.test(message)) return 'applyAllocationPolicy';
  if (/location|region/i.test(message)) return 'location';
  return 'connectionString';
}

function hostNameOf(connectionString: string): string | undefined {
  return /(?:^|;)\s*HostName=([^;]+)/i.exec(connectionString)?.[1]?.trim();
}

async function allocationPolicy(context: RouteContext, error?: string): Promise<Reply> {
  const resource = await context.service.json<ResourceView>('GET', '/resource');
  const current = context.form.get('allocationPolicy') ?? resource.properties.allocationPolicy;
  const body = html`<form method="post" action="/allocation-policy" class="card" novalidate>${csrfField(context.csrf)}
<fieldset${error ? html` aria-describedby="policy-error"` : ''}><legend>How DPS chooses the IoT hub of a device whose enrollment sets no policy</legend>
${POLICIES.map(
  ([value, label]) =>
    html`<div class="choice"><input type="radio" name="allocationPolicy" id="policy-${value}" value="${value}"${
      value.toLowerCase() === current.toLowerCase() ? html` checked` : ''
    }><label for="policy-${value}">${label}</label></div>`,
)}${error ? html`<p class="error" id="policy-error">${error}</p>` : ''}</fieldset>
<p class="hint">A custom allocation (a webhook) is set on an enrollment, not here.</p><button type="submit">Save</button></form>`;
  return {
    ...(error && { status: 400 }),
    html: page({ title: 'Allocation policy', active: '/allocation-policy', body, ...frame(context) }),
  };
}

async function setAllocationPolicy(context: RouteContext): Promise<Reply> {
  const wanted = context.form.get('allocationPolicy') ?? '';
  if (!POLICIES.some(([value]) => value === wanted)) return allocationPolicy(context, 'Choose one of the three policies');
  const resource = await context.service.json<ResourceView>('GET', '/resource');
  resource.properties.allocationPolicy = wanted;
  try {
    await context.service.json('PUT', '/resource', { body: resource, headers: { 'if-match': `"${resource.etag}"` } });
  } catch (error) {
    if (!(error instanceof ServiceFailure)) throw error;
    return allocationPolicy(context, error.message);
  }
  return { redirect: '/allocation-policy', flash: { kind: 'ok', text: `The allocation policy is now ${wanted}` } };
}
