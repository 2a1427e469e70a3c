// `moddable-dps factory`: what a production line writes into each device, so that no device ever
// holds the enrollment group's key. Microsoft's symmetric-key attestation guidance: derive each
// device's key at the factory; a group key read out of one device would let anyone enroll any
// number of devices into the group.
//
//   devices (CSV: serial, mac[, registrationId]; or --count with --serial-start/--serial-width)
//     → registration ID per device (given, or built from the template as the firmware builds it)
//     → device key = HMAC-SHA256(group key, registration ID)
//     → <out>/<registrationId>.csv   the device's NVS partition, as ESP-IDF's nvs_partition_gen
//                                    reads it (namespace dps: idScope, regId, deviceKey[, endpoint][, ca])
//       <out>/<registrationId>.bin   with --bin: the partition image, made by nvs_partition_gen
//       <out>/manifest.csv           the line's record: registration IDs, serials, MACs (no key)
//
// X.509 instead (--issue-certs --ca-cert --ca-key): each device gets its own certificate (CN = its
// registration ID, RSA 2048: Moddable's TLS signs CertificateVerify with RSA keys only), issued by
// the line's CA, whose chain reaches the CA an X.509 enrollment group trusts; the partition holds
// cert (the chain, PEM) and certKey (PKCS#8 PEM) instead of deviceKey, and the files
// <registrationId>-cert.pem and <registrationId>-key.pem are written beside it.
//
// The whole batch is checked before anything is written; a bad row names its row and reason and
// nothing is written. Files are created with mode 0600 (they hold keys) in a directory of mode
// 0700, never over an existing file. Nothing printed holds a key.
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { makeDirectorySync } from '../hosts/node/directory.js';
import { certificatesFromPem } from '../src/certificates.js';
import { ProvisioningError } from '../src/errors.js';
import { buildRegistrationId, deriveDeviceKey, validateIdScope, validateRegistrationId } from '../src/identity.js';
import { printable } from '../src/text.js';
import {
  integer,
  parse,
  parseEndpoint,
  readCaFile,
  readCertificateFile,
  readInputFile,
  readPrivateKeyFile,
  readSecret,
  required,
} from './shared/args.js';
import { type IssuedCertificate, type IssuingCa, issueDeviceCertificate, loadSigningCa } from './shared/certificates.js';
import type { CliIo } from './shared/io.js';

/** The firmware's Preference domain and key names (hosts/moddable/settings.ts); NVS allows 15 characters. */
export const NVS_NAMESPACE = 'dps';
/** ESP-IDF's default NVS partition size (partitions.csv: nvs, data, nvs, 0x9000, 0x6000). */
const DEFAULT_PARTITION_SIZE = '0x6000';
/** NVS keeps a string of up to 4000 bytes, its terminating NUL included (ESP-IDF nvs_flash docs). */
const NVS_MAX_STRING_BYTES = 4000 - 1;
/** As the firmware's anchors.ts. */
const MAX_ANCHORS = 4;
const MAX_DEVICES = 100_000;
/** A devices CSV of MAX_DEVICES rows of serial and MAC is a few MB. */
const MAX_DEVICES_FILE_BYTES = 32 * 1024 * 1024;
const GENERATOR = 'nvs_partition_gen.py';

const HELP = `Usage: moddable-dps factory --id-scope <scope> (--group-key-file <path> | --issue-certs --ca-cert <pem> --ca-key <pem>)
                            --out <dir> (--devices <csv> | --count <n>) [options]

Derives each device's key from the enrollment group key and writes, per device, the NVS
partition the firmware reads (ESP-IDF nvs_partition_gen CSV, namespace '${NVS_NAMESPACE}'), plus a
manifest of registration IDs (no keys). The group key never leaves this machine.

  --id-scope <scope>                 the DPS instance's ID scope
  --group-key-file <path>            the enrollment group's key (base64), read from a file
  --issue-certs                      X.509 instead: issue each device a certificate (CN = its registration ID,
                                     an RSA 2048 key, as Moddable's TLS needs) signed by --ca-cert/--ca-key,
                                     the line's CA (an enrollment group's signing CA, or one it chains to);
                                     writes <id>-cert.pem and <id>-key.pem (0600) and puts both in the partition
  --ca-cert <pem>, --ca-key <pem>    the issuing CA's certificate and private key (RSA)
  --cert-days <n>                    the device certificates' lifetime in days (default 3650)
  --devices <csv>                    devices, one per row, with a header: serial, mac, and optionally
                                     registrationId (then used as given)
  --count <n>                        or: n devices numbered from --serial-start (default 1),
                                     zero-padded to --serial-width digits (default none)
  --registration-id-template <t>     how a registration ID is built, as the firmware does
                                     (default '{serial}-{mac}', or '{serial}' without MACs)
  --endpoint <host[:port]>           the DPS endpoint, when not the global one
  --ca-file <pem>                    roots to trust instead of the firmware's built-in pair (up to ${MAX_ANCHORS})
  --out <dir>                        where to write (created; existing files are never replaced)
  --bin                              also make each partition image with ESP-IDF's ${GENERATOR}
                                     (on the PATH, or under $IDF_PATH)
  --partition-size <bytes>           the NVS partition's size for --bin (default ${DEFAULT_PARTITION_SIZE})
  --json                             print the manifest as JSON
`;

interface Entry {
  row: number;
  serial?: string;
  mac?: string;
  registrationId?: string;
}

interface Device {
  /** 1-based: the header is row 1 of a CSV, so the first device is row 2. */
  row: number;
  registrationId: string;
  serial?: string;
  mac?: string;
}

export async function factory(argv: string[], io: CliIo): Promise<number> {
  const v = parse(
    argv,
    {
      'id-scope': { type: 'string' },
      'group-key': { type: 'string' },
      'group-key-file': { type: 'string' },
      'issue-certs': { type: 'boolean' },
      'ca-cert': { type: 'string' },
      'ca-key': { type: 'string' },
      'cert-days': { type: 'string' },
      devices: { type: 'string' },
      count: { type: 'string' },
      'serial-start': { type: 'string' },
      'serial-width': { type: 'string' },
      'registration-id-template': { type: 'string' },
      endpoint: { type: 'string' },
      'ca-file': { type: 'string' },
      out: { type: 'string' },
      bin: { type: 'boolean' },
      'partition-size': { type: 'string' },
      json: { type: 'boolean' },
    },
    HELP,
    io,
  );
  if (!v) return 0;
  if (v['group-key'] !== undefined) {
    // On a command line it lands in shell history and process listings: the line's key stays in a file.
    throw new ProvisioningError('invalid-input', '--group-key is not accepted here: give the group key in a file with --group-key-file');
  }
  const idScope = validateIdScope(required(v['id-scope'], '--id-scope'));
  const issuer = issuingCa(v);
  const groupKey = issuer ? undefined : required(readSecret(undefined, v['group-key-file'], '--group-key'), '--group-key-file');
  const certDays = v['cert-days'] === undefined ? 3650 : integer(v['cert-days'], '--cert-days', 1, 36_500);
  const out = resolve(required(v.out, '--out'));
  const endpoint = v.endpoint === undefined ? undefined : parseEndpoint(v.endpoint);
  const ca = v['ca-file'] === undefined ? undefined : readAnchors(v['ca-file']);
  if (v['partition-size'] !== undefined && !v.bin) throw new ProvisioningError('invalid-input', '--partition-size is for --bin');
  const partitionSize = v['partition-size'] ?? DEFAULT_PARTITION_SIZE;
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(partitionSize) || Number(partitionSize) % 4096 !== 0 || Number(partitionSize) < 0x3000) {
    throw new ProvisioningError('invalid-input', '--partition-size must be a multiple of 4096 bytes, at least 0x3000 (e.g. 0x6000)');
  }
  const generator = v.bin ? findGenerator(io.env) : undefined;

  const devices = readDevices(v, io);
  const keys = new Map(groupKey ? devices.map((device) => [device.registrationId, deriveDeviceKey(groupKey, device.registrationId)]) : []);
  // Issued before anything is written (an RSA key each: about a tenth of a second per device).
  const certificates = new Map<string, IssuedCertificate>();
  if (issuer) {
    const notAfter = new Date(Date.now() + certDays * 86_400_000);
    for (const device of devices)
      certificates.set(device.registrationId, issueDeviceCertificate(issuer, device.registrationId, { notAfter }));
    checkNvsSize(certificates);
  }

  // Everything is checked: now write, all or nothing.
  const files = devices.map((device) => join(out, `${device.registrationId}.csv`));
  const manifestFile = join(out, 'manifest.csv');
  const caFile = ca === undefined ? undefined : join(out, 'ca.pem');
  const certFiles = issuer
    ? devices.map((d) => [join(out, `${d.registrationId}-cert.pem`), join(out, `${d.registrationId}-key.pem`)] as const)
    : [];
  const planned = [...files, manifestFile, ...(caFile ? [caFile] : []), ...(generator ? files.map(binOf) : []), ...certFiles.flat()];
  prepareDirectory(out, planned);
  const written: string[] = [];
  try {
    if (caFile && ca) writeSecretFile(caFile, ca, written);
    for (const [i, device] of devices.entries()) {
      const issued = certificates.get(device.registrationId);
      if (issued) {
        writeSecretFile(certFiles[i]![0], issued.cert, written);
        writeSecretFile(certFiles[i]![1], issued.key, written);
      }
      const rows = [
        'key,type,encoding,value',
        `${NVS_NAMESPACE},namespace,,`,
        `idScope,data,string,${idScope}`,
        `regId,data,string,${device.registrationId}`,
        ...(issued
          ? [`cert,file,string,${csvField(certFiles[i]![0])}`, `certKey,file,string,${csvField(certFiles[i]![1])}`]
          : [`deviceKey,data,string,${keys.get(device.registrationId)}`]),
        ...(endpoint ? [`endpoint,data,string,${endpoint.host}:${endpoint.port}`] : []),
        ...(caFile ? [`ca,file,string,${csvField(caFile)}`] : []),
      ];
      writeSecretFile(files[i]!, `${rows.join('\n')}\n`, written);
    }
    const thumbprint = (id: string): string[] => {
      const issued = certificates.get(id);
      return issued ? [new X509Certificate(issued.cert).fingerprint256.replace(/:/g, '')] : [];
    };
    const manifest = [
      `registrationId,serial,mac,nvsCsv${issuer ? ',certSha256' : ''}`,
      ...devices.map((d) =>
        [d.registrationId, d.serial ?? '', d.mac ?? '', `${d.registrationId}.csv`, ...thumbprint(d.registrationId)].map(csvField).join(','),
      ),
    ];
    writeSecretFile(manifestFile, `${manifest.join('\n')}\n`, written);
    if (generator) {
      for (const file of files) makeImage(generator, file, partitionSize, written);
    }
  } catch (error) {
    for (const file of written) rmSync(file, { force: true });
    throw error;
  }

  if (v.json) {
    io.stdout(
      `${JSON.stringify(
        devices.map((d) => ({ registrationId: d.registrationId, serial: d.serial, mac: d.mac, nvsCsv: `${d.registrationId}.csv` })),
        null,
        2,
      )}\n`,
    );
  } else {
    io.stdout(
      `wrote ${devices.length} device${devices.length === 1 ? '' : 's'} to ${printable(out)} (mode 0600): manifest.csv (no keys)\n`,
    );
  }
  const how = generator
    ? `partition images: <registrationId>.bin (${partitionSize} bytes), made with ${printable(generator.join(' '))}\n`
    : `partition images: make each with ESP-IDF's ${GENERATOR}, e.g.\n` +
      `  python $IDF_PATH/components/nvs_flash/nvs_partition_generator/${GENERATOR} generate <registrationId>.csv <registrationId>.bin ${partitionSize}\n` +
      `  then flash it at the nvs partition's offset: esptool.py write_flash 0x9000 <registrationId>.bin\n`;
  io.stderr(how);
  return 0;
}

/** --issue-certs with --ca-cert and --ca-key (checked: a CA, an RSA key of its own), or undefined. */
function issuingCa(v: Record<string, unknown>): IssuingCa | undefined {
  const certFlags = ['ca-cert', 'ca-key', 'cert-days'].filter((flag) => v[flag] !== undefined);
  if (!v['issue-certs']) {
    if (certFlags.length > 0) throw new ProvisioningError('invalid-input', `--${certFlags[0]} is for --issue-certs`);
    return undefined;
  }
  if (v['group-key-file'] !== undefined) {
    throw new ProvisioningError('invalid-input', 'give --group-key-file (symmetric keys) or --issue-certs (X.509), not both');
  }
  return loadSigningCa(
    readCertificateFile(required(v['ca-cert'] as string | undefined, '--ca-cert'), '--ca-cert'),
    readPrivateKeyFile(required(v['ca-key'] as string | undefined, '--ca-key'), '--ca-key'),
  );
}

/** Each certificate chain and key is one NVS string: both must fit. */
function checkNvsSize(certificates: Map<string, IssuedCertificate>): void {
  for (const [id, issued] of certificates) {
    const largest = Math.max(Buffer.byteLength(issued.cert), Buffer.byteLength(issued.key));
    if (largest > NVS_MAX_STRING_BYTES) {
      throw new ProvisioningError(
        'invalid-input',
        `${id}: a certificate chain or key of ${largest} bytes; an NVS string holds at most ${NVS_MAX_STRING_BYTES} (use a CA with a shorter chain)`,
      );
    }
  }
}

function readAnchors(path: string): string {
  const text = readCaFile(path, '--ca-file');
  const anchors = certificatesFromPem(text, '--ca-file', MAX_ANCHORS);
  // NVS keeps the PEM as one string: only the certificates, re-armoured, must fit.
  const pem = anchors.map((der) => `-----BEGIN CERTIFICATE-----\n${base64Lines(der)}-----END CERTIFICATE-----\n`).join('');
  if (Buffer.byteLength(pem) > NVS_MAX_STRING_BYTES) {
    throw new ProvisioningError(
      'invalid-input',
      `--ca-file: ${Buffer.byteLength(pem)} bytes of PEM; an NVS string holds at most ${NVS_MAX_STRING_BYTES}`,
    );
  }
  return pem;
}

function base64Lines(der: Uint8Array): string {
  return `${Buffer.from(der)
    .toString('base64')
    .replace(/.{1,64}/g, '$&\n')}`;
}

function readDevices(v: Record<string, unknown>, io: CliIo): Device[] {
  const file = v.devices as string | undefined;
  const count = v.count as string | undefined;
  if ((file === undefined) === (count === undefined)) throw new ProvisioningError('invalid-input', 'give --devices <csv> or --count <n>');
  if (count === undefined && (v['serial-start'] !== undefined || v['serial-width'] !== undefined)) {
    throw new ProvisioningError('invalid-input', '--serial-start and --serial-width are for --count');
  }
  const template = v['registration-id-template'] as string | undefined;
  const entries =
    count !== undefined
      ? numbered(
          integer(count, '--count', 1, MAX_DEVICES),
          integer((v['serial-start'] as string | undefined) ?? '1', '--serial-start', 0, 2 ** 53 - 1),
          integer((v['serial-width'] as string | undefined) ?? '0', '--serial-width', 0, 20),
        )
      : rowsOf(file!);
  const problems: string[] = [];
  const devices: Device[] = [];
  const seen = new Map<string, number>();
  for (const entry of entries) {
    try {
      const registrationId =
        entry.registrationId !== undefined && entry.registrationId !== ''
          ? validateRegistrationId(entry.registrationId)
          : buildRegistrationId(template ?? (entry.mac ? '{serial}-{mac}' : '{serial}'), {
              ...(entry.serial && { serial: entry.serial }),
              ...(entry.mac && { mac: entry.mac }),
            });
      const first = seen.get(registrationId);
      if (first !== undefined) throw new ProvisioningError('invalid-input', `the registration ID ${registrationId} is also row ${first}'s`);
      seen.set(registrationId, entry.row);
      devices.push({ ...entry, registrationId });
    } catch (error) {
      problems.push(`row ${entry.row}: ${(error as Error).message}`);
    }
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 20);
    for (const line of shown) io.stderr(`${printable(line)}\n`);
    const more = problems.length > shown.length ? ` (the first ${shown.length} above)` : ' (above)';
    throw new ProvisioningError(
      'invalid-input',
      `${problems.length} bad row${problems.length === 1 ? '' : 's'}${more}: nothing was written`,
    );
  }
  return devices;
}

function numbered(count: number, start: number, width: number): Entry[] {
  return Array.from({ length: count }, (_, i) => ({ row: i + 1, serial: String(start + i).padStart(width, '0') }));
}

function rowsOf(file: string): Entry[] {
  let text: string;
  try {
    text = readInputFile(file, MAX_DEVICES_FILE_BYTES);
  } catch (error) {
    throw new ProvisioningError(
      'invalid-input',
      `cannot read --devices ${printable(file)}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`,
    );
  }
  let records: string[][];
  try {
    records = parseCsv(text.replace(/^\uFEFF/, ''), { skip_empty_lines: true, trim: true, relax_column_count: false }) as string[][];
  } catch (error) {
    throw new ProvisioningError('invalid-input', `--devices ${printable(file)} is not CSV: ${(error as Error).message}`);
  }
  const [header, ...rows] = records;
  if (!header) throw new ProvisioningError('invalid-input', `--devices ${printable(file)} is empty`);
  const columns = header.map((name) => name.toLowerCase());
  const known = ['serial', 'mac', 'registrationid'];
  const unknown = columns.filter((name) => !known.includes(name));
  if (
    unknown.length > 0 ||
    new Set(columns).size !== columns.length ||
    !columns.some((c) => c === 'serial' || c === 'mac' || c === 'registrationid')
  ) {
    throw new ProvisioningError(
      'invalid-input',
      `--devices: the header must name its columns once each, from serial, mac and registrationId (found: ${printable(header.join(','))})`,
    );
  }
  if (rows.length === 0) throw new ProvisioningError('invalid-input', `--devices ${printable(file)} has no device rows`);
  if (rows.length > MAX_DEVICES)
    throw new ProvisioningError('invalid-input', `--devices: ${rows.length} rows; at most ${MAX_DEVICES} per batch`);
  const at = (name: string) => columns.indexOf(name);
  return rows.map((cells, i) => ({
    row: i + 2,
    ...(at('serial') >= 0 && { serial: cells[at('serial')] }),
    ...(at('mac') >= 0 && { mac: cells[at('mac')] }),
    ...(at('registrationid') >= 0 && { registrationId: cells[at('registrationid')] }),
  }));
}

/** The output directory, made (0700) when missing; refused when any file to write already exists. */
function prepareDirectory(out: string, files: string[]): void {
  if (existsSync(out) && !statSync(out).isDirectory())
    throw new ProvisioningError('invalid-input', `--out ${printable(out)} is not a directory`);
  const existing = files.filter((file) => existsSync(file));
  if (existing.length > 0) {
    throw new ProvisioningError(
      'invalid-input',
      `--out ${printable(out)} already holds ${existing.length} of the files to write (e.g. ${printable(existing[0]!)}): nothing was written`,
    );
  }
  try {
    makeDirectorySync(out, 0o700); // not mkdirSync's recursive mode: it never returns for /proc/x/y
  } catch (error) {
    throw new ProvisioningError(
      'invalid-input',
      `cannot make --out ${printable(out)}: ${(error as NodeJS.ErrnoException).code ?? 'failed'}`,
    );
  }
}

function writeSecretFile(path: string, text: string, written: string[]): void {
  try {
    writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    throw new ProvisioningError('storage', `cannot write ${printable(path)}: ${(error as NodeJS.ErrnoException).code ?? 'failed'}`);
  }
  written.push(path);
  chmodSync(path, 0o600); // whatever the umask
}

/** ESP-IDF's generator: nvs_partition_gen.py on the PATH, else under $IDF_PATH. Refused (with how) when absent. */
function findGenerator(env: Record<string, string | undefined>): string[] {
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, GENERATOR);
    if (existsSync(candidate)) return [candidate];
  }
  if (env.IDF_PATH) {
    const candidate = join(env.IDF_PATH, 'components', 'nvs_flash', 'nvs_partition_generator', GENERATOR);
    if (existsSync(candidate)) return ['python3', candidate];
  }
  throw new ProvisioningError(
    'invalid-input',
    `--bin needs ESP-IDF's ${GENERATOR} on the PATH or under $IDF_PATH (run ESP-IDF's export.sh first), or leave out --bin and make the images later`,
  );
}

function makeImage(generator: string[], csv: string, size: string, written: string[]): void {
  const bin = binOf(csv);
  const [command, ...args] = generator;
  const result = spawnSync(command!, [...args, 'generate', csv, bin, size], { encoding: 'utf8', timeout: 60_000 });
  if (existsSync(bin)) written.push(bin);
  if (result.status !== 0 || !existsSync(bin)) {
    const why = result.error
      ? result.error.message
      : `exit ${result.status}: ${(result.stderr || result.stdout).trim().split('\n').pop() ?? ''}`;
    throw new ProvisioningError('failed', `${GENERATOR} failed for ${printable(csv)} (${printable(why)}): nothing was written`);
  }
  chmodSync(bin, 0o600);
}

function binOf(csv: string): string {
  return csv.replace(/\.csv$/, '.bin');
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
