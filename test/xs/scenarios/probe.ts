// What the core would see of the host from inside the sandbox: run on XS only (Node has all of these).
const NAMES = [
  'TextEncoder',
  'TextDecoder',
  'atob',
  'btoa',
  'Buffer',
  'setTimeout',
  'setInterval',
  'setImmediate',
  'queueMicrotask',
  'crypto',
  'console',
  'process',
  'require',
  'print',
  'trace',
  'harden',
  'lockdown',
  'Compartment',
  'Base64',
  'performance',
  'gc',
];

export function hostGlobals() {
  const g = globalThis as Record<string, unknown>;
  const seen: Record<string, string> = {};
  for (const name of NAMES) seen[name] = typeof g[name];
  return {
    seen,
    nativeBase64: typeof (Uint8Array.prototype as { toBase64?: unknown }).toBase64,
    frozenIntrinsics: Object.isFrozen(Array.prototype) && Object.isFrozen(Uint8Array.prototype) && Object.isFrozen(JSON),
  };
}
