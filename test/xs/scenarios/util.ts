// Helpers shared by the scenarios: everything a scenario returns must be plain JSON, identical
// on Node and XS when the core behaves the same.
import { isProvisioningError } from '../../../src/errors.js';

export { fromHex, hex } from '../../support/hex.js';

export interface ErrorShape {
  /** True when it is a ProvisioningError by instanceof (class identity survives bundling and the engine). */
  provisioning: boolean;
  name: string;
  kind?: string;
  message: string;
  errorCode?: number;
  status?: number;
  trackingId?: string;
}

export function errorShape(error: unknown): ErrorShape {
  if (!(error instanceof Error)) return { provisioning: false, name: typeof error, message: String(error) };
  const shape: ErrorShape = { provisioning: isProvisioningError(error), name: error.name, message: error.message };
  const e = error as Partial<Record<'kind' | 'errorCode' | 'status' | 'trackingId', unknown>>;
  if (typeof e.kind === 'string') shape.kind = e.kind;
  if (typeof e.errorCode === 'number') shape.errorCode = e.errorCode;
  if (typeof e.status === 'number') shape.status = e.status;
  if (typeof e.trackingId === 'string') shape.trackingId = e.trackingId;
  return shape;
}

export type Attempt<T> = { value: T } | { error: ErrorShape };

/** Run `fn`, capturing a throw as its error's shape. */
export function attempt<T>(fn: () => T): Attempt<T> {
  try {
    return { value: fn() };
  } catch (error) {
    return { error: errorShape(error) };
  }
}

export async function attemptAsync<T>(fn: () => Promise<T>): Promise<Attempt<T>> {
  try {
    return { value: await fn() };
  } catch (error) {
    return { error: errorShape(error) };
  }
}

/** A deterministic Random (a 32-bit LCG): jitter and request ids come out the same on every engine. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 0x100000000;
  };
}
