// The architecture as the imports draw it (README, "Layout"): the arrows point one way
// (src ← hosts ← cli, src ← emulator ← cli), the CLI's shared pieces import no command, no
// command imports another, and no file imports, directly or through others, a file that
// imports it back. Every static and dynamic import of every TypeScript file is read.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROOTS = ['src', 'hosts', 'emulator', 'cli'];

interface Import {
  from: string;
  /** A repository path (relative imports) or a bare specifier (packages, node:, the SDK's modules). */
  to: string;
  bare: boolean;
}

function files(dir: string): string[] {
  return readdirSync(join(REPO, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return files(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(join(REPO, file), 'utf8');
  const specifiers = [
    ...text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm),
    ...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm),
    ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((match) => match[1]!);
  return specifiers.map((specifier) => {
    if (!specifier.startsWith('.')) return { from: file, to: specifier, bare: true };
    const target = relative(REPO, resolve(REPO, dirname(file), specifier))
      .replace(/\\/g, '/')
      .replace(/\.js$/, '.ts');
    return { from: file, to: target, bare: false };
  });
}

const all = ROOTS.flatMap(files);
const imports = all.flatMap(importsOf);
const under = (path: string, folder: string) => path === folder || path.startsWith(`${folder}/`);

/** The CLI's units: a command file or folder; shared/ and service/ are libraries of the commands. */
function cliUnit(path: string): string {
  const parts = path.split('/');
  return parts.length > 2 ? parts.slice(0, 2).join('/') : path;
}

describe('layout', () => {
  it('reads the imports of the whole tree', () => {
    expect(all.length).toBeGreaterThan(50);
    for (const folder of ROOTS) expect(imports.some((i) => under(i.from, folder))).toBe(true);
    // Every relative import names a file that exists (hosts/moddable/device: a declaration, its
    // module chosen per platform by the manifest).
    for (const i of imports.filter((i) => !i.bare)) {
      expect(all.includes(i.to) || existsSync(join(REPO, i.to.replace(/\.ts$/, '.d.ts'))), `${i.from} imports ${i.to}`).toBe(true);
    }
  });

  it('keeps the core free of hosts, the emulator and the CLI: only itself and @noble/hashes', () => {
    const wrong = imports.filter((i) => under(i.from, 'src') && (i.bare ? !i.to.startsWith('@noble/hashes/') : !under(i.to, 'src')));
    expect(wrong).toEqual([]);
  });

  it('keeps the hosts apart: each imports the core and its platform, never the emulator, the CLI or the other host', () => {
    const wrong = imports.filter(
      (i) =>
        (under(i.from, 'hosts/node') && !i.bare && !under(i.to, 'src') && !under(i.to, 'hosts/node')) ||
        (under(i.from, 'hosts/moddable') && !i.bare && !under(i.to, 'src') && !under(i.to, 'hosts/moddable')),
    );
    expect(wrong).toEqual([]);
  });

  it('keeps the emulator a library: it never imports the CLI or a host', () => {
    const wrong = imports.filter((i) => under(i.from, 'emulator') && !i.bare && !under(i.to, 'src') && !under(i.to, 'emulator'));
    expect(wrong).toEqual([]);
  });

  it("keeps the CLI's shared pieces free of commands, and each command free of the others", () => {
    const cli = imports.filter((i) => under(i.from, 'cli') && under(i.to, 'cli'));
    const libraries = ['cli/shared', 'cli/service'];
    const wrong = cli.filter((i) => {
      if (i.from === 'cli/main.ts' || i.from === 'cli/bin.ts') return false; // the command table
      if (under(i.from, 'cli/shared')) return !under(i.to, 'cli/shared');
      if (under(i.from, 'cli/service')) return !under(i.to, 'cli/service') && !under(i.to, 'cli/shared');
      return cliUnit(i.to) !== cliUnit(i.from) && !libraries.some((lib) => under(i.to, lib));
    });
    expect(wrong).toEqual([]);
  });

  it('has no import circle anywhere', () => {
    const edges = new Map<string, string[]>();
    for (const i of imports.filter((i) => !i.bare)) edges.set(i.from, [...(edges.get(i.from) ?? []), i.to]);
    const state = new Map<string, 'open' | 'done'>();
    const circles: string[] = [];
    const visit = (file: string, path: string[]): void => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        circles.push([...path.slice(path.indexOf(file)), file].join(' → '));
        return;
      }
      state.set(file, 'open');
      for (const next of edges.get(file) ?? []) visit(next, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of all) visit(file, []);
    expect(circles).toEqual([]);
  });
});
