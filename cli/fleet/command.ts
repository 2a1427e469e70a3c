// `moddable-dps fleet`: provision many virtual devices of one enrollment group at once, to
// load-test a DPS setup (the local emulator or a real instance). Each device is the core's
// registerDevice over the Node host's TLS (or MQTT over WebSockets with --transport mqtt-ws), its
// key derived from the group key once, or its certificate issued by the --ca-cert CA. With
// --connect, each device then goes online with its hub through the core's hub session (as
// `moddable-dps device` does): connected, twin received, --msg-count messages sent, closed.
import { rsaKeyPair } from '../../emulator/certificates.js';
import { nodeRandom, systemClock } from '../../hosts/node/clock.js';
import { DPS_GLOBAL_ENDPOINT, type RegistrationResult, registerDevice } from '../../src/dps/flow.js';
import { ProvisioningError } from '../../src/errors.js';
import { connectHub } from '../../src/hub/session.js';
import { deriveDeviceKey, validateIdScope, validateRegistrationId } from '../../src/identity.js';
import type { Connect } from '../../src/ports.js';
import { formatEndpoint } from '../../src/provisioner.js';
import {
  integer,
  parse,
  parseEndpoint,
  readCaFile,
  readCertificateFile,
  readPrivateKeyFile,
  readSecret,
  required,
} from '../shared/args.js';
import { type IssuingCa, issueDeviceCertificate, loadSigningCa } from '../shared/certificates.js';
// cli.ts registers this command, so the import is circular: only used at call time, which is safe.
import { type CliIo, EXIT_CODES } from '../shared/io.js';
import { parseTransport, transportConnect } from '../shared/provisioning.js';
import { createProgressView, type ProgressView } from './progress.js';
import { type ConnectSummary, type FleetSummary, fleetRegistrationId, runFleet } from './run.js';

/** CliIo, optionally saying whether stderr is a terminal (default: process.stderr's). */
export interface FleetIo extends CliIo {
  stderrIsTTY?: boolean;
  columns?: number;
}

const MAX_COUNT = 1_000_000;
const MAX_CONCURRENCY = 10_000;
const MAX_MESSAGES = 1000;
/** A hub request (CONNACK, the twin, a message's PUBACK) ends within this, or --timeout when shorter. */
const HUB_REQUEST_TIMEOUT_MS = 30_000;

const FLAGS = {
  'id-scope': { type: 'string' },
  'group-key': { type: 'string' },
  'group-key-file': { type: 'string' },
  count: { type: 'string' },
  concurrency: { type: 'string' },
  prefix: { type: 'string' },
  start: { type: 'string' },
  endpoint: { type: 'string' },
  ca: { type: 'string' },
  'ca-cert': { type: 'string' },
  'ca-key': { type: 'string' },
  timeout: { type: 'string' },
  'full-handshakes': { type: 'boolean' },
  connect: { type: 'boolean' },
  'hub-endpoint': { type: 'string' },
  transport: { type: 'string' },
  'msg-count': { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean' },
} as const;

const HELP = `Usage: moddable-dps fleet --id-scope <s> (--group-key <k> | --ca-cert <pem> --ca-key <pem>) --count <n> [options]

Provisions <n> virtual devices of one enrollment group, at most --concurrency at a time, and
prints a summary: assigned and failed devices (by kind), wall time, throughput and latency
percentiles. A load test for a DPS setup: the local emulator or your own DPS instance.

  --id-scope <s>             ID scope (env PROVISIONING_IDSCOPE)
  --group-key <k>            the enrollment group key; --group-key-file <path> to read it
  --ca-cert <pem> --ca-key <pem>  X.509 instead: each device gets a certificate issued on the fly
                             by this CA (CN = its registration ID; one RSA 2048 key pair shared by
                             the run's devices), for an X.509 enrollment group that trusts the CA;
                             no TLS session resumption then (a session carries its certificate)
  --count <n>                how many devices (1 to ${MAX_COUNT})
  --concurrency <c>          devices in flight at once (default 10)
  --prefix <p>               registration IDs are <p> + the zero-padded index (default dev-)
  --start <i>                first index (default 0)
  --endpoint <host[:port]>   DPS endpoint (env PROVISIONING_HOST; default ${DPS_GLOBAL_ENDPOINT.host}:${DPS_GLOBAL_ENDPOINT.port},
                             :443 with --transport mqtt-ws)
  --ca <pem>                 trust this CA certificate as well (e.g. the emulator's)
  --transport mqtt|mqtt-ws   MQTT over TLS on 8883 (default), or MQTT over secure WebSockets on 443
                             (through HTTPS_PROXY when set; NO_PROXY honoured), DPS and hubs alike
  --timeout <seconds>        each device's flow ends within this (default 300); with --connect,
                             its connect too
  --connect                  then take each provisioned device online with its assigned hub
                             (over --transport, the core's hub session): connect, receive the twin, send
                             --msg-count messages, disconnect; the summary adds how many connected,
                             connect failures by kind and connect latency percentiles (the
                             wall time and throughput then include the connects)
  --hub-endpoint <host[:port]>  with --connect: connect here instead of the assigned hub (the
                             local emulator; the credentials still name the hub)
  --msg-count <n>            with --connect: telemetry messages per device (default 0, at most ${MAX_MESSAGES})
  --full-handshakes          a full TLS handshake per device, as real devices do; by default
                             later devices resume the first one's TLS session (cheaper for
                             both ends)
  --json                     print the summary as JSON on stdout
  --quiet                    no progress on stderr

Progress goes to stderr: a bar on a terminal, a line per 10 % otherwise.
Exit status: 0 when every device was assigned (and, with --connect, went online); 2 bad input;
otherwise the status 'register' uses for the most frequent kind of failure, provisioning and
connect failures counted together (3 unauthorized, 6 throttled, 8 network, ...).
`;

export async function fleet(argv: string[], io: FleetIo): Promise<number> {
  const v = parse(argv, FLAGS, HELP, io);
  if (!v) return 0;
  const env = io.env;
  const idScope = validateIdScope(required(v['id-scope'] ?? env.PROVISIONING_IDSCOPE, '--id-scope', 'PROVISIONING_IDSCOPE'));
  const issuer = fleetCa(v);
  const groupKey = issuer ? undefined : required(readSecret(v['group-key'], v['group-key-file'], '--group-key'), '--group-key');
  const count = integer(required(v.count, '--count'), '--count', 1, MAX_COUNT);
  const concurrency = v.concurrency === undefined ? 10 : integer(v.concurrency, '--concurrency', 1, MAX_CONCURRENCY);
  const start = v.start === undefined ? 0 : integer(v.start, '--start', 0, Number.MAX_SAFE_INTEGER - MAX_COUNT);
  const timeoutMs = (v.timeout === undefined ? 300 : integer(v.timeout, '--timeout', 1, 86_400)) * 1000;
  const prefix = v.prefix ?? 'dev-';
  const lastIndex = start + count - 1;
  const idOf = (i: number): string => fleetRegistrationId(prefix, start + i, lastIndex);
  for (const id of [idOf(0), idOf(count - 1)]) {
    try {
      validateRegistrationId(id);
    } catch (error) {
      throw new ProvisioningError(
        'invalid-input',
        `--prefix ${JSON.stringify(prefix)} gives the registration ID ${JSON.stringify(id)}: ${(error as Error).message}`,
      );
    }
  }
  if (groupKey) deriveDeviceKey(groupKey, idOf(0)); // a group key that is not base64 is bad input, before any traffic
  const { transport, defaultPort } = parseTransport(v.transport);
  const endpointText = v.endpoint ?? env.PROVISIONING_HOST;
  const endpoint = endpointText ? parseEndpoint(endpointText, defaultPort) : { host: DPS_GLOBAL_ENDPOINT.host, port: defaultPort };
  const ca = v.ca === undefined ? undefined : readCaFile(v.ca);
  if (!v.connect) {
    const stray = (['hub-endpoint', 'msg-count'] as const).filter((flag) => v[flag] !== undefined);
    if (stray.length > 0)
      throw new ProvisioningError('invalid-input', `${stray.map((flag) => `--${flag}`).join(' and ')} go with --connect`);
  }
  const hubEndpoint = v['hub-endpoint'] === undefined ? undefined : parseEndpoint(v['hub-endpoint'], defaultPort);
  const msgCount = v['msg-count'] === undefined ? 0 : integer(v['msg-count'], '--msg-count', 0, MAX_MESSAGES);
  const resumeSessions = !v['full-handshakes'] && !issuer;
  const connectFor = (clientCertificate?: { cert: string; key: string }) => {
    const tlsOptions = { ...(ca !== undefined && { ca }), resumeSessions, ...(clientCertificate && { clientCertificate }) };
    return transportConnect(transport, tlsOptions, env);
  };
  const shared = issuer ? undefined : connectFor();
  // X.509: one key pair for the run (an RSA key per device would cost more than its provisioning), a certificate per device.
  const keyPair = issuer ? rsaKeyPair() : undefined;

  const progress: ProgressView | undefined = v.quiet
    ? undefined
    : createProgressView({
        write: io.stderr,
        isTTY: io.stderrIsTTY ?? process.stderr.isTTY === true,
        columns: io.columns ?? process.stderr.columns ?? 80,
      });
  let summary: FleetSummary;
  try {
    summary = await runFleet({
      count,
      concurrency,
      provision: async (i): Promise<Provisioned> => {
        const registrationId = idOf(i);
        const deviceKey = groupKey ? deriveDeviceKey(groupKey, registrationId) : undefined; // once per device
        const connect = shared ?? connectFor(issueDeviceCertificate(issuer!, registrationId, { keyPair: keyPair! }));
        const registration = await registerDevice(
          { idScope, registrationId, ...(deviceKey && { deviceKey }), endpoint, timeoutMs, clientVersion: 'moddable-dps/0.1.0' },
          { connect, clock: systemClock, random: nodeRandom },
        );
        return { registration, deviceKey, connect };
      },
      ...(v.connect && {
        connect: async (_i, provisioned) => {
          const { registration, deviceKey, connect } = provisioned as Provisioned;
          const session = await connectHub(
            {
              hub: registration.assignedHub,
              deviceId: registration.deviceId,
              ...(deviceKey && { deviceKey }),
              ...(hubEndpoint ? { endpoint: hubEndpoint } : transport === 'mqtt-ws' && { port: defaultPort }),
              requestTimeoutMs: Math.min(HUB_REQUEST_TIMEOUT_MS, timeoutMs),
              offlineTimeoutMs: timeoutMs,
            },
            { connect, clock: systemClock, random: nodeRandom },
          ); // resolves once connected and the twin received
          try {
            for (let seq = 1; seq <= msgCount; seq++) {
              await session.sendTelemetry(JSON.stringify({ seq, registrationId: registration.registrationId }), {
                contentType: 'application/json',
                contentEncoding: 'utf-8',
              });
            }
          } finally {
            session.close();
          }
        },
      }),
      ...(progress && { onProgress: (p) => progress.update(p) }),
    });
  } finally {
    progress?.finish();
  }

  const report = {
    idScope,
    endpoint: formatEndpoint(endpoint),
    firstRegistrationId: idOf(0),
    lastRegistrationId: idOf(count - 1),
    tlsSessionResumption: resumeSessions,
    ...summary,
    ...(summary.connect && { connect: { ...summary.connect, messagesPerDevice: msgCount } }),
  };
  io.stdout(v.json ? `${JSON.stringify(report, null, 2)}\n` : describeSummary(report));
  return exitCode(summary);
}

/** What provision resolves with: the key (or the certificate in its connect) stays in memory, for the connect. */
interface Provisioned {
  registration: RegistrationResult;
  deviceKey: string | undefined;
  connect: Connect;
}

/** --ca-cert and --ca-key (both, without a group key), read and checked once for the run; undefined without them. */
function fleetCa(v: Record<string, unknown>): IssuingCa | undefined {
  if (v['ca-cert'] === undefined && v['ca-key'] === undefined) return undefined;
  if (v['ca-cert'] === undefined || v['ca-key'] === undefined)
    throw new ProvisioningError('invalid-input', 'give --ca-cert and --ca-key together');
  if (v['group-key'] !== undefined || v['group-key-file'] !== undefined) {
    throw new ProvisioningError('invalid-input', 'give --group-key (symmetric keys) or --ca-cert/--ca-key (X.509), not both');
  }
  return loadSigningCa(readCertificateFile(v['ca-cert'] as string, '--ca-cert'), readPrivateKeyFile(v['ca-key'] as string, '--ca-key'));
}

/** 0 when all were assigned (and connected); otherwise the exit status of the most frequent failure kind, provisioning and connect together. */
export function exitCode(summary: Pick<FleetSummary, 'failed' | 'failedByKind' | 'connect'>): number {
  const counts: Record<string, number> = { ...summary.failedByKind };
  for (const [kind, n] of Object.entries(summary.connect?.failedByKind ?? {})) counts[kind] = (counts[kind] ?? 0) + n;
  const ranked = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  if (ranked.length === 0) return 0;
  const [kind] = ranked[0]!;
  return EXIT_CODES[kind as keyof typeof EXIT_CODES] ?? EXIT_CODES.unexpected;
}

function describeSummary(r: FleetSummary & { endpoint: string; firstRegistrationId: string; lastRegistrationId: string }): string {
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const lines = [
    `fleet: ${r.count} devices (${r.firstRegistrationId} … ${r.lastRegistrationId}) at ${r.endpoint}, concurrency ${r.concurrency}`,
    `  assigned     ${r.succeeded}`,
    `  failed       ${r.failed}`,
    ...Object.entries(r.failedByKind).map(([kind, n]) => `    ${kind.padEnd(13)} ${String(n).padStart(6)}  first: ${r.firstError[kind]}`),
    `  wall time    ${(r.wallTimeMs / 1000).toFixed(3)} s`,
    `  throughput   ${r.throughputPerSecond.toFixed(1)} assigned/s`,
    r.latencyMs
      ? `  latency      p50 ${ms(r.latencyMs.p50)}  p95 ${ms(r.latencyMs.p95)}  p99 ${ms(r.latencyMs.p99)}  max ${ms(r.latencyMs.max)}`
      : '  latency      (no device was assigned)',
    `  client CPU   ${ms(r.cpuMs.perDevice)} per device (user ${ms(r.cpuMs.user)}, system ${ms(r.cpuMs.system)} in all)`,
    ...(r.connect ? describeConnect(r.connect) : []),
  ];
  return `${lines.join('\n')}\n`;
}

function describeConnect(c: ConnectSummary): string[] {
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  return [
    `  connected    ${c.connected}   (of the assigned: online, twin received, messages sent)`,
    `  not online   ${c.failed}`,
    ...Object.entries(c.failedByKind).map(([kind, n]) => `    ${kind.padEnd(13)} ${String(n).padStart(6)}  first: ${c.firstError[kind]}`),
    c.latencyMs
      ? `  connect      p50 ${ms(c.latencyMs.p50)}  p95 ${ms(c.latencyMs.p95)}  p99 ${ms(c.latencyMs.p99)}  max ${ms(c.latencyMs.max)}`
      : '  connect      (no device connected)',
  ];
}
