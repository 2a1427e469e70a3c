// Runs parts of the core on the XS engine (the xsnap worker that @agoric/xsnap builds at install)
// and hands the results back to Node, so a test can compare them with Node's.
//
//   1. esbuild bundles an entry (the core plus a scenario) into one plain script for ES2022;
//   2. the script is wrapped after sandbox.js, which strips the XS global object down to the
//      ECMAScript standard globals (no TextEncoder, atob, timers, console, harden...);
//   3. xsnap-driver.js, in a child Node process, evaluates it in a fresh xsnap worker, optionally
//      after SES lockdown, delivers commands, and prints what the XS side sent back.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** The repository root: the nearest folder above this file with the project's package.json. */
export const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
export const XS_DIR = join(ROOT, 'test', 'xs');

function findRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'moddable-dps') return dir;
    if (dirname(dir) === dir) throw new Error(`No moddable-dps package.json above ${start}`);
  }
}

/** What a scenario gets from its engine. Scenarios return JSON values only, the same on every engine. */
export interface ScenarioEnv {
  engine: 'node' | 'xs';
  /** Resolves once the job queue has emptied (a host macrotask: setImmediate on Node and xsnap). */
  idle(): Promise<void>;
}

export const nodeEnv: ScenarioEnv = {
  engine: 'node',
  idle: () => new Promise((resolve) => setImmediate(resolve)),
};

export interface BundleOptions {
  minify?: boolean;
}

/** Bundle `contents` (TypeScript, resolved from test/xs) and everything it imports into one ES2022 script. */
export async function bundle(contents: string, options: BundleOptions = {}): Promise<string> {
  const result = await build({
    stdin: { contents, resolveDir: XS_DIR, sourcefile: 'xs-entry.ts', loader: 'ts' },
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'neutral',
    target: 'es2022',
    mainFields: ['module', 'main'],
    minify: options.minify ?? false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

export interface ScenarioRef {
  /** Module path relative to test/xs, e.g. './scenarios/vectors.ts'. */
  module: string;
  /** Its export to call with the engine's ScenarioEnv; may be async; returns JSON. */
  exportName: string;
}

/**
 * The entry that runs each scenario in turn in XS and sends one message: each scenario's outcome
 * (value or error), and the global object's property names afterwards.
 */
export function scenariosEntry(refs: Record<string, ScenarioRef>): string {
  const names = Object.keys(refs);
  return [
    ...names.map((name, i) => `import { ${refs[name]!.exportName} as scenario${i} } from ${JSON.stringify(refs[name]!.module)};`),
    'declare const harness: { engine: "xs"; idle(): Promise<void>; run(fn: () => unknown): void; describeError(e: unknown): unknown; removedGlobals: string[]; keptGlobals: string[] };',
    'harness.run(async () => {',
    '  const outcomes: Record<string, unknown> = {};',
    ...names.map(
      (name, i) =>
        `  try { outcomes[${JSON.stringify(name)}] = { ok: true, value: await scenario${i}(harness) }; } catch (error) { outcomes[${JSON.stringify(name)}] = { ok: false, error: harness.describeError(error) }; }`,
    ),
    // Measured after the core's modules ran: a module that added a global would show here.
    '  return { outcomes, globals: Object.getOwnPropertyNames(globalThis).sort(), removed: harness.removedGlobals, kept: harness.keptGlobals };',
    '});',
  ].join('\n');
}

/** The script xsnap evaluates: the sandbox first, then the bundle, which receives `harness`. */
export function sandboxed(bundleCode: string): string {
  const sandbox = readFileSync(join(XS_DIR, 'sandbox.js'), 'utf8');
  return `((harness) => {\n${bundleCode}\n})((\n${sandbox}\n)());\n`;
}

export interface MeterUsage {
  /** Computrons: XS's count of executed byte codes (and some native work) during the delivery. */
  compute: number;
  /** Bytes the XS machine has reserved from the system (chunks and slot heaps). */
  allocate: number;
  /** Slots in use when the delivery ended (live plus garbage not yet collected). */
  currentHeapCount: number;
}

export interface DriverResult {
  lockdown?: { meterUsage: MeterUsage };
  scripts: { meterUsage: MeterUsage }[];
  commands: { reply: string; meterUsage: MeterUsage }[];
  messages: { during: string; value: unknown }[];
  stdout: string;
  stderr: string;
  error?: string;
}

export interface DriverJob {
  name?: string;
  /** Evaluate SES's lockdown bundle (@agoric/xsnap-lockdown) in the worker first. */
  lockdown?: boolean;
  scripts: string[];
  /** Delivered, in order, to the worker's handleCommand after the scripts. */
  commands?: string[];
  /** Computrons allowed per delivery (default 1e9, a few seconds). */
  meteringLimit?: number;
  /** Wall-clock limit for the whole job (default 60 s): the driver is killed after it. */
  timeoutMs?: number;
}

/** Run one job in a fresh xsnap worker (through xsnap-driver.js in a child Node process). */
export function runXs(job: DriverJob): Promise<DriverResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [join(XS_DIR, 'xsnap-driver.js')], {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill(), job.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal) return reject(new Error(`xsnap driver killed (${signal}) after ${job.timeoutMs ?? 60_000} ms: ${stderr}`));
      try {
        resolvePromise(JSON.parse(stdout) as DriverResult);
      } catch {
        reject(new Error(`xsnap driver exited with ${code}: ${stderr || stdout}`));
      }
    });
    const { timeoutMs: _timeoutMs, ...driverJob } = job;
    child.stdin.end(JSON.stringify(driverJob));
  });
}

/** What one scenario run in XS produced. */
export interface ScenarioOutcome {
  ok: boolean;
  value?: unknown;
  error?: { name?: string; message?: string; kind?: string; stack?: string; thrown?: string };
}

/** What a run of scenarios in one xsnap worker produced. */
export interface XsRun {
  /** False when the worker produced no result at all (it crashed, or a scenario never settled). */
  ok: boolean;
  error?: string;
  outcomes: Record<string, ScenarioOutcome>;
  /** The global object's own property names as the run ended (after the core loaded). */
  globals: string[];
  /** Non-standard globals the sandbox deleted. */
  removedGlobals: string[];
  /** Non-standard globals the sandbox could not delete (non-configurable). */
  keptGlobals: string[];
  meterUsage?: MeterUsage;
  driver: DriverResult;
}

const bundles = new Map<string, Promise<string>>();

/** Bundle (memoised per entry) and run `refs` in one fresh, sandboxed xsnap worker. */
export async function runScenariosInXs(
  refs: Record<string, ScenarioRef>,
  options: { lockdown?: boolean; name?: string } = {},
): Promise<XsRun> {
  const entry = scenariosEntry(refs);
  if (!bundles.has(entry)) bundles.set(entry, bundle(entry));
  const code = sandboxed(await bundles.get(entry)!);
  const driver = await runXs({ name: options.name ?? 'xs-scenarios', lockdown: options.lockdown ?? false, scripts: [code] });
  const result = driver.messages.find((m) => (m.value as { type?: string }).type === 'result')?.value as
    | {
        ok: boolean;
        value?: { outcomes: Record<string, ScenarioOutcome>; globals: string[]; removed: string[]; kept: string[] };
        error?: unknown;
      }
    | undefined;
  const meterUsage = driver.scripts[0]?.meterUsage;
  const base = { driver, ...(meterUsage && { meterUsage }) };
  if (!result?.ok || !result.value) {
    const why =
      driver.error ?? (result ? JSON.stringify(result.error) : 'the scenarios never settled (an unfired timer or a lost promise?)');
    return {
      ok: false,
      error: `${why}\n${driver.stderr}${driver.stdout}`.trim(),
      outcomes: {},
      globals: [],
      removedGlobals: [],
      keptGlobals: [],
      ...base,
    };
  }
  const { outcomes, globals, removed, kept } = result.value;
  return { ok: true, outcomes, globals, removedGlobals: removed, keptGlobals: kept, ...base };
}

/** Resolve a path under test/xs (for readers of results). */
export function xsPath(...parts: string[]): string {
  return resolve(XS_DIR, ...parts);
}
