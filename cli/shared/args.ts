// Small, strict helpers for the CLI's arguments (the CLI parses flags with node:util parseArgs).
// Every failure is ProvisioningError('invalid-input'); no message repeats a secret's value.

import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { isNestedDeeper, MAX_JSON_DEPTH } from '../../src/dps/messages.js';
import { ProvisioningError } from '../../src/errors.js';
import type { Endpoint } from '../../src/ports.js';
import type { CliIo } from './io.js';

export const DEFAULT_DPS_PORT = 8883;

/** RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens. */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address (which then has no port).
 * The returned host has no brackets.
 */
export function parseEndpoint(text: string, defaultPort: number = DEFAULT_DPS_PORT): Endpoint {
  const input = text.trim();
  // Echo the input only when it cannot be a pasted secret (a connection string has '=', ';').
  const shown = /^[A-Za-z0-9.:[\]_-]{1,300}$/.test(input) ? ` '${input}'` : '';
  const bad = (why: string) =>
    new ProvisioningError(
      'invalid-input',
      `the endpoint${shown} is not valid: ${why}; expected host[:port], e.g. global.azure-devices-provisioning.net:8883 or [::1]:8883`,
    );
  if (input === '') throw bad('it is empty');
  if (/[=;]/.test(input)) throw bad('give only the host name, not a connection string');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(input)) throw bad('give the host without a scheme (no mqtts:// or https://)');
  if (/[/?#@\s]/.test(input)) throw bad('it may not contain a path, user, or spaces');

  let host: string;
  let portText: string | undefined;
  if (input.startsWith('[')) {
    const m = /^\[([^\]]+)\](?::(.*))?$/.exec(input);
    if (!m || net.isIP(m[1]!) !== 6) throw bad('brackets must enclose an IPv6 address');
    host = m[1]!;
    portText = m[2];
  } else if (net.isIP(input) === 6) {
    host = input;
  } else {
    const colon = input.indexOf(':');
    if (colon !== input.lastIndexOf(':')) throw bad('put an IPv6 address in brackets, e.g. [::1]:8883');
    host = colon === -1 ? input : input.slice(0, colon);
    portText = colon === -1 ? undefined : input.slice(colon + 1);
    if (net.isIP(host) === 0 && !HOSTNAME.test(host)) throw bad('the host is not a valid host name');
  }
  return { host, port: portText === undefined ? defaultPort : parsePort(portText, bad) };
}

function parsePort(text: string, bad: (why: string) => Error): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535) throw bad('the port must be a number from 1 to 65535');
  return port;
}

/** A key file holds one line: 64 KiB is far more than any. */
const MAX_SECRET_FILE_BYTES = 64 * 1024;
/** A CA bundle (Node's whole root store is about 220 KB). */
const MAX_CA_FILE_BYTES = 4 * 1024 * 1024;

/** What a file of PEM certificates must hold (readCaFile, readCertificateFile). */
const CERTIFICATE_PEM = {
  maxBytes: MAX_CA_FILE_BYTES,
  pathOf: "the PEM file's path",
  holds: /-----BEGIN CERTIFICATE-----/,
  missing: 'PEM certificate',
};

/**
 * A secret given either inline (`--key <value>`) or as a file (`--key-file <path>`): the file's
 * text with surrounding whitespace (a trailing newline) removed. Undefined when neither is given.
 * `flag` is the inline flag's name, e.g. '--key'; the file flag is `${flag}-file`.
 *
 * No message repeats the path: `--key-file "$KEY"` typed for `--key "$KEY"` would otherwise put
 * the key on stderr and in CI logs. When the "path" looks like a secret, the message says so.
 */
export function readSecret(value: string | undefined, file: string | undefined, flag: string): string | undefined {
  const fileFlag = `${flag}-file`;
  if (value !== undefined && file !== undefined) {
    throw new ProvisioningError('invalid-input', `give ${flag} or ${fileFlag}, not both`);
  }
  if (file === undefined) return value;
  if (file === '') throw new ProvisioningError('invalid-input', `${fileFlag} needs a file name`);
  let text: string;
  try {
    text = readInputFile(file, MAX_SECRET_FILE_BYTES);
  } catch (error) {
    const looks = looksLikeSecret(file);
    const hint = looks ? `; the value looks like ${looks}, not a path: give it with ${flag}, or its file's path with ${fileFlag}` : '';
    throw new ProvisioningError('invalid-input', `cannot read ${fileFlag}: ${readFailure(error)}${hint}`);
  }
  const secret = text.replace(/^\uFEFF/, '').trim();
  if (secret === '') throw new ProvisioningError('invalid-input', `the ${fileFlag} file is empty`);
  if (/[\r\n]/.test(secret)) {
    throw new ProvisioningError('invalid-input', `the ${fileFlag} file holds more than one line; it must contain only the secret`);
  }
  return secret;
}

/**
 * A CA certificate file (`--ca <pem file>`). A CA is no secret and a path is named in errors,
 * unless the value looks like a key, a token or a PEM block pasted in place of the path.
 */
export function readCaFile(file: string, flag = '--ca'): string {
  return readPemFile(file, flag, { ...CERTIFICATE_PEM, reading: 'the CA certificate', theFile: 'the CA file' });
}

/** A certificate (chain) file such as --cert or --ca-cert: PEM certificates, the path named in errors. */
export function readCertificateFile(file: string, flag: string): string {
  return readPemFile(file, flag, { ...CERTIFICATE_PEM, reading: 'the certificate', theFile: 'the certificate file' });
}

/**
 * A PEM private key file (--cert-key, --ca-key). A secret: its content never reaches a message;
 * the path is named unless it looks like a pasted secret.
 */
export function readPrivateKeyFile(file: string, flag: string): string {
  return readPemFile(file, flag, {
    maxBytes: MAX_SECRET_FILE_BYTES,
    pathOf: "the key file's path",
    reading: 'the private key',
    theFile: 'the key file',
    holds: /-----BEGIN (RSA |EC )?PRIVATE KEY-----/,
    missing: 'PEM private key (-----BEGIN PRIVATE KEY-----)',
  });
}

/** A PEM file given by `flag`: read (regular, bounded), and refused unless it holds what `holds` matches. No message quotes its content. */
function readPemFile(
  file: string,
  flag: string,
  o: { maxBytes: number; pathOf: string; reading: string; theFile: string; holds: RegExp; missing: string },
): string {
  const looks = looksLikeSecret(file);
  const named = looks ? `${flag} (the value looks like ${looks}, not a path: give ${o.pathOf})` : `${flag} ${file}`;
  let text: string;
  try {
    text = readInputFile(file, o.maxBytes);
  } catch (error) {
    throw new ProvisioningError('invalid-input', `cannot read ${o.reading} ${named}: ${readFailure(error)}`);
  }
  if (!o.holds.test(text)) throw new ProvisioningError('invalid-input', `${o.theFile} ${named} holds no ${o.missing}`);
  return text;
}

/** What a value given where a path belongs looks like, when it looks like a secret (never the value itself). */
export function looksLikeSecret(value: string): string | undefined {
  if (/^\s*SharedAccessSignature\s/i.test(value) || /(^|[?&\s])sig=/i.test(value)) return 'a SAS token';
  if (/(^|;)\s*(HostName|SharedAccessKeyName|SharedAccessKey|DeviceId)\s*=/i.test(value)) return 'a connection string';
  if (/-----BEGIN [A-Z ]+-----/.test(value)) return 'a PEM block (a certificate or a private key)';
  // Base64 of 16 or more bytes with nothing of a path in it: a symmetric key.
  if (
    value.length >= 24 &&
    value.length % 4 === 0 &&
    /^[A-Za-z0-9+/]+={0,2}$/.test(value) &&
    /[0-9]/.test(value) &&
    /[A-Z]/.test(value) &&
    /[a-z]/.test(value)
  ) {
    return 'a key';
  }
  return undefined;
}

/**
 * A small input file's text, read only when it is a regular file of at most `maxBytes`: a FIFO
 * nobody writes to, a device such as /dev/zero or a huge file would otherwise hold the command
 * before any deadline runs (opened non-blocking, so even a FIFO's open returns at once).
 */
export function readInputFile(file: string, maxBytes: number): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw Object.assign(new Error('not a regular file'), { code: stat.isDirectory() ? 'EISDIR' : 'ENOTREG' });
    if (stat.size > maxBytes) throw Object.assign(new Error('too large'), { code: 'EFBIG', maxBytes });
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

function readFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOTREG') return 'not a regular file (a pipe, a socket or a device is not read)';
  if (code === 'EFBIG') return `larger than ${(error as { maxBytes: number }).maxBytes} bytes`;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  if (code === 'ENAMETOOLONG') return 'the name is too long for a path';
  return code ?? 'unreadable';
}

/** parseArgs with our error type, and --help handled. Returns undefined when help was printed. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, help: string, io: CliIo) {
  let parsed: { values: Record<string, unknown> };
  try {
    parsed = parseArgs({
      args: negativeValuesJoined(argv, options),
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    // A stray positional may be a secret pasted in the wrong place: never echo it.
    const positional = (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL';
    // One line: node's message for '--port -1' spans three.
    const message = positional ? 'Unexpected argument without a flag' : (error as Error).message.split('\n').join(' ').replace(/\.+$/, '');
    throw new ProvisioningError('invalid-input', `${message}. See --help`);
  }
  if (parsed.values.help) {
    io.stdout(help);
    return undefined;
  }
  return parsed.values as { [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : string };
}

/**
 * `--flag -1` as `--flag=-1` for a flag that takes a value: parseArgs calls a value starting with a
 * dash ambiguous, and the flag's own check then says what the value must be.
 */
function negativeValuesJoined(argv: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    const next = argv[i + 1];
    if (
      name !== undefined &&
      Object.hasOwn(options, name) &&
      options[name]!.type === 'string' &&
      next !== undefined &&
      /^-[\d.]/.test(next)
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

export function required(value: string | undefined, flag: string, envName?: string): string {
  if (value === undefined || value === '') {
    throw new ProvisioningError('invalid-input', `Missing ${flag}${envName ? ` (or the ${envName} environment variable)` : ''}`);
  }
  return value;
}

export function integer(text: string, flag: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ProvisioningError('invalid-input', `${flag} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/**
 * A JSON-valued flag such as --initial-twin-tags (undefined when not given). Its depth is bounded
 * as the core bounds what DPS sends: deeper JSON cannot be sent (JSON.stringify recurses).
 */
export function jsonFlag(text: string | undefined, flag: string): unknown {
  if (text === undefined) return undefined;
  if (isNestedDeeper(text, MAX_JSON_DEPTH)) {
    throw new ProvisioningError('invalid-input', `${flag} nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels, the limit`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ProvisioningError('invalid-input', `${flag} is not valid JSON`);
  }
}

/**
 * az's property bag 'a=b;c=d' (--properties): names trimmed, values as given. Own properties
 * only, so a name such as __proto__ is a property like any other.
 */
export function propertyBag(text: string): Record<string, string> {
  const properties: Record<string, string> = {};
  for (const part of text.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new ProvisioningError('invalid-input', '--properties must be name=value pairs separated by ;');
    const value = part.slice(eq + 1);
    Object.defineProperty(properties, part.slice(0, eq).trim(), { value, enumerable: true, writable: true, configurable: true });
  }
  return properties;
}
