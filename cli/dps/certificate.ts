// `moddable-dps dps certificate create|show|list|delete|generate-verification-code|verify`: the
// instance's CA certificates with the flags of `az iot dps certificate`, over the emulator's
// management API (/certificates, emulator/certificate-routes.ts). An enrollment group names one
// with --ca-name; DPS accepts its devices once the certificate is verified: upload it, generate a
// verification code, sign a certificate with that code as CN using the CA's key, verify with it
// (or upload it --verified, for development).
import { ProvisioningError } from '../../src/errors.js';
import { COMMON_HELP, type Flags, type Io, parseFlags, printJson, required, safe, serviceClient, type Values } from '../service/flags.js';
import { readCertificateFile } from '../shared/args.js';

const HELP = `Usage: moddable-dps dps certificate <command> [options]

  create --certificate-name <name> --path <pem> [--verified]
         Uploads a CA certificate (root or intermediate); --verified marks it verified at once.
  show   --certificate-name <name>
  list
  delete --certificate-name <name> [--etag <etag>]
  generate-verification-code --certificate-name <name> [--etag <etag>]
         Prints the code: issue a certificate with it as CN, signed by this CA's key.
  verify --certificate-name <name> --path <pem> [--etag <etag>]
         Proof of possession: the certificate issued for the code verifies the CA certificate.

--name is another name for --certificate-name.

${COMMON_HELP}`;

const NAME: Flags = { 'certificate-name': { type: 'string' }, name: { type: 'string' } };
const ETAG: Flags = { etag: { type: 'string' } };
const SUBCOMMANDS: Record<string, Flags> = {
  create: { ...NAME, path: { type: 'string' }, verified: { type: 'boolean' } },
  show: NAME,
  list: {},
  delete: { ...NAME, ...ETAG },
  'generate-verification-code': { ...NAME, ...ETAG },
  verify: { ...NAME, path: { type: 'string' }, ...ETAG },
};

interface Certificate {
  name: string;
  etag: string;
  properties: { subject?: string; expiry?: string; thumbprint?: string; isVerified?: boolean; verificationCode?: string };
}

export async function certificateCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(HELP);
    return sub === undefined ? 2 : 0;
  }
  const flags = Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (!flags) throw new ProvisioningError('invalid-input', `unknown command 'dps certificate ${safe(sub)}'. See --help`);
  const values = parseFlags(rest, flags, HELP, io);
  if (!values) return 0;
  const asJson = values.json === true;
  const client = serviceClient(values, io);
  if (sub === 'list') {
    const list = ((await client.call('GET', '/certificates')).body as { value?: Certificate[] }).value ?? [];
    if (asJson) printJson(io, list);
    else io.stdout(list.length === 0 ? 'no certificates\n' : list.map(summary).join(''));
    return 0;
  }
  const name = certificateName(values);
  const path = `/certificates/${encodeURIComponent(name)}`;
  const etag = typeof values.etag === 'string' && values.etag !== '' ? { headers: { 'if-match': values.etag } } : {};
  let certificate: Certificate;
  switch (sub) {
    case 'create': {
      const pem = readCertificateFile(required(values, 'path'), '--path');
      certificate = (await client.call('PUT', path, { body: { properties: { certificate: pem, isVerified: values.verified === true } } }))
        .body as Certificate;
      break;
    }
    case 'delete':
      await client.call('DELETE', path, etag);
      if (!asJson) io.stdout(`deleted certificate ${name}\n`);
      return 0;
    case 'generate-verification-code':
      certificate = (await client.call('POST', `${path}/generateVerificationCode`, etag)).body as Certificate;
      if (!asJson) {
        io.stdout(`${certificate.properties.verificationCode}\n`);
        return 0;
      }
      break;
    case 'verify': {
      const pem = readCertificateFile(required(values, 'path'), '--path');
      certificate = (await client.call('POST', `${path}/verify`, { ...etag, body: { certificate: pem } })).body as Certificate;
      break;
    }
    default:
      certificate = (await client.call('GET', path)).body as Certificate;
  }
  if (asJson) printJson(io, certificate);
  else io.stdout(summary(certificate));
  return 0;
}

function certificateName(values: Values): string {
  const given = ['certificate-name', 'name'].filter((flag) => values[flag] !== undefined);
  if (given.length > 1) throw new ProvisioningError('invalid-input', 'Give --certificate-name or --name, not both');
  const value = given.length === 1 ? values[given[0]!] : undefined;
  if (typeof value !== 'string' || value === '') throw new ProvisioningError('invalid-input', 'Missing --certificate-name');
  return value;
}

function summary(certificate: Certificate): string {
  const p = certificate.properties ?? {};
  return `${certificate.name}  ${p.isVerified ? 'verified' : 'not verified'}  ${p.subject ?? ''}  thumbprint ${p.thumbprint ?? ''}  expires ${p.expiry ?? ''}  etag ${certificate.etag}\n`;
}
