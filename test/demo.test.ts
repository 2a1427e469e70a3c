// `npm start` as a fresh clone runs it: the built demo (dist/, which `npm test` builds first) as a
// child process. It must end with status 0 after provisioning the demo device onto one of the
// three demo hubs, say so plainly, and leave no files behind.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const DEMO = join(ROOT, 'dist', 'cli', 'demo.js');
const HUBS = ['demo-hub-1.azure-devices.net', 'demo-hub-2.azure-devices.net', 'demo-hub-3.azure-devices.net'];

describe('npm start (the demo)', () => {
  it('is what package.json starts', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe('node dist/cli/demo.js');
  });

  it('starts a local DPS and its hubs, provisions the demo device onto one of the three, takes it online, re-provisions it when its hub forgets it, and exits 0 leaving nothing behind', async () => {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [DEMO], { cwd: ROOT, timeout: 60_000 });
    expect(stderr).toBe('');
    for (const [i, weight] of [1, 2, 7].entries()) expect(stdout).toMatch(new RegExp(`${HUBS[i]}\\s+weight ${weight}\\b`));
    expect(stdout).toMatch(/enrollment group\s+demo-group/);
    expect(stdout).toContain('registering demo-device-001');
    const hub = /assigned hub\s+(\S+)\n/.exec(stdout)?.[1];
    expect(HUBS).toContain(hub);
    expect(stdout).toMatch(/device ID\s+demo-device-001\n/);
    expect(stdout).toContain(`tags {"environment":"demo"}`);
    // Online: the initial twin, a report, telemetry; then forgotten by its hub, provisioned again, online again.
    expect(stdout).toContain(`twin desired properties (the enrollment's initial twin): {"telemetryInterval":60,"$version":1}`);
    expect(stdout).toContain('reported properties now at version 2');
    expect(stdout).toContain('telemetry: the hub has 2 messages from demo-device-001');
    expect(stdout).toMatch(/the session ended: The server refused the connection \(CONNACK 5: not authorized\)/);
    expect(stdout).toMatch(/online again on demo-hub-\d\.azure-devices\.net; the hub has 3 messages from demo-device-001/);
    const stateDir = /CA certificate\s+freshly made in (\S+)/.exec(stdout)?.[1];
    expect(stateDir).toBeDefined();
    expect(existsSync(stateDir!)).toBe(false);
    // The group's key is in examples/emulator.json for everyone to read, but the demo does not print it.
    const groupKey = (
      JSON.parse(readFileSync(join(ROOT, 'examples', 'emulator.json'), 'utf8')) as {
        enrollmentGroups: { attestation: { symmetricKey: { primaryKey: string } } }[];
      }
    ).enrollmentGroups[0]!.attestation.symmetricKey.primaryKey;
    expect(stdout).not.toContain(groupKey);
  });
});
