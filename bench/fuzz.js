// The long fuzz run: the properties of test/fuzz-*.test.ts (the very same code), ≥ 100,000 cases each.
//   node bench/fuzz.js                    100,000 cases per property
//   node bench/fuzz.js --runs=1000000     or FUZZ_RUNS=1000000
//   node bench/fuzz.js --only=decoder     properties whose name contains the text
//   FUZZ_SEED=123 node bench/fuzz.js      replay a run (the seed is printed)
//   node --expose-gc bench/fuzz.js        collect garbage before each property: cleaner peak heap
// Self-contained: esbuild bundles the TypeScript test files (no `npm run build` needed), with
// `vitest` replaced by a stand-in that collects describe/it, and fast-check kept external so this
// script's fast-check is the bundle's: a global life-cycle plugin times each case.
// Per property: cases, cases/second, the slowest case, the heap when it started (after a
// collection with --expose-gc) and its peak (process.memoryUsage().heapUsed, sampled every 256 cases). FAIL when a property fails, an error escapes (unhandled rejection), or one
// case takes longer than --hang-ms (default 2000 ms: a hang detector, not a performance bar).
// Not part of npm test.
import { readdirSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { bundleForNode, ROOT } from './bundle.js';

const options = Object.fromEntries(
  process.argv.slice(2).map((arg) => {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new Error(`bench/fuzz.js: unknown argument ${arg}`);
    return [m[1], m[2] ?? 'true'];
  }),
);
const runs = Number(options.runs ?? process.env.FUZZ_RUNS ?? 100_000);
const seed = Number(options.seed ?? process.env.FUZZ_SEED ?? (Date.now() ^ (Math.random() * 2 ** 31)) | 0);
const hangMs = Number(options['hang-ms'] ?? 2000);
if (!(Number.isSafeInteger(runs) && runs > 0)) throw new Error('bench/fuzz.js: --runs must be a positive whole number');

// ---- bundle test/fuzz-*.test.ts with a stand-in for vitest ----
const VITEST_STAND_IN = `
const registry = (globalThis.__fuzzBench ??= { suite: '', tests: [] });
export function describe(name, body) { const outer = registry.suite; registry.suite = name; try { body(); } finally { registry.suite = outer; } }
export function it(name, body) { registry.tests.push({ suite: registry.suite, name, body }); }
`;
const fuzzFiles = readdirSync(join(ROOT, 'test'))
  .filter((name) => /^fuzz-.*\.test\.ts$/.test(name))
  .sort();
const bundle = await bundleForNode(undefined, 'fuzz-bench', {
  stdin: { contents: fuzzFiles.map((name) => `import './test/${name}';`).join('\n'), resolveDir: ROOT, loader: 'ts' },
  plugins: [
    {
      name: 'vitest-stand-in',
      setup(b) {
        b.onResolve({ filter: /^vitest$/ }, () => ({ path: 'vitest', namespace: 'stand-in' }));
        b.onLoad({ filter: /.*/, namespace: 'stand-in' }, () => ({ contents: VITEST_STAND_IN, loader: 'js' }));
      },
    },
  ],
});

// ---- timing and heap of every case, through fast-check's global life-cycle plugin ----
let current; // the property being run: { cases, maxMs, baseHeap, peakHeap }
fc.installGlobalPlugin(
  fc.beforeEach(() => {
    const started = performance.now();
    return () => {
      const ms = performance.now() - started;
      if (!current) return;
      current.cases++;
      if (ms > current.maxMs) current.maxMs = ms;
      if ((current.cases & 255) === 0) sampleHeap();
    };
  }),
);
fc.configureGlobal({ seed });

function sampleHeap() {
  const { heapUsed } = process.memoryUsage();
  if (heapUsed > current.peakHeap) current.peakHeap = heapUsed;
}

const escaped = [];
process.on('unhandledRejection', (reason) => escaped.push(reason));
process.on('uncaughtException', (error) => escaped.push(error));

process.env.FUZZ_RUNS = String(runs); // read by the test file when it loads
await import(pathToFileURL(bundle).href);
const tests = globalThis.__fuzzBench.tests.filter((t) => !options.only || `${t.suite} ${t.name}`.includes(options.only));

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(`fuzz bench ${new Date().toISOString()}  node ${process.version}  ${availableParallelism()} CPUs (${cpu})`);
console.log(`${runs.toLocaleString('en')} cases per property, seed ${seed}${globalThis.gc ? ', gc before each' : ''}\n`);
const header = ['property', 'cases', 'cases/s', 'max ms/case', 'heap MB', 'peak MB'];
console.log(
  `${header[0].padEnd(78)}${header
    .slice(1)
    .map((h) => h.padStart(12))
    .join('')}`,
);

const failures = [];
let totalCases = 0;
let suite;
for (const test of tests) {
  if (test.suite !== suite) {
    suite = test.suite;
    console.log(suite);
  }
  globalThis.gc?.();
  current = { cases: 0, maxMs: 0, baseHeap: process.memoryUsage().heapUsed, peakHeap: 0 };
  sampleHeap();
  const started = performance.now();
  let failure;
  try {
    await test.body();
  } catch (error) {
    failure = error;
  }
  await new Promise((resolve) => setImmediate(resolve)); // let an escaped rejection surface here
  const seconds = (performance.now() - started) / 1000;
  sampleHeap();
  const stats = current;
  current = undefined;
  totalCases += stats.cases;
  const slow = stats.maxMs > hangMs;
  const name = `  ${test.name.length > 74 ? `${test.name.slice(0, 73)}…` : test.name}`;
  const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);
  const cells =
    stats.cases === 0 // a pinned regression: one plain run, no fast-check cases
      ? ['pinned', '', `${(seconds * 1000).toFixed(2)}`, mb(stats.baseHeap), mb(stats.peakHeap)]
      : [
          stats.cases.toLocaleString('en'),
          Math.round(stats.cases / seconds).toLocaleString('en'),
          stats.maxMs.toFixed(2),
          mb(stats.baseHeap),
          mb(stats.peakHeap),
        ];
  console.log(`${name.padEnd(78)}${cells.map((c) => c.padStart(12)).join('')}${failure ? '  FAILED' : slow ? '  SLOW' : ''}`);
  if (failure)
    failures.push(
      `${test.suite} › ${test.name}: ${failure instanceof Error ? `${failure.message}${failure.cause ? `\n  caused by: ${failure.cause}` : ''}` : failure}`,
    );
  if (slow) failures.push(`${test.suite} › ${test.name}: one case took ${stats.maxMs.toFixed(0)} ms (over --hang-ms=${hangMs})`);
  if (escaped.length) failures.push(`${test.suite} › ${test.name}: escaped: ${escaped.splice(0).map(String).join('; ')}`);
}

console.log('');
for (const failure of failures) console.log(`FAIL ${failure.slice(0, 4000)}\n`);
const verdict = failures.length === 0 && tests.length > 0 ? 'PASS' : 'FAIL';
console.log(
  `${verdict}: ${tests.length} properties, ${totalCases.toLocaleString('en')} cases, ${failures.length} failure(s), seed ${seed}`,
);
process.exitCode = verdict === 'PASS' ? 0 : 1;
