// `moddable-dps emulator export`: the emulator's stored state as a config file, so that what was
// set up through the service API (linked hubs, renewed keys, weights, enrollments, the policy)
// becomes infrastructure as code again: export → `emulator --config` → the same configuration.
import { resolve } from 'node:path';
import { DEFAULT_STATE_DIR } from '../emulator/index.js';
import { stateAsConfig } from '../emulator/state-export.js';
import { journalPath, readStateFile, STATE_FILE, StateFileError, writeStateFile } from '../emulator/state-store.js';
import { ProvisioningError } from '../src/errors.js';
import { looksLikeSecret, parse } from './shared/args.js';
import type { CliIo } from './shared/io.js';

export const EXPORT_HELP = `Usage: moddable-dps emulator export --out <file.json> [--state-dir <dir>]

Writes the emulator's state (<state-dir>/${STATE_FILE} with its journal, as last saved: a running
emulator saves shortly after each change) as a config file for 'moddable-dps emulator --config': the ID scope,
the allocation policy, the linked hubs with their current connection strings, the latency table
and the enrollments with their keys. Registration records, hub identities and twins are not
configuration: they stay in the state file. The file holds keys: it is written with mode 0600.

  --out <file.json>    the config file to write (replaced if it exists)
  --state-dir <dir>    the emulator's state directory (default ${DEFAULT_STATE_DIR})
`;

const FLAGS = {
  out: { type: 'string' },
  'state-dir': { type: 'string' },
} as const;

export async function emulatorExport(argv: string[], io: CliIo): Promise<number> {
  const v = parse(argv, FLAGS, EXPORT_HELP, io);
  if (!v) return 0;
  for (const flag of ['out', 'state-dir'] as const) {
    const looks = v[flag] === undefined ? undefined : looksLikeSecret(v[flag]);
    if (looks) throw new ProvisioningError('invalid-input', `the value of --${flag} looks like ${looks}, not a path`);
  }
  if (v.out === undefined)
    throw new ProvisioningError('invalid-input', '--out <file.json> is required (the export holds keys). See --help');
  const statePath = resolve(v['state-dir'] ?? DEFAULT_STATE_DIR, STATE_FILE);
  const out = resolve(v.out);
  if (out === statePath || out === journalPath(statePath))
    throw new ProvisioningError('invalid-input', `--out would overwrite the state file ${out}`);
  let state: Awaited<ReturnType<typeof readStateFile>>;
  try {
    state = await readStateFile(statePath);
  } catch (error) {
    if (error instanceof StateFileError) throw new ProvisioningError('invalid-input', error.message, { cause: error });
    throw error;
  }
  if (!state) {
    throw new ProvisioningError(
      'invalid-input',
      `there is no emulator state in ${statePath}: has the emulator run with --state-dir ${v['state-dir'] ?? DEFAULT_STATE_DIR} (not --in-memory)?`,
    );
  }
  const config = stateAsConfig(state);
  try {
    await writeStateFile(out, `${JSON.stringify(config, null, 2)}\n`);
  } catch (error) {
    throw new ProvisioningError('invalid-input', (error as Error).message, { cause: error });
  }
  io.stdout(
    `exported ${statePath} (saved ${state.savedAt}) to ${v.out}: ${config.iotHubs.length} linked hubs, ` +
      `${config.enrollmentGroups.length} enrollment groups, ${config.individualEnrollments.length} individual enrollments ` +
      `(its ${state.model.registrations.length} registration records and the hubs' devices stay in the state file)\n`,
  );
  return 0;
}
