// Shared by the `dps` and `hub` commands: flag parsing (with the common flags), the service
// client from --service / --service-file / DPS_SERVICE_CONNECTION_STRING and --ca, and output.
import { ProvisioningError } from '../../src/errors.js';
import { parse, readCaFile, readSecret } from '../shared/args.js';
import type { CliIo } from '../shared/io.js';
import { DpsServiceClient, parseServiceConnectionString } from './client.js';

/** The CLI's io. */
export type Io = CliIo;

export const SERVICE_ENV = 'DPS_SERVICE_CONNECTION_STRING';

export type Flags = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;
export type Values = Record<string, string | boolean | string[] | undefined>;

const COMMON: Flags = {
  service: { type: 'string' },
  'service-file': { type: 'string' },
  ca: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
};

/** Each request (connection, TLS, the whole answer) ends within --timeout seconds. */
const DEFAULT_TIMEOUT_SECONDS = 30;

export const COMMON_HELP = `Common options:
  --service <cs>        the DPS service connection string (env ${SERVICE_ENV}); for the emulator
                        HostName=<host>:<port>;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=<key>
  --service-file <path> read the connection string from a file instead
  --ca <pem>            trust this CA certificate as well (the emulator's ca.pem)
  --timeout <seconds>   give up on a request not fully answered within this (default ${DEFAULT_TIMEOUT_SECONDS}; exit 8)
  --json                print JSON
`;

/** Parse flags (the common ones included); undefined when --help was printed. */
export function parseFlags(argv: string[], flags: Flags, help: string, io: Io): Values | undefined {
  return parse(argv, { ...COMMON, ...flags }, help, io);
}

/** The client for --service / --service-file / the environment, trusting --ca. */
export function serviceClient(values: Values, io: Io): DpsServiceClient {
  const inline = values.service as string | undefined;
  const text =
    readSecret(inline === '' ? undefined : inline, values['service-file'] as string | undefined, '--service') ?? io.env[SERVICE_ENV];
  if (!text)
    throw new ProvisioningError('invalid-input', `Missing --service <connection string> (or the ${SERVICE_ENV} environment variable)`);
  const connection = parseServiceConnectionString(text);
  const caFile = values.ca as string | undefined;
  const ca = caFile === undefined ? undefined : readCaFile(caFile);
  return new DpsServiceClient(connection, { ...(ca && { ca }), timeoutMs: timeoutSeconds(values.timeout) * 1000 });
}

function timeoutSeconds(value: Values[string]): number {
  if (value === undefined) return DEFAULT_TIMEOUT_SECONDS;
  if (typeof value !== 'string' || !/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 86_400) {
    throw new ProvisioningError('invalid-input', '--timeout must be a whole number of seconds from 1 to 86400');
  }
  return Number(value);
}

export function required(values: Values, flag: string): string {
  const value = values[flag];
  if (typeof value !== 'string' || value === '') throw new ProvisioningError('invalid-input', `Missing --${flag}`);
  return value;
}

export function printJson(io: Io, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

/** A word from the command line, echoed only when it cannot be a secret. */
export function safe(text: string): string {
  return /^[A-Za-z0-9._:-]{1,64}$/.test(text) ? text : '?';
}

/** A required secret given as --<flag> <value> or --<flag>-file <path>. */
export function readSecretFlag(values: Values, flag: string): string {
  const secret = optionalSecretFlag(values, flag);
  if (secret === undefined) throw new ProvisioningError('invalid-input', `Missing --${flag} (or --${flag}-file <path>)`);
  return secret;
}

export function optionalSecretFlag(values: Values, flag: string): string | undefined {
  const inline = values[flag];
  const file = values[`${flag}-file`];
  const secret = readSecret(
    typeof inline === 'string' && inline !== '' ? inline : undefined,
    typeof file === 'string' ? file : undefined,
    `--${flag}`,
  );
  return secret === '' ? undefined : secret;
}
