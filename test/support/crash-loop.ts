// The SIGKILL loop of the crash tests (file-store-crash, emulator-state-crash): a writer child
// process, bundled from test/support by esbuild, rewrites a file with one of two contents after
// the other and is killed with SIGKILL at a random moment, again and again; after every kill the
// test checks the file. A writer prints 'ready' once it is set up, then 'w' after each write.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { build } from 'esbuild';
import { expect } from 'vitest';

const MIN_KILLS = 30;
const MAX_KILLS = 50;
/** Stop after MIN_KILLS once this many kills have landed inside a write. */
const ENOUGH_MID_WRITE = 10;

interface Run {
  /** Writes that completed before the kill. */
  writes: number;
  /** The killed writer's own temp file was left: the kill landed inside a write. */
  midWrite: boolean;
}

export interface KillLoop {
  /** Names the test in its summary line, e.g. 'file store'. */
  label: string;
  /** The bundled writer (bundleWriter) and its arguments. */
  writer: string;
  args: string[];
  /** What one write is called in messages: 'write', 'save'. */
  write: string;
  /** A writer is killed at a random moment up to this long after it is ready. */
  maxRunMs: number;
  /** The temp files of writers killed mid-write, each named with its writer's pid. */
  temps(): string[];
  /** The file's check after each kill; `where` names the kill in its messages. */
  check(where: string): void | Promise<void>;
}

/** test/support/<name>.ts bundled for Node into `dir`: the path of the writer to run. */
export async function bundleWriter(name: string, dir: string): Promise<string> {
  const outfile = join(dir, `${name}.mjs`);
  await build({
    entryPoints: [join(import.meta.dirname, `${name}.ts`)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    logLevel: 'silent',
  });
  return outfile;
}

/**
 * Kills writers until enough kills have landed inside a write, checking the file after each;
 * fails when temp files pile up (more than one at once) or no kill landed inside a write.
 */
export async function killLoop(loop: KillLoop): Promise<void> {
  const { write } = loop;
  const runs: Run[] = [];
  let mostTemps = 0;
  while (runs.length < MAX_KILLS && (runs.length < MIN_KILLS || runs.filter((r) => r.midWrite).length < ENOUGH_MID_WRITE)) {
    const run = await runAndKill(loop, Math.random() * loop.maxRunMs);
    runs.push(run);
    const where = `after kill ${runs.length} (${run.writes} ${write}s completed, ${run.midWrite ? `inside a ${write}` : `between ${write}s`})`;
    await loop.check(where);
    mostTemps = Math.max(mostTemps, loop.temps().length);
    expect(loop.temps().length, `${where}: temp files piled up: ${loop.temps().join(', ')}`).toBeLessThanOrEqual(1);
  }
  const midWrite = runs.filter((r) => r.midWrite).length;
  console.log(
    `${loop.label} crash test: ${runs.length} kills, ${midWrite} inside a ${write} (temp file left), ${runs.length - midWrite} between ${write}s; ` +
      `${runs.reduce((n, r) => n + r.writes, 0)} ${write}s completed in all; at most ${mostTemps} temp file(s) at once`,
  );
  expect(midWrite, `no kill landed inside a ${write}: the test proved nothing`).toBeGreaterThan(0);
}

/** Starts the writer, lets it run for `ms` after it is ready, kills it with SIGKILL. */
function runAndKill(loop: KillLoop, ms: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [loop.writer, ...loop.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killTimer: NodeJS.Timeout | undefined;
    // A bound on the whole run, so a child that never gets ready cannot hold the test.
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
      if (killTimer === undefined && stdout.startsWith('ready\n')) killTimer = setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      clearTimeout(killTimer);
      if (signal !== 'SIGKILL' || killTimer === undefined) {
        return reject(new Error(`the writer ended by itself (code ${code}, signal ${signal}): ${stderr}`));
      }
      const pid = child.pid!;
      resolve({
        writes: stdout.split('\n').filter((line) => line === 'w').length,
        midWrite: loop.temps().some((name) => name.includes(`.${pid}.`)),
      });
    });
  });
}
