// `moddable-dps factory`: per-device NVS partitions with derived keys (never the group key), a
// manifest without keys, all-or-nothing batches, files only the owner reads.
//
// The derived key is checked against an independent HMAC-SHA256 with Node's crypto, the
// derivation Microsoft documents (articles/iot-dps/how-to-legacy-device-symm-key.md, "Derive a
// device key"). ESP-IDF cannot be installed here (no network beyond npm and Debian): --bin is
// tested without the generator (refused, saying how), and with a stand-in script on the PATH that
// records its arguments, which checks the command line ESP-IDF's nvs_partition_gen documents
// (`generate <input.csv> <output.bin> <size>`), and that a failing generator leaves nothing.
import { createHmac, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './support/cli-runner.js';

const GROUP_KEY = Buffer.from('factory-test-group-key-0123456789abcdef-0123456789!').toString('base64');
const ID_SCOPE = '0ne00FAC70R';
/** The firmware's two built-in roots as one PEM bundle. */
const AZURE_PEM = ['DigiCertGlobalRootG2.der', 'MicrosoftRSARootCA2017.der']
  .map((file) => new X509Certificate(readFileSync(join(import.meta.dirname, '..', 'hosts', 'moddable', 'certs', file))).toString())
  .join('');
let dir: string;
let keyFile: string;

const derived = (registrationId: string) =>
  createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(registrationId, 'utf8').digest('base64');
const mode = (path: string) => statSync(path).mode & 0o777;

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** A device's NVS CSV as key → value (rows after the header and the namespace). */
function nvs(path: string): Record<string, string> {
  const [header, namespace, ...rows] = readFileSync(path, 'utf8').trim().split('\n');
  expect(header).toBe('key,type,encoding,value');
  expect(namespace).toBe('dps,namespace,,');
  return Object.fromEntries(
    rows.map((row) => {
      const [key, type, encoding, ...value] = row.split(',');
      expect(key!.length).toBeLessThanOrEqual(15); // NVS key names
      expect([type, encoding]).toEqual([key === 'ca' ? 'file' : 'data', 'string']);
      return [key!, value.join(',')];
    }),
  );
}

function expectNoKeys(...texts: string[]): void {
  for (const text of texts) {
    expect(text).not.toContain(GROUP_KEY);
    expect(text).not.toMatch(/deviceKey,|[A-Za-z0-9+/]{43}=/);
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dps-factory-'));
  keyFile = write('group.key', `${GROUP_KEY}\n`);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('moddable-dps factory', () => {
  it('writes each device its NVS partition with its derived key, and a manifest with none, all mode 0600', async () => {
    const devices = write('devices.csv', 'serial,mac\nSN-0001,A1:B2:C3:D4:E5:F6\nsn 0002,a1-b2-c3-d4-e5-f7\n');
    const out = join(dir, 'out');
    const run = await runCli(['factory', '--id-scope', ID_SCOPE, '--group-key-file', keyFile, '--devices', devices, '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(`wrote 2 devices to ${out} (mode 0600): manifest.csv (no keys)\n`);
    expect(run.stderr).toContain('nvs_partition_gen.py generate <registrationId>.csv <registrationId>.bin 0x6000');
    expectNoKeys(run.stdout, run.stderr);
    // The firmware's own template: {serial}-{mac}, normalised as the device normalises it.
    const ids = ['sn-0001-a1b2c3d4e5f6', 'sn-0002-a1b2c3d4e5f7'];
    expect(readdirSync(out).sort()).toEqual([...ids.map((id) => `${id}.csv`), 'manifest.csv'].sort());
    expect(mode(out)).toBe(0o700);
    for (const id of ids) {
      const file = join(out, `${id}.csv`);
      expect(mode(file)).toBe(0o600);
      expect(nvs(file)).toEqual({ idScope: ID_SCOPE, regId: id, deviceKey: derived(id) });
    }
    const manifest = readFileSync(join(out, 'manifest.csv'), 'utf8');
    expect(manifest).toBe(
      'registrationId,serial,mac,nvsCsv\nsn-0001-a1b2c3d4e5f6,SN-0001,A1:B2:C3:D4:E5:F6,sn-0001-a1b2c3d4e5f6.csv\nsn-0002-a1b2c3d4e5f7,sn 0002,a1-b2-c3-d4-e5-f7,sn-0002-a1b2c3d4e5f7.csv\n',
    );
    expect(mode(join(out, 'manifest.csv'))).toBe(0o600);
    expectNoKeys(manifest);
  });

  it('numbers devices with --count, takes registration IDs given outright, the endpoint and the anchors, and prints the manifest as JSON', async () => {
    const out = join(dir, 'counted');
    const run = await runCli([
      'factory',
      ...['--id-scope', ID_SCOPE, '--group-key-file', keyFile, '--out', out, '--json'],
      ...['--count', '3', '--serial-start', '9', '--serial-width', '4', '--registration-id-template', 'line-a-{serial}'],
      ...['--endpoint', 'my-dps.azure-devices-provisioning.net'],
      ...['--ca-file', write('roots.pem', `# the Azure roots\n${AZURE_PEM}`)],
    ]);
    expect(run.code, run.stderr).toBe(0);
    const ids = ['line-a-0009', 'line-a-0010', 'line-a-0011'];
    expect(JSON.parse(run.stdout)).toEqual(
      ids.map((id, i) => ({ registrationId: id, serial: String(9 + i).padStart(4, '0'), nvsCsv: `${id}.csv` })),
    );
    const values = nvs(join(out, 'line-a-0010.csv'));
    expect(values).toMatchObject({
      regId: 'line-a-0010',
      deviceKey: derived('line-a-0010'),
      endpoint: 'my-dps.azure-devices-provisioning.net:8883',
    });
    expect(values.ca).toBe(join(out, 'ca.pem'));
    // Only the certificates, re-armoured: what the firmware's anchors.ts parses.
    expect(readFileSync(join(out, 'ca.pem'), 'utf8')).toBe(AZURE_PEM);

    const given = write('given.csv', 'registrationId,serial\nfactory-given-1,X\n');
    const again = await runCli([
      'factory',
      '--id-scope',
      ID_SCOPE,
      '--group-key-file',
      keyFile,
      '--devices',
      given,
      '--out',
      join(dir, 'given'),
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(nvs(join(dir, 'given', 'factory-given-1.csv')).deviceKey).toBe(derived('factory-given-1'));
  });

  it('refuses a batch with bad rows, naming each row and its reason, and writes nothing', async () => {
    const devices = write(
      'bad.csv',
      [
        'serial,mac,registrationId',
        'SN-1,a1b2c3d4e5f6,',
        'SN-2,a1b2c3d4e5,', // 5 bytes
        'SN-3,,Upper-Case',
        'SN-1,A1:B2:C3:D4:E5:F6,', // the same ID as row 2
        'SN-5,,ok-5',
      ].join('\n'),
    );
    const out = join(dir, 'never');
    const run = await runCli(['factory', '--id-scope', ID_SCOPE, '--group-key-file', keyFile, '--devices', devices, '--out', out]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("row 3: The MAC address must be 12 hex digits, e.g. 'a1b2c3d4e5f6'");
    expect(run.stderr).toContain("row 4: The registration ID must be lower case: 'U'");
    expect(run.stderr).toContain("row 5: the registration ID sn-1-a1b2c3d4e5f6 is also row 2's");
    expect(run.stderr).toContain('error (invalid-input): 3 bad rows (above): nothing was written');
    expect(run.stderr).not.toMatch(/row [26]:/);
    expect(existsSync(out)).toBe(false);
    expectNoKeys(run.stdout, run.stderr);
  });

  it('never replaces a file, refuses flags it does not act on, and keeps the group key off the command line', async () => {
    const out = join(dir, 'out');
    const base = ['factory', '--id-scope', ID_SCOPE, '--group-key-file', keyFile, '--out', out];
    expect((await runCli([...base, '--count', '1'])).code).toBe(0);
    const second = await runCli([...base, '--count', '2']);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/already holds 2 of the files to write .*: nothing was written/);
    expect(readdirSync(out).sort()).toEqual(['1.csv', 'manifest.csv']);

    const refused: [string[], RegExp][] = [
      [['--count', '1', '--group-key', GROUP_KEY], /--group-key is not accepted here: give the group key in a file/],
      [['--count', '1', '--devices', 'x.csv'], /give --devices <csv> or --count <n>/],
      [['--devices', 'x.csv', '--serial-start', '3'], /--serial-start and --serial-width are for --count/],
      [['--count', '1', '--partition-size', '0x6000'], /--partition-size is for --bin/],
      [['--count', '0'], /--count/],
      [['--count', '1', '--bin', '--partition-size', '1000'], /--partition-size must be a multiple of 4096/],
    ];
    for (const [args, message] of refused) {
      const run = await runCli([...base.slice(0, -2), '--out', join(dir, 'refused'), ...args], { PATH: '' });
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(message);
      expectNoKeys(run.stderr);
    }
    expect(existsSync(join(dir, 'refused'))).toBe(false);
  });

  it.runIf(process.platform === 'linux')("names an --out it cannot make (/proc/nope/nvs hung Node's recursive mkdir)", async () => {
    const run = await runCli(['factory', '--id-scope', ID_SCOPE, '--group-key-file', keyFile, '--count', '1', '--out', '/proc/nope/nvs']);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe('error (invalid-input): cannot make --out /proc/nope/nvs: ENOENT\n');
  });

  it('--bin: refused without ESP-IDF, saying how; with its generator, each partition image, 0600; a failing generator leaves nothing', async () => {
    const base = ['factory', '--id-scope', ID_SCOPE, '--group-key-file', keyFile, '--count', '2', '--bin'];
    const without = await runCli([...base, '--out', join(dir, 'a')], { PATH: '/nonexistent' });
    expect(without.code).toBe(2);
    expect(without.stderr).toMatch(/--bin needs ESP-IDF's nvs_partition_gen.py on the PATH or under \$IDF_PATH/);
    expect(existsSync(join(dir, 'a'))).toBe(false);

    const bin = mkdtempSync(join(dir, 'bin-'));
    const log = join(dir, 'generator.log');
    const generator = join(bin, 'nvs_partition_gen.py');
    writeFileSync(
      generator,
      `#!/bin/sh\necho "$@" >> ${log}\n[ "$1" = generate ] && [ -f "$2" ] || exit 3\nhead -c "$(($4))" /dev/zero > "$3"\n`,
    );
    chmodSync(generator, 0o755);
    const out = join(dir, 'b');
    const made = await runCli([...base, '--out', out, '--partition-size', '0x3000'], { PATH: `${bin}:/usr/bin:/bin` });
    expect(made.code, made.stderr).toBe(0);
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual(
      ['1', '2'].map((id) => `generate ${join(out, `${id}.csv`)} ${join(out, `${id}.bin`)} 0x3000`),
    );
    for (const id of ['1', '2']) {
      expect(statSync(join(out, `${id}.bin`)).size).toBe(0x3000);
      expect(mode(join(out, `${id}.bin`))).toBe(0o600);
    }

    writeFileSync(generator, '#!/bin/sh\necho "nvs_partition_gen: no space" >&2\nexit 1\n');
    const failed = await runCli([...base, '--out', join(dir, 'c')], { PATH: `${bin}:/usr/bin:/bin` });
    expect(failed.code).toBe(5);
    expect(failed.stderr).toMatch(/nvs_partition_gen.py failed for .*1\.csv \(exit 1: nvs_partition_gen: no space\): nothing was written/);
    expect(readdirSync(join(dir, 'c'))).toEqual([]);
  });
});
