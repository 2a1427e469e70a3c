// What the benchmark processes share: the emulator's enrollment, and small statistics.

export const BENCH_ID_SCOPE = '0ne000BENCH';
export const BENCH_HUB = 'bench-hub.azure-devices.net';
/** The enrollment group's key (32 bytes of 7, base64). Not a secret: a local emulator's. */
export const BENCH_GROUP_KEY = Buffer.alloc(32, 7).toString('base64');

/** Where a client process finds the emulator. */
export interface Target {
  host: string;
  port: number;
  caPem: string;
  caPath: string;
}

export function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A registration ID no earlier run used (the emulator treats a repeated one as reprovisioning). */
export function uniquePrefix(tag: string): string {
  return `${tag}-${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}-`;
}
