// The web console's pages rendered on the server as console/server.ts renders them: a page's
// route handler reads the emulator through the in-process service API (a signed request each, as
// the session signs them) and writes the HTML; timed from the call to the finished page, with no
// TLS and no socket. The emulator runs in this process with examples/emulator.json (three hubs
// weighted 1, 2 and 7, the group demo-group), a second group and 10 individual enrollments; the
// pages are measured with no device yet, then after N devices have registered over MQTT (none
// of them has sent telemetry). Median of `runs` renders per page, after 5 not counted; KB = 1000 bytes.
// `node bench/console.js [--devices=1000] [--runs=50]`: figures only, no pass/fail exit.
import { randomBytes } from 'node:crypto';
import { runFleet } from '../cli/fleet/run.js';
import { loadOrCreateCertificates } from '../emulator/certificates.js';
import { loadConfigFile } from '../emulator/config-file.js';
import { CONSOLE_CSS, CONSOLE_JS } from '../emulator/console/assets.js';
import { enrollmentRoutes } from '../emulator/console/pages/enrollments.js';
import { hubRoutes } from '../emulator/console/pages/hubs.js';
import { linkedHubRoutes } from '../emulator/console/pages/linked-hubs.js';
import { liveRoutes } from '../emulator/console/pages/live.js';
import { overviewRoutes } from '../emulator/console/pages/overview.js';
import type { ConsoleInfo, Route } from '../emulator/console/routes.js';
import { ConsoleService } from '../emulator/console/service.js';
import { DeviceEventLog } from '../emulator/event-log.js';
import { startEmulator } from '../emulator/index.js';
import { startServiceApi } from '../emulator/service-api.js';
import { loadOrCreateServicePolicy } from '../emulator/service-auth.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { registerDevice } from '../src/dps/flow.js';
import { deriveDeviceKey } from '../src/identity.js';
import { BENCH_GROUP_KEY, median } from './common.js';

const ROUTES: Route[] = [...overviewRoutes, ...linkedHubRoutes, ...enrollmentRoutes, ...hubRoutes, ...liveRoutes];
const INDIVIDUALS = 10;
const WARM_UP = 5;
const PAGES = [
  '/',
  '/linked-hubs',
  '/linked-hubs/demo-hub-3.azure-devices.net/edit',
  '/allocation-policy',
  '/enrollments',
  '/enrollments/new/group',
  '/enrollments/group/demo-group',
  '/enrollments/individual/sensor-0',
  '/hubs',
  '/live',
];

interface PageFigure {
  path: string;
  ms: number;
  kb: number;
}

export async function run(options: { stateDir: string; configFile: string; devices: number; runs: number }) {
  const { idScope = '0ne00DEMO01', config } = await loadConfigFile(options.configFile);
  const demo = config.enrollmentGroups?.[0]?.attestation;
  if (demo?.type !== 'symmetricKey' || !demo.symmetricKey?.primaryKey)
    throw new Error(`${options.configFile}: no symmetric-key group first`);
  const demoKey = demo.symmetricKey.primaryKey;
  const individualKey = (id: string) => deriveDeviceKey(BENCH_GROUP_KEY, id);
  config.enrollmentGroups = [
    ...(config.enrollmentGroups ?? []),
    {
      enrollmentGroupId: 'bench',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: BENCH_GROUP_KEY, secondaryKey: BENCH_GROUP_KEY } },
      initialTwin: { tags: {}, properties: { desired: { telemetryInterval: 60 } } },
    },
  ];
  config.individualEnrollments = Array.from({ length: INDIVIDUALS }, (_, i) => {
    const key = individualKey(`sensor-${i}`);
    return { registrationId: `sensor-${i}`, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: key } } };
  });

  // The device events and the service API the console is given (emulator/index.ts), over this emulator's model and hubs.
  let events: DeviceEventLog | undefined;
  const dps = await startEmulator({
    idScope,
    stateDir: options.stateDir,
    inMemory: true,
    console: false,
    retryAfterSeconds: 0,
    assignmentDelayMs: 0,
    config,
    onEvent: (event) => events?.record(event),
  });
  events = new DeviceEventLog(dps.model);
  const certificates = await loadOrCreateCertificates({ stateDir: options.stateDir });
  const policy = await loadOrCreateServicePolicy(options.stateDir);
  const api = await startServiceApi({
    model: dps.model,
    idScope,
    policy,
    cert: certificates.serverCertPem,
    key: certificates.serverKeyPem,
    host: '127.0.0.1',
    port: 0,
    deviceProvisioningHostName: `127.0.0.1:${dps.endpoint.port}`,
    hubs: dps.hubs,
    events,
  });
  const info: ConsoleInfo = {
    deviceEndpoint: `127.0.0.1:${dps.endpoint.port}`,
    hubEndpoint: `127.0.0.1:${dps.hubEndpoint.port}`,
    httpsEndpoint: `127.0.0.1:${dps.httpsEndpoint.port}`,
    serviceUrl: `https://${api.hostName}`,
    caPem: dps.caPem,
    caPath: dps.caPath,
    connectionString: `HostName=${api.hostName};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=${policy.primaryKey}`,
  };

  const csrf = randomBytes(32).toString('base64url'); // a session's, as session.ts makes it
  /** One GET as the console's server answers it (a ConsoleService per request). */
  const render = async (path: string): Promise<string> => {
    for (const route of ROUTES) {
      const match = route.method === 'GET' ? route.path.exec(path) : null;
      if (!match) continue;
      const reply = await route.handle(
        {
          service: new ConsoleService(api.call, api.hostName, policy.primaryKey),
          csrf,
          form: new URLSearchParams(),
          query: new URLSearchParams(),
          info,
          signedIn: false,
          isClosed: () => false,
          // only the live stream uses the request and the response
          req: undefined as never,
          res: undefined as never,
        },
        match.slice(1).map((p) => decodeURIComponent(p)),
      );
      if (reply === 'streamed' || reply.html === undefined || (reply.status ?? 200) !== 200) throw new Error(`${path}: not a page`);
      return reply.html;
    }
    throw new Error(`${path}: no such page`);
  };

  const measure = async (label: string): Promise<PageFigure[]> => {
    console.log(`  ${label}: median ms per page (of ${options.runs}), size`);
    const figures: PageFigure[] = [];
    for (const path of PAGES) {
      let html = '';
      for (let i = 0; i < WARM_UP; i++) html = await render(path);
      const samples: number[] = [];
      for (let i = 0; i < options.runs; i++) {
        const started = performance.now();
        html = await render(path);
        samples.push(performance.now() - started);
      }
      const figure = { path, ms: median(samples), kb: Buffer.byteLength(html) / 1000 };
      console.log(`    ${path.padEnd(48)} ${figure.ms.toFixed(2).padStart(7)} ms ${figure.kb.toFixed(1).padStart(7)} KB`);
      figures.push(figure);
    }
    return figures;
  };

  try {
    const assets = { stylesheetBytes: Buffer.byteLength(CONSOLE_CSS), scriptBytes: Buffer.byteLength(CONSOLE_JS) };
    console.log(`  /assets/console.css ${assets.stylesheetBytes} bytes, /assets/console.js ${assets.scriptBytes} bytes`);
    const empty = await measure('no device yet');
    const connect = createTlsConnect({ ca: dps.caPem, resumeSessions: true });
    const summary = await runFleet({
      count: options.devices,
      concurrency: 16,
      provision: (i) => {
        const registrationId = i < INDIVIDUALS ? `sensor-${i}` : i % 2 ? `demo-${i}` : `bench-${i}`;
        const deviceKey =
          i < INDIVIDUALS ? individualKey(registrationId) : deriveDeviceKey(i % 2 ? demoKey : BENCH_GROUP_KEY, registrationId);
        return registerDevice(
          { idScope, registrationId, deviceKey, endpoint: dps.endpoint, timeoutMs: 60_000 },
          { connect, clock: systemClock, random: nodeRandom },
        );
      },
    });
    if (summary.failed) throw new Error(`${summary.failed} devices failed: ${JSON.stringify(summary.firstError)}`);
    const registered = await measure(`${options.devices} devices registered`);
    return { ...assets, devices: options.devices, runs: options.runs, empty, registered };
  } finally {
    await api.close();
    await dps.close();
  }
}
