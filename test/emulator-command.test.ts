// `moddable-dps emulator` as a user runs it: in-process for the banner, the event log and a device
// provisioned through it with our CLI; as a process for Ctrl+C and SIGTERM; and its refusals
// (bad config files, bad flags, a port in use) with exit status 2 and one clear line.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, cpSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { emulatorCommand } from '../cli/emulator.js';
import { EXIT_CODES } from '../cli/shared/io.js';
import type { ProvisioningError } from '../src/errors.js';
import { captureIo, runCli } from './support/cli-runner.js';
import { EPHEMERAL_PORTS, startEmulatorCommand } from './support/emulator-cli.js';

const ROOT = join(import.meta.dirname, '..');
const EXAMPLE = join(ROOT, 'examples', 'emulator.json');
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
const example = JSON.parse(readFileSync(EXAMPLE, 'utf8')) as {
  idScope: string;
  iotHubs: { connectionString: string }[];
  enrollmentGroups: { attestation: { symmetricKey: { primaryKey: string } } }[];
};
const GROUP_KEY = example.enrollmentGroups[0]!.attestation.symmetricKey.primaryKey;
const HUBS = ['demo-hub-1.azure-devices.net', 'demo-hub-2.azure-devices.net', 'demo-hub-3.azure-devices.net'];
const HUB_KEYS = example.iotHubs.map((h) => /SharedAccessKey=([^;]+)/.exec(h.connectionString)![1]!);

const dir = mkdtempSync(join(tmpdir(), 'dps-emulator-command-'));
/** One state directory for every run: the CA is made once and reused, as across restarts. */
const STATE = join(dir, 'state');
/** Emulators started as processes; any still running when the file ends (a failed test) are stopped. */
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('the emulator in the foreground', () => {
  it('prints the banner, provisions a device through our CLI, logs it without secrets, and stops', async () => {
    const { dps, io, stop } = await startEmulatorCommand([
      '--config',
      EXAMPLE,
      '--state-dir',
      STATE,
      ...EPHEMERAL_PORTS,
      '--retry-after',
      '0',
    ]);
    const banner = io.out();
    const endpoint = /device endpoint\s+(127\.0\.0\.1:\d+)/.exec(banner)?.[1];
    const ca = /CA certificate\s+(\S+)/.exec(banner)?.[1];
    expect(endpoint).toBe(`127.0.0.1:${dps.endpoint.port}`);
    expect(banner).toMatch(
      new RegExp(`device HTTPS endpoint +https://127\\.0\\.0\\.1:${dps.httpsEndpoint.port}  \\(DPS's HTTPS device API`),
    );
    expect(ca).toBe(dps.caPath);
    expect(banner).toMatch(/ID scope\s+0ne00DEMO01/);
    expect(banner).toMatch(/allocation policy\s+hashed/);
    for (const [i, weight] of [1, 2, 7].entries()) expect(banner).toMatch(new RegExp(`${HUBS[i]}\\s+weight ${weight}\\b.*${weight * 10}%`));
    expect(banner).toMatch(/enrollment groups\s+demo-group\s+enabled/);
    expect(banner).toContain(`--ca ${ca}`);
    expect(banner).toContain(
      `mcconfig -d -m -p lin -t build manifest.json idScope=0ne00DEMO01 endpoint=${endpoint} hubEndpoint=127.0.0.1:${dps.hubEndpoint.port} sntp= serial=SN-0001 ` +
        `"groupKey=<primary key of enrollment group demo-group>" "caCertificate=$(cat ${dps.caPath})"`,
    );
    expect(banner).toMatch(new RegExp(`service endpoint\\s+https://127\\.0\\.0\\.1:${dps.service.endpoint.port}\\b`));
    expect(banner).toMatch(new RegExp(`IoT hubs endpoint\\s+127\\.0\\.0\\.1:${dps.hubEndpoint.port}\\b`));
    expect(banner).toMatch(new RegExp(`MQTT over WebSockets\\s+wss://127\\.0\\.0\\.1:${dps.httpsEndpoint.port}/\\$iothub/websocket `));
    expect(banner).toMatch(/service connection\s+HostName=127\.0\.0\.1:\d+;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=/);
    expect(banner).toContain(dps.service.connectionString);
    const saved = join(STATE, 'service-connection-string');
    expect(readFileSync(saved, 'utf8')).toBe(`${dps.service.connectionString}\n`);
    expect(statSync(saved).mode & 0o777).toBe(0o600);

    const registered = await runCli([
      'register',
      '--id-scope',
      example.idScope,
      '--registration-id',
      'cmd-device-1',
      '--group-key',
      GROUP_KEY,
      '--endpoint',
      endpoint!,
      '--ca',
      ca!,
      '--quiet',
    ]);
    expect(registered.code, registered.stderr).toBe(0);
    const hub = /assignedHub: (\S+)/.exec(registered.stdout)?.[1];
    expect(HUBS).toContain(hub);

    const refused = await runCli([
      'register',
      '--id-scope',
      example.idScope,
      '--registration-id',
      'cmd-device-2',
      '--key',
      GROUP_KEY,
      '--endpoint',
      endpoint!,
      '--ca',
      ca!,
      '--quiet',
      '--timeout',
      '5',
    ]);
    expect(refused.code).toBe(EXIT_CODES.unauthorized);

    expect(await stop()).toBe(0);
    const log = io.out().slice(banner.length);
    expect(log).toMatch(/\] connected\s+cmd-device-1\n/);
    expect(log).toMatch(/\] registering cmd-device-1 \(enrollment group demo-group\)\n/);
    expect(log).toContain(`assigned   cmd-device-1 → ${hub} as device cmd-device-1 (initialAssignment)`);
    expect(log).toMatch(/\] refused\s+cmd-device-2: the SAS signature does not match/);
    expect(log).toMatch(/stop requested: stopping the emulator\nstopped\n$/);
    for (const secret of [GROUP_KEY, dps.service.key, ...HUB_KEYS]) expect(log).not.toContain(secret);
    expect(io.err()).toBe('');
  });

  it('runs without a config: the default ID scope, no hubs, no enrollments', async () => {
    // In memory: the state directory's stored state (seeded by the config above) would be kept.
    const { io, stop } = await startEmulatorCommand(['--in-memory', '--state-dir', STATE, ...EPHEMERAL_PORTS, '--id-scope', '0ne00CMD002']);
    expect(io.out()).toMatch(/ID scope\s+0ne00CMD002/);
    expect(io.out()).toMatch(/linked hubs\s+none/);
    expect(io.out()).toMatch(/enrollment groups\s+none/);
    expect(await stop()).toBe(0);
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('as a process, exits 0 on %s after printing the banner', async (signal) => {
    const { child, exited, out, err } = await spawnEmulator(['--config', EXAMPLE, '--state-dir', STATE, ...EPHEMERAL_PORTS]);
    child.kill(signal);
    expect(await exited).toBe(0);
    expect(out()).toContain(`${signal}: stopping the emulator\nstopped\n`);
    expect(err()).toBe('');
  });
});

/** Spawn the built CLI; resolves with the banner once it is out. */
async function spawnEmulator(args: string[], cwd = ROOT) {
  const child = spawn(process.execPath, [BIN, 'emulator', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk;
      if (stdout.includes('Device events:')) resolve();
    });
    void exited.then((code) => reject(new Error(`exited early (${code}): ${stderr}`)));
  });
  return { child: child as ChildProcess, exited, out: () => stdout, err: () => stderr };
}

/** The fenced code blocks of a Markdown text, with their language ('' when none). */
function fencedBlocks(markdown: string): { lang: string; body: string }[] {
  const blocks: { lang: string; body: string }[] = [];
  let open: { lang: string; lines: string[] } | undefined;
  for (const line of markdown.split('\n')) {
    if (open === undefined) {
      const fence = /^```(\S*)\s*$/.exec(line);
      if (fence) open = { lang: fence[1]!, lines: [] };
    } else if (/^```\s*$/.test(line)) {
      blocks.push({ lang: open.lang, body: `${open.lines.join('\n')}\n` });
      open = undefined;
    } else {
      open.lines.push(line);
    }
  }
  return blocks;
}

describe("the README's walkthrough", () => {
  it('runs as written (ports made ephemeral) and shows what the README says it shows', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Walkthrough'));
    const end = section.indexOf('\n## ');
    const text = end < 0 ? section : section.slice(0, end);
    const blocks = fencedBlocks(text);
    const shell = blocks.filter((b) => b.lang === 'sh').map((b) => b.body);
    const shown = blocks.filter((b) => b.lang === '').map((b) => b.body);
    expect(shell).toHaveLength(2);
    const [start, steps] = shell as [string, string];
    expect(start.trim()).toMatch(/^npx moddable-dps emulator /);

    const cwd = mkdtempSync(join(tmpdir(), 'dps-walkthrough-'));
    try {
      mkdirSync(join(cwd, 'examples'));
      cpSync(EXAMPLE, join(cwd, 'examples', 'emulator.json'));
      const args = start
        .trim()
        .replace(/^npx moddable-dps emulator /, '')
        .split(/\s+/);
      const emulator = await spawnEmulator([...args, ...EPHEMERAL_PORTS, '--retry-after', '1'], cwd);
      const port = /device endpoint\s+127\.0\.0\.1:(\d+)/.exec(emulator.out())![1]!;
      const script = [
        'set -e',
        // openssl is only the README's way to make a random key
        `command -v openssl >/dev/null 2>&1 || openssl() { node -e "process.stdout.write(require('node:crypto').randomBytes(32).toString('base64') + '\\n')"; }`,
        steps.replaceAll('npx moddable-dps', `node '${BIN}'`).replaceAll('localhost:8883', `localhost:${port}`),
      ].join('\n');
      const env = { ...process.env };
      delete env.DPS_SERVICE_CONNECTION_STRING;
      const shellRun = spawn('bash', ['-c', script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(shellRun);
      let stdout = '';
      let stderr = '';
      shellRun.stdout.on('data', (chunk: Buffer) => (stdout += chunk));
      shellRun.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => shellRun.on('exit', resolve));
      expect(code, stderr).toBe(0);

      const [assigned, device, log] = shown.slice(-3) as [string, string, string];
      expect(stdout).toContain(assigned);
      expect(stdout).toContain(device);
      expect(stdout).toContain('"assignedHub": "demo-hub-2.azure-devices.net"');
      expect(stdout).toContain('"substatus": "deviceDataMigrated"');
      for (const line of log.trim().split('\n')) {
        expect(emulator.out()).toContain(line.replace(/^\[\d\d:\d\d:\d\d\] /, ''));
      }
      emulator.child.kill('SIGINT');
      expect(await emulator.exited).toBe(0);
    } finally {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('refusals: exit 2 and one line saying what to fix', () => {
  const write = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const config = (hubs: unknown) => JSON.stringify({ iotHubs: hubs });
  const cases: [string, () => string[], RegExp][] = [
    ['a missing config file', () => ['--config', join(dir, 'nope.json')], /nope\.json: cannot read the config file: no such file$/],
    [
      'a config that is not JSON',
      () => ['--config', write('broken.json', '{ "iotHubs": [ }')],
      /broken\.json: not valid JSON \(line 1, column 16: unexpected "}"\)$/,
    ],
    [
      'a weight out of range',
      () => [
        '--config',
        write('weight.json', config([{ connectionString: example.iotHubs[0]!.connectionString, allocationWeight: 1001 }])),
      ],
      /weight\.json at \/iotHubs\/0\/allocationWeight: must be a whole number from 1 to 1000, or null for 1; got 1001$/,
    ],
    [
      'a bad connection string',
      () => ['--config', write('cs.json', config([{ connectionString: 'HostName=x.azure-devices.net' }]))],
      /cs\.json at \/iotHubs\/0\/connectionString: the linked hub connection string lacks SharedAccessKeyName, SharedAccessKey$/,
    ],
    ['a bad ID scope', () => ['--id-scope', 'not a scope'], /ID scope/],
    ['a bad port', () => ['--port', '70000'], /--port must be a whole number from 0 to 65535$/],
    ['a bad retry-after', () => ['--retry-after', '-1'], /--retry-after/],
    ['an unknown flag', () => ['--frobnicate'], /Unknown option '--frobnicate'/],
  ];
  it.each(cases)('%s', async (_what, args, message) => {
    const r = await runCli(['emulator', '--state-dir', STATE, ...EPHEMERAL_PORTS, ...args()]);
    expect(r.code).toBe(EXIT_CODES['invalid-input']);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr.trim()).toMatch(/^error \(invalid-input\): /);
    expect(r.stderr.trim()).toMatch(message);
    for (const secret of HUB_KEYS) expect(r.stderr).not.toContain(secret);
  });

  it.each(['--port', '--service-port', '--hub-port', '--https-port', '--console-port'])('%s in use', async (flag) => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const ports = EPHEMERAL_PORTS;
      ports[ports.indexOf(flag) + 1] = String(port);
      const r = await runCli(['emulator', '--state-dir', STATE, ...ports]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `error (invalid-input): 127.0.0.1 ${flag} ${port} is in use (another emulator?): stop it or choose another port (0 picks a free one)\n`,
      );
    } finally {
      server.close();
    }
  });

  it('has --help, and lists the command in the CLI usage', async () => {
    const help = await runCli(['emulator', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: moddable-dps emulator/);
    expect((await runCli(['--help'])).stdout).toMatch(/\n {2}emulator {13}run a local DPS/);
  });
});

describe('a state directory or start-up that cannot succeed (issue 18)', () => {
  const ports = EPHEMERAL_PORTS;
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  const cases: [string, string, RegExp][] = [
    ['a file in its place', file, /cannot make the state directory .*a-file: a file \(not a directory\) is in the way$/],
    ['a file as a parent', join(file, 'st'), /cannot make the state directory .*a-file\/st: a parent of .* is a file, not a directory$/],
    // Node 20's recursive mkdir loops forever there: the emulator never started and ignored SIGTERM.
    ...(process.platform === 'linux'
      ? ([
          ['a parent that can be neither made nor found', '/proc/nope/st', /\/proc\/nope\/st: a parent cannot be made there \(ENOENT\)$/],
        ] satisfies [string, string, RegExp][])
      : []),
    ...(process.platform === 'linux' && process.getuid?.() === 0
      ? ([['a place where making is not permitted', '/sys/nope/st', /\/sys\/nope\/st: not allowed \(EPERM\)$/]] satisfies [
          string,
          string,
          RegExp,
        ][])
      : []),
  ];
  it.each(cases)('refuses %s: exit 2, naming the path', async (_what, stateDir, message) => {
    const r = await runCli(['emulator', '--state-dir', stateDir, ...ports]);
    expect(r.code).toBe(EXIT_CODES['invalid-input']);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr.trim()).toMatch(/^error \(invalid-input\): --state-dir: /);
    expect(r.stderr.trim()).toMatch(message);
  });

  /** A FIFO nobody writes to: reading it as the config file never ends (its open blocks a thread). */
  function silentFifo(name: string): { path: string; release: () => void } {
    const path = join(dir, name);
    execFileSync('mkfifo', [path]);
    return {
      path,
      // A writer that opens and closes lets the blocked open (and read) finish: the thread is freed.
      // No reader left (ENXIO): nothing to free.
      release: () => {
        try {
          closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {}
      },
    };
  }

  it.runIf(process.platform !== 'win32')('bounds its start-up: a config file that never answers ends as a timeout (exit 11)', async () => {
    const fifo = silentFifo('stuck-config.json');
    const io = captureIo();
    try {
      const outcome = await emulatorCommand(['--config', fifo.path, '--state-dir', STATE, ...ports], io, { startupTimeoutMs: 500 }).then(
        (code) => ({ code, message: '' }),
        (error: ProvisioningError) => ({ code: EXIT_CODES[error.kind], message: error.message }),
      );
      expect(outcome.code).toBe(EXIT_CODES.timeout);
      expect(outcome.message).toMatch(/did not start within 0\.5 s: .*stuck-config\.json/);
    } finally {
      fifo.release();
    }
  });

  it.runIf(process.platform !== 'win32')('ends on SIGTERM while its start-up is stuck (a process)', async () => {
    const fifo = silentFifo('stuck-config-2.json');
    const child = spawn(process.execPath, [BIN, 'emulator', '--config', fifo.path, '--state-dir', STATE, ...ports], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk));
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500)); // started, and stuck reading the config
      expect(child.exitCode).toBe(null);
      child.kill('SIGTERM');
      // Generous: only that it ends, not how fast (the machine is shared).
      const ended = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 15_000))]);
      expect(ended).toBe('SIGTERM');
      expect(stdout).toBe('SIGTERM: stopping the emulator before it started\n');
    } finally {
      fifo.release();
    }
  });
});
