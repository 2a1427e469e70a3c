// The provisioning flags `register` and `device` share (the flags of Microsoft's samples and of
// `az iot dps`), turned into the core's DeviceConfig and the Node host's ports.

import { nodeRandom, systemClock } from '../../hosts/node/clock.js';
import { createFileStore } from '../../hosts/node/file-store.js';
import { proxyFromEnv } from '../../hosts/node/proxy.js';
import { type ClientCertificate, createTlsConnect, type TlsConnectOptions } from '../../hosts/node/tls-connect.js';
import { createWebSocketConnect, WEBSOCKET_PORT } from '../../hosts/node/ws-connect.js';
import { DEFAULT_TIMEOUT_MS, DPS_GLOBAL_ENDPOINT } from '../../src/dps/flow.js';
import { ProvisioningError } from '../../src/errors.js';
import type { Connect, ProvisioningEvent } from '../../src/ports.js';
import type { DeviceConfig, ProvisionerPorts } from '../../src/provisioner.js';
import { printable } from '../../src/text.js';
import { jsonFlag, parseEndpoint, readCaFile, readCertificateFile, readPrivateKeyFile, readSecret, required } from './args.js';
import type { CliIo } from './io.js';
import { describeEvent } from './output.js';

export const CLIENT_VERSION = 'moddable-dps/0.1.0';

export const PROVISIONING_FLAGS = {
  'id-scope': { type: 'string' },
  'registration-id': { type: 'string' },
  'registration-id-template': { type: 'string' },
  serial: { type: 'string' },
  mac: { type: 'string' },
  key: { type: 'string' },
  'key-file': { type: 'string' },
  'group-key': { type: 'string' },
  'group-key-file': { type: 'string' },
  cert: { type: 'string' },
  'cert-key': { type: 'string' },
  endpoint: { type: 'string' },
  transport: { type: 'string' },
  ca: { type: 'string' },
  payload: { type: 'string' },
  store: { type: 'string' },
  'store-optional': { type: 'boolean' },
  force: { type: 'boolean' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean' },
} as const;

export const PROVISIONING_HELP = `  --id-scope <s>                    ID scope (env PROVISIONING_IDSCOPE)
  --registration-id <r>             registration ID (env PROVISIONING_REGISTRATION_ID)
  --registration-id-template <t>    build the ID from the identity, e.g. '{serial}-{mac}'
  --serial <n>, --mac <m>           the identity the template is filled with
  --key <deviceKey>                 the device's key (env PROVISIONING_SYMMETRIC_KEY); --key-file <path>
  --group-key <groupKey>            an enrollment group key: the device key is derived; --group-key-file <path>
  --cert <pem> --cert-key <pem>     X.509 attestation instead of a key: the device certificate (CN = the registration
                                    ID; intermediates after it) and its private key, presented in the TLS handshake
  --endpoint <host[:port]>          DPS endpoint (env PROVISIONING_HOST; default global.azure-devices-provisioning.net:8883,
                                    :443 with --transport mqtt-ws)
  --transport mqtt|mqtt-ws          MQTT over TLS on 8883 (default), or MQTT over secure WebSockets on 443 where
                                    8883 is blocked; mqtt-ws goes through the proxy in HTTPS_PROXY (NO_PROXY honoured)
  --ca <pem>                        trust this CA certificate as well (e.g. the emulator's)
  --payload <json>                  custom data sent with the registration
  --store <file>                    where the assignment is kept between runs (only a new file or a
                                    store file is written; a symbolic link's target is updated)
  --store-optional                  a store that cannot be used is a warning, not exit 12
  --force                           provision even when a matching assignment is stored
  --timeout <seconds>               give up provisioning after this long (default 300)
  --json                            print the result as JSON
  --quiet                           no progress lines on stderr (warnings still are printed)`;

export type ProvisioningValues = {
  [K in keyof typeof PROVISIONING_FLAGS]?: (typeof PROVISIONING_FLAGS)[K]['type'] extends 'boolean' ? boolean : string;
};

export type Transport = 'mqtt' | 'mqtt-ws';

export interface Provisioning {
  config: DeviceConfig;
  /** How the device reaches DPS, and its hub after it. */
  transport: Transport;
  /** The port a host:port without one means: 8883 for MQTT, 443 for MQTT over WebSockets. */
  defaultPort: number;
  /** `connect` carries --ca and the device certificate (--cert, --cert-key) for every connection of the command. */
  ports: ProvisionerPorts;
  /** Prints a progress line unless --quiet (warnings always). */
  print: (line: string, warning?: boolean) => void;
}

/** --transport: how a device reaches DPS and its hub, and the port a host without one means there. */
export function parseTransport(value: string | undefined): { transport: Transport; defaultPort: number } {
  const transport = value ?? 'mqtt';
  if (transport !== 'mqtt' && transport !== 'mqtt-ws') {
    throw new ProvisioningError('invalid-input', `--transport must be mqtt or mqtt-ws, not '${printable(transport)}'`);
  }
  return { transport, defaultPort: transport === 'mqtt-ws' ? WEBSOCKET_PORT : DPS_GLOBAL_ENDPOINT.port };
}

/** The Connect port for `transport`: TLS, or MQTT over WebSockets over TLS, through the proxy HTTPS_PROXY names. */
export function transportConnect(transport: Transport, options: TlsConnectOptions, env: CliIo['env']): Connect {
  return transport === 'mqtt-ws' ? createWebSocketConnect({ ...options, proxyFor: proxyFromEnv(env) }) : createTlsConnect(options);
}

/** The flags' meaning, checked before any traffic. */
export function provisioningFromFlags(v: ProvisioningValues, io: CliIo): Provisioning {
  const env = io.env;
  const template = v['registration-id-template'];
  const registrationId = v['registration-id'] ?? (template ? undefined : env.PROVISIONING_REGISTRATION_ID);
  if (registrationId && template)
    throw new ProvisioningError('invalid-input', 'Give --registration-id or --registration-id-template, not both');
  if (!registrationId && !template)
    throw new ProvisioningError(
      'invalid-input',
      'Missing --registration-id or --registration-id-template (or PROVISIONING_REGISTRATION_ID)',
    );
  const groupKey = readSecret(v['group-key'], v['group-key-file'], '--group-key');
  const clientCertificate = clientCertificateFromFlags(v);
  const deviceKey =
    readSecret(v.key, v['key-file'], '--key') ?? (groupKey || clientCertificate ? undefined : env.PROVISIONING_SYMMETRIC_KEY);
  const payload = jsonFlag(v.payload, '--payload');
  const { transport, defaultPort } = parseTransport(v.transport);
  const ca = v.ca === undefined ? undefined : readCaFile(v.ca);
  const endpointText = v.endpoint ?? env.PROVISIONING_HOST;
  // Not given: the global endpoint, on the transport's port (the core's default is MQTT's).
  const endpoint = endpointText
    ? parseEndpoint(endpointText, defaultPort)
    : transport === 'mqtt-ws'
      ? { host: DPS_GLOBAL_ENDPOINT.host, port: defaultPort }
      : undefined;
  const print = (line: string, warning = false) => {
    if (!v.quiet || warning) io.stderr(`${line}\n`);
  };
  const warning = (event: ProvisioningEvent) => event.type === 'store-failed' || event.type === 'store-unreadable';
  if (transport === 'mqtt' && proxyFromEnv(env)(`https://${(endpoint ?? DPS_GLOBAL_ENDPOINT).host}/`)) {
    // MQTT over TLS cannot cross an HTTP proxy: say so rather than ignore the setting.
    print('warning: HTTPS_PROXY is set, but --transport mqtt connects directly; --transport mqtt-ws goes through the proxy', true);
  }
  if (v['store-optional'] && !v.store) throw new ProvisioningError('invalid-input', '--store-optional needs --store');
  const timeoutMs = v.timeout !== undefined ? timeoutSeconds(v.timeout) * 1000 : DEFAULT_TIMEOUT_MS;
  // The store's file operations end by the same deadline as the flow (a hung file system).
  const deadline = systemClock.now() + timeoutMs;
  return {
    config: {
      idScope: required(v['id-scope'] ?? env.PROVISIONING_IDSCOPE, '--id-scope', 'PROVISIONING_IDSCOPE'),
      ...(registrationId && { registrationId }),
      ...(template && {
        registrationIdTemplate: template,
        identity: { ...(v.serial && { serial: v.serial }), ...(v.mac && { mac: v.mac }) },
      }),
      ...(deviceKey && { deviceKey }),
      ...(groupKey && { groupKey }),
      ...(clientCertificate && { x509: true }),
      ...(endpoint && { endpoint }),
      ...(payload !== undefined && { payload }),
      ...(v.force && { force: true }),
      ...(v.store && !v['store-optional'] && { storeRequired: true }),
      timeoutMs,
      clientVersion: CLIENT_VERSION,
    },
    ports: {
      connect: transportConnect(transport, { ...(ca && { ca }), ...(clientCertificate && { clientCertificate }) }, env),
      clock: systemClock,
      random: nodeRandom,
      log: (event) => print(describeEvent(event), warning(event)),
      ...(v.store && { store: createFileStore(v.store, { deadline }) }),
    },
    transport,
    defaultPort,
    print,
  };
}

/** --cert and --cert-key, both or neither. */
function clientCertificateFromFlags(v: ProvisioningValues): ClientCertificate | undefined {
  if (v.cert === undefined && v['cert-key'] === undefined) return undefined;
  if (v.cert === undefined) throw new ProvisioningError('invalid-input', '--cert-key needs --cert (the device certificate)');
  if (v['cert-key'] === undefined)
    throw new ProvisioningError('invalid-input', '--cert needs --cert-key (the private key of the device certificate)');
  return { cert: readCertificateFile(v.cert, '--cert'), key: readPrivateKeyFile(v['cert-key'], '--cert-key') };
}

/** --timeout: a positive whole number of seconds, at most a day. */
function timeoutSeconds(text: string): number {
  const seconds = Number(text);
  if (!/^\d+$/.test(text) || seconds < 1 || seconds > 86_400) {
    throw new ProvisioningError('invalid-input', '--timeout must be a positive number of seconds (a whole number up to 86400)');
  }
  return seconds;
}
