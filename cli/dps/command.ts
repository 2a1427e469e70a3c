// `moddable-dps dps ...`: manage a DPS instance (the local emulator, or real DPS for the
// enrollment and registration commands, which use the DPS service API) with the names and flags of
// `az iot dps`. Every command takes --service <connection string> (or --service-file, or
// DPS_SERVICE_CONNECTION_STRING), --ca <pem>, --json and --help (../service/flags.ts).
//
// Keys are printed only where they are the point of the command: `dps enrollment create` and
// `dps enrollment-group create` (the created enrollment with its keys, as az prints it), `show
// --show-keys`, `dps enrollment-group compute-device-key`; `hub` (../hub/command.ts) likewise.
// The linked hubs' connection strings come back masked (SharedAccessKey=****), as ARM returns them.
import { ProvisioningError } from '../../src/errors.js';
import { COMMON_HELP, type Io, parseFlags, safe, serviceClient } from '../service/flags.js';
import { certificateCommand } from './certificate.js';
import { enrollmentCommand } from './enrollment.js';
import { enrollmentGroupCommand } from './enrollment-group.js';
import { linkedHubCommand } from './linked-hub.js';
import { printResource, type Resource, setPath } from './resource.js';

const DPS_HELP = `Usage: moddable-dps dps <command> [options]

  show                              the DPS resource: ID scope, allocation policy, linked hubs
  update --set <path>=<value>       change properties.allocationPolicy or properties.iotHubs[i].<field>
  linked-hub create|update|delete|list|show
  enrollment create|update|show|delete|list          individual enrollments
  enrollment registration show|delete                their registration records
  enrollment-group create|update|show|delete|list|compute-device-key
  enrollment-group registration list|show|delete     a group's registration records
  certificate create|show|list|delete|generate-verification-code|verify   CA certificates for X.509 groups (--ca-name)

Run 'moddable-dps dps <command> --help' for a command's options.

${COMMON_HELP}`;

/** `moddable-dps dps ...` */
export async function dpsCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'linked-hub') return linkedHubCommand(rest, io);
  if (sub === 'enrollment') return enrollmentCommand(rest, io);
  if (sub === 'enrollment-group') return enrollmentGroupCommand(rest, io);
  if (sub === 'certificate') return certificateCommand(rest, io);
  if (sub === 'show') return show(rest, io);
  if (sub === 'update') return update(rest, io);
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(DPS_HELP);
    return sub === undefined ? 2 : 0;
  }
  throw new ProvisioningError('invalid-input', `unknown command 'dps ${safe(sub)}'. See 'moddable-dps dps --help'`);
}

const SHOW_HELP = `Usage: moddable-dps dps show [options]

Shows the DPS resource (as 'az iot dps show'): ID scope, allocation policy, host names and the
linked hubs (their keys masked).

${COMMON_HELP}`;

async function show(argv: string[], io: Io): Promise<number> {
  const values = parseFlags(argv, {}, SHOW_HELP, io);
  if (!values) return 0;
  const reply = await serviceClient(values, io).call('GET', '/resource');
  printResource(io, reply.body as Resource, values.json === true);
  return 0;
}

const UPDATE_HELP = `Usage: moddable-dps dps update --set <path>=<value> [--set ...] [options]

Changes the DPS resource as 'az iot dps update --set' does: reads it, changes it, writes it back
(guarded by its etag). Paths:
  properties.allocationPolicy=<hashed|geoLatency|static>
  properties.iotHubs[<i>].connectionString=<connection string>   (after 'hub policy renew-key')
  properties.iotHubs[<i>].allocationWeight=<1..1000|null>
  properties.iotHubs[<i>].applyAllocationPolicy=<true|false|null>
  properties.iotHubs[<i>].location=<region>

${COMMON_HELP}`;

async function update(argv: string[], io: Io): Promise<number> {
  const values = parseFlags(argv, { set: { type: 'string', multiple: true } }, UPDATE_HELP, io);
  if (!values) return 0;
  const sets = (values.set as string[] | undefined) ?? [];
  if (sets.length === 0) throw new ProvisioningError('invalid-input', 'Give at least one --set <path>=<value>');
  const client = serviceClient(values, io);
  const current = (await client.call('GET', '/resource')).body as Resource;
  for (const assignment of sets) setPath(current, assignment);
  const reply = await client.call('PUT', '/resource', { body: current, headers: { 'if-match': `"${current.etag}"` } });
  printResource(io, reply.body as Resource, values.json === true);
  return 0;
}
