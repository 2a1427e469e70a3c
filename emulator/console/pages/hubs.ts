// Hubs: every emulated IoT hub with the devices in its registry (as DPS created them), each with
// its status, whether it is online at the hub endpoint, its twin (tags, desired and reported
// properties) and the last message it sent. Never a device key.
import { type Html, html, json, page } from '../html.js';
import { frame, type Reply, type Route, type RouteContext } from '../routes.js';

interface HubSummary {
  name: string;
  linked: boolean;
  linkProblem: string | null;
  deviceCount: number;
}

interface DeviceView {
  deviceId: string;
  registrationId?: string;
  status: string;
  connectionState?: string;
  tags: Record<string, unknown>;
  properties: { desired: Record<string, unknown>; reported?: Record<string, unknown> };
  lastUpdatedDateTimeUtc: string;
}

interface TelemetryView {
  deviceId: string;
  body: string;
  enqueuedTimeUtc: string;
}

/** Devices listed per hub at most; the rest are counted. */
const MAX_DEVICES_SHOWN = 500;

export const hubRoutes: Route[] = [{ method: 'GET', path: /^\/hubs$/, handle: (context) => hubsPage(context) }];

async function hubsPage(context: RouteContext): Promise<Reply> {
  const { service } = context;
  const hubs = await service.json<HubSummary[]>('GET', '/hubs');
  const sections = await Promise.all(
    hubs.map(async (hub) => {
      const path = `/hubs/${encodeURIComponent(hub.name)}`;
      const [devices, telemetry] = await Promise.all([
        service.json<DeviceView[]>('GET', `${path}/devices`),
        service.json<TelemetryView[]>('GET', `${path}/events?waitSeconds=0`),
      ]);
      const last = new Map<string, TelemetryView>();
      for (const message of telemetry) last.set(message.deviceId, message);
      return hubSection(hub, devices, last);
    }),
  );
  const body =
    hubs.length === 0
      ? html`<p>No IoT hub yet: <a href="/linked-hubs">link one</a>.</p>`
      : html`<p>Each hub's registry, as DPS filled it. Reload for the latest, or watch <a href="/live">Live</a>.</p>${sections}`;
  return { html: page({ title: 'Hubs', active: '/hubs', body, ...frame(context) }) };
}

function hubSection(hub: HubSummary, devices: DeviceView[], last: Map<string, TelemetryView>): Html {
  const id = `hub-${hub.name.replace(/[^A-Za-z0-9-]/g, '-')}`;
  const online = devices.filter((d) => d.connectionState === 'Connected').length;
  const shown = devices.slice(0, MAX_DEVICES_SHOWN);
  return html`<section aria-labelledby="${id}" data-hub="${hub.name}"><h2 id="${id}">${hub.name}${
    hub.linked ? '' : html` <span class="badge">not linked</span>`
  }${hub.linkProblem ? html` <span class="badge warn" title="${hub.linkProblem}">out of date</span>` : ''}</h2>
<p>${devices.length} ${devices.length === 1 ? 'device' : 'devices'}, ${online} online.</p>${
    devices.length === 0
      ? ''
      : html`<table><thead><tr><th scope="col">Device ID</th><th scope="col">Registration ID</th><th scope="col">Status</th>
<th scope="col">Connection</th><th scope="col">Last telemetry</th><th scope="col">Twin</th></tr></thead><tbody>${shown.map((device) => {
          const message = last.get(device.deviceId);
          return html`<tr data-device="${device.deviceId}"><th scope="row">${device.deviceId}</th><td>${device.registrationId ?? '–'}</td>
<td>${device.status}</td><td><span class="badge ${device.connectionState === 'Connected' ? 'ok' : ''}">${
            device.connectionState === 'Connected' ? 'online' : 'offline'
          }</span></td><td>${
            message
              ? html`<time datetime="${message.enqueuedTimeUtc}">${message.enqueuedTimeUtc}</time><br><code>${clip(message.body)}</code>`
              : '–'
          }</td><td><details><summary>Twin<span class="visually-hidden"> of ${device.deviceId}</span></summary><pre><code>${json({
            tags: device.tags,
            properties: { desired: device.properties.desired, reported: device.properties.reported ?? {} },
          })}</code></pre></details></td></tr>`;
        })}</tbody></table>${
          devices.length > shown.length
            ? html`<p>and ${devices.length - shown.length} more (the CLI lists them all: <code>hub device-identity list</code>).</p>`
            : ''
        }`
  }</section>`;
}

function clip(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}
