// Fuzzing the command line: main() with arbitrary arguments.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { main } from '../cli/main.js';
import { EXIT_CODES } from '../cli/shared/io.js';
import { base64Key, describeThrown, fuzzText, runs } from './support/fuzz.js';

// ---- the command line ----

// Commands that touch neither the network nor the disk, names an object inherits, and any text.
const commandName = fc.oneof(
  fc.constantFrom(
    'compute-device-key',
    'sas-token',
    'help',
    '--help',
    '-h',
    'toString',
    'constructor',
    '__proto__',
    'hasOwnProperty',
    'valueOf',
  ),
  fuzzText(12),
);
const flagName = fc.constantFrom(
  '--key',
  '--key-file',
  '--registration-id',
  '--id-scope',
  '--expiry',
  '--ttl',
  '--help',
  '-h',
  '--',
  '-',
  '--x',
  '-k',
);
const argument = fc.oneof(
  flagName,
  fuzzText(16),
  base64Key,
  flagName.chain((f) => fuzzText(8).map((v) => `${f}=${v}`)),
);

describe('the command line (main) with arbitrary arguments', () => {
  it('ends with a documented exit status and never throws', async () => {
    const statuses = new Set(Object.values(EXIT_CODES).concat(0));
    await fc.assert(
      fc.asyncProperty(commandName, fc.array(argument, { maxLength: 8 }), async (command, args) => {
        let output = '';
        const io = { stdout: (t: string) => void (output += t), stderr: (t: string) => void (output += t), env: {} };
        const code = await main([command, ...args], io).catch((error: unknown) => assert.fail(`main threw ${describeThrown(error)}`));
        assert.ok(statuses.has(code), `exit status ${String(code)} for ${JSON.stringify([command, ...args])}`);
      }),
      runs(300),
    );
  });

  it('found: a name every object inherits (toString, constructor) ran as a command and returned no exit status', async () => {
    const io = { stdout: () => {}, stderr: () => {}, env: {} };
    for (const name of ['toString', 'constructor', '__proto__', 'hasOwnProperty'])
      assert.equal(await main([name], io), EXIT_CODES['invalid-input'], name);
  });
});
