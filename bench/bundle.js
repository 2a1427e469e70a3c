// The bench scripts run TypeScript (the harnesses and test code they reuse): each is bundled
// for Node first, into node_modules/.cache/moddable-dps, with the packages left external.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CACHE = join(ROOT, 'node_modules', '.cache', 'moddable-dps');

/** Bundles `entry` (a path from the repository root; or options.stdin) to CACHE/<name>.mjs and returns that path. */
export async function bundleForNode(entry, name, options = {}) {
  mkdirSync(CACHE, { recursive: true });
  const outfile = join(CACHE, `${name}.mjs`);
  await build({
    ...(entry !== undefined && { entryPoints: [join(ROOT, entry)] }),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'silent',
    ...options,
  });
  return outfile;
}
