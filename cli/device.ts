// `moddable-dps device`: a whole device on Node, shaped after `az iot device simulate`: provision
// (or reuse the store), connect to the assigned hub, print the twin, report, send messages at an
// interval, answer direct methods and print cloud-to-device messages; provision again when the
// hub turns the device away (src/device.ts), or when a `reprovision` method asks.
import { DEFAULT_MAX_REPROVISIONS, goOnline, type Online, type OnlineConfig } from '../src/device.js';
import { ProvisioningError } from '../src/errors.js';
import type { JsonObject } from '../src/hub/messages.js';
import type { MethodResult } from '../src/hub/methods.js';
import { shouldReprovision } from '../src/hub/reprovision.js';
import { printable } from '../src/text.js';
import { integer, jsonFlag, parse, parseEndpoint, propertyBag } from './shared/args.js';
import type { CliIo } from './shared/io.js';
import { describeHubEvent } from './shared/output.js';
import { CLIENT_VERSION, PROVISIONING_FLAGS, PROVISIONING_HELP, provisioningFromFlags } from './shared/provisioning.js';

const DEVICE_HELP = `Usage: moddable-dps device --id-scope <s> (--registration-id <r> | --registration-id-template <t> ...)
                           (--key <deviceKey> | --group-key <groupKey> | --cert <pem> --cert-key <pem>) [options]

Provisions the device (or reuses --store), connects to its IoT hub, prints the twin, reports
{"client", "registrationId", "provisionedAt"}, sends --msg-count messages every --msg-interval
seconds, answers direct methods and prints cloud-to-device messages. When the hub refuses the
device (disabled, deleted, another key) it provisions again, at most --max-reprovisions times;
a direct method "reprovision" does the same on demand.

${PROVISIONING_HELP}
  --hub-endpoint <host[:port]>      connect here instead of the assigned hub (development: the
                                    username, and the SAS token when there is one, still name the hub)
  --model-id <dtmi>                 IoT Plug and Play model ID (IoT Central): sent to DPS and the hub
  --msg-count <n>                   messages to send (default 10; 0: connect, report, and stop)
  --msg-interval <seconds>          between messages (default: the twin's desired telemetryInterval, else 3)
  --data <text>                     the message body (default {"seq": <n>, "registrationId": ...})
  --properties <a=b;c=d>            application properties of each message
  --method-response-code <n>        the status a direct method is answered with (default 200)
  --method-response-payload <json>  its payload (default {})
  --max-reprovisions <n>            provisioning rounds after the first, when the hub refuses (default 3)

Exit status: as register; 0 when all messages were sent.
`;

const FLAGS = {
  ...PROVISIONING_FLAGS,
  'hub-endpoint': { type: 'string' },
  'model-id': { type: 'string' },
  'msg-count': { type: 'string' },
  'msg-interval': { type: 'string' },
  data: { type: 'string' },
  properties: { type: 'string' },
  'method-response-code': { type: 'string' },
  'method-response-payload': { type: 'string' },
  'max-reprovisions': { type: 'string' },
} as const;

const DEFAULT_INTERVAL_SECONDS = 3;

export async function device(argv: string[], io: CliIo): Promise<number> {
  const v = parse(argv, FLAGS, DEVICE_HELP, io);
  if (!v) return 0;
  const { config, ports, print, transport, defaultPort } = provisioningFromFlags(v, io);
  const count = v['msg-count'] === undefined ? 10 : integer(v['msg-count'], '--msg-count', 0, 1_000_000);
  const fixedInterval = v['msg-interval'] === undefined ? undefined : integer(v['msg-interval'], '--msg-interval', 0, 86_400);
  const methodStatus =
    v['method-response-code'] === undefined ? 200 : integer(v['method-response-code'], '--method-response-code', 100, 599);
  const methodPayload = jsonFlag(v['method-response-payload'], '--method-response-payload') ?? {};
  const properties = v.properties === undefined ? undefined : propertyBag(v.properties);
  const maxReprovisions = v['max-reprovisions'] === undefined ? undefined : integer(v['max-reprovisions'], '--max-reprovisions', 0, 100);

  let desiredInterval: number | undefined;
  let reprovisionAsked: (() => void) | undefined;
  const onMethod = (name: string, payload: unknown): MethodResult => {
    print(`method ${printable(name)} ${printable(JSON.stringify(payload) ?? '')}`);
    if (name === 'reprovision') {
      // Answer first; the session closes on the next turn and the loop below provisions again.
      setTimeout(() => reprovisionAsked?.(), 100);
      return { status: 200, payload: { reprovisioning: true } };
    }
    return { status: methodStatus, payload: methodPayload };
  };
  const online: OnlineConfig = {
    ...config,
    ...(v['hub-endpoint'] !== undefined && { hubEndpoint: parseEndpoint(v['hub-endpoint'], defaultPort) }),
    ...(v['model-id'] !== undefined && { modelId: v['model-id'] }),
    ...(maxReprovisions !== undefined && { maxReprovisions }),
    session: {
      ...(transport === 'mqtt-ws' && { port: defaultPort }),
      onDesired: (patch: JsonObject, version: number) => {
        print(`desired properties (version ${version}): ${printable(JSON.stringify(patch))}`);
        const interval = patch.telemetryInterval;
        if (typeof interval === 'number' && Number.isInteger(interval) && interval >= 0 && interval <= 86_400) desiredInterval = interval;
      },
      onMethod,
      onC2D: (body, messageProperties) =>
        print(`cloud-to-device message: ${printable(new TextDecoder().decode(body))} ${printable(JSON.stringify(messageProperties))}`),
    },
  };
  const hubPorts = {
    ...ports,
    hubLog: (event: Parameters<typeof describeHubEvent>[0]) => print(describeHubEvent(event)),
    onEvent: (event: { reason: string; round: number; waitMs: number }) =>
      print(
        `the hub turned the device away (${printable(event.reason)}): provisioning again, round ${event.round}, in ${(event.waitMs / 1000).toFixed(1)} s`,
      ),
  };

  const budget = maxReprovisions ?? DEFAULT_MAX_REPROVISIONS;
  let current: Online = await goOnline(online, hubPorts);
  let reprovisions = current.reprovisions;
  const first = current;
  io.stdout(
    v.json
      ? ''
      : `assignedHub: ${printable(current.assignment.assignedHub)}\ndeviceId: ${printable(current.assignment.deviceId)}\ntwin: ${printable(JSON.stringify(current.session.twin))}\n`,
  );
  const reportedVersion = await current.session.updateReported({
    client: CLIENT_VERSION,
    registrationId: current.assignment.registrationId,
    provisionedAt: current.assignment.provisionedAt,
  });
  print(`reported properties (version ${reportedVersion})`);

  let sent = 0;
  try {
    while (sent < count) {
      const seconds = fixedInterval ?? desiredInterval ?? DEFAULT_INTERVAL_SECONDS;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        new Promise<'send'>((resolve) => (timer = setTimeout(() => resolve('send'), sent === 0 ? 0 : seconds * 1000))),
        current.session.ended.then((error) => ({ ended: error })),
        new Promise<'reprovision'>((resolve) => (reprovisionAsked = () => resolve('reprovision'))),
      ]);
      clearTimeout(timer);
      if (outcome === 'send') {
        const body = v.data ?? JSON.stringify({ seq: sent + 1, registrationId: current.assignment.registrationId });
        try {
          await current.session.sendTelemetry(body, {
            contentType: 'application/json',
            contentEncoding: 'utf-8',
            ...(properties && { properties }),
          });
          sent++;
          print(`sent message ${sent} of ${count}`);
        } catch (error) {
          if (current.session.isConnected) throw error;
          // The connection dropped while sending: the session reconnects (or ends); the message is sent again.
        }
        continue;
      }
      const why = outcome === 'reprovision' ? undefined : outcome.ended;
      if (outcome !== 'reprovision' && !shouldReprovision(why)) {
        throw why ?? new ProvisioningError('network', 'The IoT Hub session ended');
      }
      current.session.close();
      if (reprovisions >= budget)
        throw why ?? new ProvisioningError('failed', `Asked to provision again more than --max-reprovisions (${budget}) times`);
      if (outcome !== 'reprovision') print(`the hub turned the device away (${printable(why!.message)}): provisioning again`);
      current = await goOnline({ ...online, force: true, maxReprovisions: budget - reprovisions - 1 }, hubPorts);
      reprovisions += 1 + current.reprovisions;
      print(`online again on ${printable(current.assignment.assignedHub)}`);
    }
  } finally {
    current.session.close();
  }
  if (v.json) {
    const result = {
      assignment: current.assignment,
      fromCache: first.fromCache,
      reprovisions,
      twin: current.session.twin,
      reportedVersion,
      sent,
    };
    io.stdout(`${JSON.stringify(result, null, 2).split('\n').map(printable).join('\n')}\n`);
  } else {
    io.stdout(`sent: ${sent} messages${reprovisions > 0 ? `\nreprovisions: ${reprovisions}` : ''}\n`);
  }
  return 0;
}
