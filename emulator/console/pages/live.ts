// Live: the device events as they happen (server-sent events, fed by the service API's GET
// /events), a chart of the devices in each hub against each hub's share of the allocation
// weights, and the instance's metrics over time (GET /metrics): what to watch while `fleet`
// runs. The server renders every fragment; the script only inserts them.
import type { LoggedEvent, Metrics } from '../../event-log.js';
import { describeEvent } from '../../event-text.js';
import { type Html, html, page } from '../html.js';
import { frame, type Reply, type Route, type RouteContext } from '../routes.js';
import type { ResourceView } from './overview.js';

interface HubSummary {
  name: string;
  deviceCount: number;
}

/** How long one long poll of GET /events waits; a comment line keeps the stream open meanwhile. */
const POLL_SECONDS = 15;
/** The charts are sent again at most this often while events pour in. */
const CHART_INTERVAL_MS = 500;
/** Buckets of the metrics chart (10 s each: the last five minutes). */
const METRIC_BUCKETS = 30;
const EVENTS_SHOWN = 50;

export const liveRoutes: Route[] = [
  { method: 'GET', path: /^\/live$/, handle: (context) => livePage(context) },
  { method: 'GET', path: /^\/live\/stream$/, handle: (context) => stream(context) },
];

async function livePage(context: RouteContext): Promise<Reply> {
  const [events, charts] = await Promise.all([context.service.json<LoggedEvent[]>('GET', '/events'), chartsFragment(context)]);
  const next = (events.at(-1)?.sequenceNumber ?? 0) + 1;
  const body = html`<p>Device events and allocation as they happen (<span id="stream-state" role="status">connecting…</span>). Run
<code>moddable-dps fleet</code> against this emulator and watch the devices spread over the hubs.</p>
<div id="charts" data-live-stream="/live/stream?from=${next}">${charts}</div>
<h2 id="events-title">Device events</h2>
<ol class="events" id="events" aria-labelledby="events-title" tabindex="0">${eventItems(events).slice(-EVENTS_SHOWN).reverse()}</ol>`;
  return { html: page({ title: 'Live', active: '/live', body, ...frame(context) }) };
}

/** text/event-stream: `device` events ({html} of one list item) and `charts` ({html} of the charts). */
async function stream(context: RouteContext): Promise<'streamed'> {
  const { req, res, service } = context;
  let from = Number(/^\d{1,15}$/.test(context.query.get('from') ?? '') ? context.query.get('from') : 0);
  let open = true;
  req.on('close', () => {
    open = false;
  });
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  const write = async (text: string): Promise<void> => {
    if (!open || res.destroyed) return;
    if (!res.write(text)) await new Promise<void>((resolve) => res.once('drain', resolve).once('close', resolve));
  };
  const sendCharts = async (): Promise<void> => {
    await write(`event: charts\ndata: ${JSON.stringify({ html: (await chartsFragment(context)).text })}\n\n`);
  };
  await sendCharts();
  let chartsSent = Date.now();
  while (open && !context.isClosed()) {
    const answer = await service.request('GET', `/events?from=${from}&waitSeconds=${POLL_SECONDS}`);
    if (!open || context.isClosed()) break;
    const events = answer.status === 200 ? (answer.body as LoggedEvent[]) : [];
    if (events.length === 0) {
      await write(': waiting\n\n');
      await sendCharts(); // the metrics buckets move on
      chartsSent = Date.now();
      continue;
    }
    from = events.at(-1)!.sequenceNumber + 1;
    await write(
      eventItems(events)
        .map((item) => `event: device\ndata: ${JSON.stringify({ html: item.text })}\n\n`)
        .join(''),
    );
    const wait = CHART_INTERVAL_MS - (Date.now() - chartsSent);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    await sendCharts();
    chartsSent = Date.now();
  }
  res.end();
  return 'streamed';
}

async function chartsFragment(context: RouteContext): Promise<Html> {
  const [resource, hubs, metrics] = await Promise.all([
    context.service.json<ResourceView>('GET', '/resource'),
    context.service.json<HubSummary[]>('GET', '/hubs'),
    context.service.json<Metrics>('GET', '/metrics'),
  ]);
  return html`${allocationChart(resource, hubs)}${metricsChart(metrics)}`;
}

/** Devices per hub (share of all devices) against the hub's share of the weights of hubs the policy may choose. */
function allocationChart(resource: ResourceView, hubs: HubSummary[]): Html {
  const linked = resource.properties.iotHubs;
  const counts = new Map(hubs.map((h) => [h.name.toLowerCase(), h.deviceCount]));
  const rows = [
    ...linked.map((h) => ({ name: h.name, weight: h.applyAllocationPolicy === false ? 0 : (h.allocationWeight ?? 1) })),
    ...hubs
      .filter((h) => h.deviceCount > 0 && !linked.some((l) => l.name.toLowerCase() === h.name.toLowerCase()))
      .map((h) => ({ name: h.name, weight: 0 })),
  ].map((row) => ({ ...row, devices: counts.get(row.name.toLowerCase()) ?? 0 }));
  const totalDevices = rows.reduce((sum, r) => sum + r.devices, 0);
  const totalWeight = rows.reduce((sum, r) => sum + r.weight, 0);
  const pct = (part: number, whole: number) => (whole === 0 ? 0 : (100 * part) / whole);
  const width = 560;
  const rowHeight = 46;
  const svg = html`<svg viewBox="0 0 ${width + 60} ${Math.max(1, rows.length) * rowHeight + 4}" role="img" aria-labelledby="allocation-title">${rows.map(
    (row, i) => {
      const y = i * rowHeight;
      const d = pct(row.devices, totalDevices);
      const w = pct(row.weight, totalWeight);
      return html`<g data-hub="${row.name}"><text x="0" y="${y + 12}">${row.name}</text>
<rect class="devices" x="0" y="${y + 16}" height="12" width="${((width * d) / 100).toFixed(1)}"></rect><text x="${((width * d) / 100 + 4).toFixed(1)}" y="${y + 27}">${Math.round(d)}%</text>
<rect class="weight" x="0" y="${y + 30}" height="12" width="${((width * w) / 100).toFixed(1)}"></rect><text x="${((width * w) / 100 + 4).toFixed(1)}" y="${y + 41}">${Math.round(w)}%</text></g>`;
    },
  )}</svg>`;
  return html`<section class="chart" aria-labelledby="allocation-title"><h2 id="allocation-title">Devices per hub against weight share (${
    resource.properties.allocationPolicy
  })</h2>
<p class="legend"><span class="devices">share of the devices</span><span class="weight">share of the allocation weights</span></p>${svg}
<table id="allocation-table"><thead><tr><th scope="col">Hub</th><th scope="col">Devices</th><th scope="col">Share of devices</th><th scope="col">Weight share</th></tr></thead>
<tbody>${rows.map(
    (r) =>
      html`<tr data-hub="${r.name}"><th scope="row">${r.name}</th><td class="num" data-devices>${r.devices}</td><td class="num">${pct(
        r.devices,
        totalDevices,
      ).toFixed(1)}%</td><td class="num">${pct(r.weight, totalWeight).toFixed(1)}%</td></tr>`,
  )}</tbody></table></section>`;
}

/** Registrations, assignments and failures per 10 s over the last five minutes, and the totals. */
function metricsChart(metrics: Metrics): Html {
  const size = metrics.bucketSeconds * 1000;
  const last = Math.floor(Date.now() / size) * size;
  const byStart = new Map(metrics.buckets.map((b) => [b.start, b]));
  const buckets = Array.from({ length: METRIC_BUCKETS }, (_, i) => byStart.get(last - (METRIC_BUCKETS - 1 - i) * size));
  const failures = (b: Metrics['buckets'][number] | undefined) => Object.values(b?.failures ?? {}).reduce((s, n) => s + n, 0);
  const series = [
    ['registrations', (b: Metrics['buckets'][number] | undefined) => b?.registrations ?? 0],
    ['assignments', (b: Metrics['buckets'][number] | undefined) => b?.assignments ?? 0],
    ['failures', failures],
  ] as const;
  const max = Math.max(1, ...buckets.flatMap((b) => series.map(([, value]) => value(b))));
  const height = 120;
  const slot = 20;
  const t = metrics.totals;
  const failureCodes = Object.entries(t.failures).sort((a, b) => b[1] - a[1]);
  return html`<section class="chart" aria-labelledby="metrics-title"><h2 id="metrics-title">Metrics, last five minutes (10 s buckets)</h2>
<p class="legend"><span class="registrations">registrations</span><span class="assignments">assignments</span><span class="failures">failures</span></p>
<svg viewBox="0 0 ${METRIC_BUCKETS * slot} ${height + 2}" role="img" aria-label="Registrations, assignments and failures per 10 seconds; peak ${max}">
<line class="axis" x1="0" x2="${METRIC_BUCKETS * slot}" y1="${height}" y2="${height}"></line>${buckets.map((b, i) =>
    series.map(([name, value], k) => {
      const h = (height * value(b)) / max;
      return html`<rect class="series-${name}" x="${i * slot + 2 + k * 5}" y="${(height - h).toFixed(1)}" width="5" height="${h.toFixed(1)}"></rect>`;
    }),
  )}</svg>
<table id="metrics-totals"><caption>Since the emulator started</caption><tbody>
<tr><th scope="row">Attestation attempts</th><td class="num">${t.attestationSucceeded + t.attestationFailed}</td><td>${t.attestationSucceeded} succeeded, ${
    t.attestationFailed
  } failed</td></tr>
<tr><th scope="row">Registrations</th><td class="num" data-metric="registrations">${t.registrations}</td><td></td></tr>
<tr><th scope="row">Assignments</th><td class="num" data-metric="assignments">${t.assignments}</td><td>${Object.entries(t.assignmentsByHub)
    .map(([hub, n]) => `${hub}: ${n}`)
    .join(', ')}</td></tr>
<tr><th scope="row">Failures</th><td class="num">${failureCodes.reduce((s, [, n]) => s + n, 0)}</td><td>${
    failureCodes.length === 0 ? 'none' : failureCodes.map(([code, n]) => `${code}: ${n}`).join(', ')
  }</td></tr></tbody></table></section>`;
}

/** A list item per event the terminal log would show (event-text.ts). */
function eventItems(entries: LoggedEvent[]): Html[] {
  return entries.flatMap((entry) => {
    const text = describeEvent(entry.event, entry.outcome);
    if (text === undefined) return [];
    return [
      html`<li data-seq="${entry.sequenceNumber}"><time datetime="${entry.timeUtc}">${entry.timeUtc.slice(11, 19)}</time>${text}</li>`,
    ];
  });
}
