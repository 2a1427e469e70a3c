// What a test expects to fail: the ProvisioningError it failed with, of the given kind if named.
import { expect } from 'vitest';
import { type ErrorKind, ProvisioningError } from '../../src/errors.js';

/** The ProvisioningError `fn` throws (of `kind`, when given); fails the test if it returns. */
export function errorOf(fn: () => unknown, kind?: ErrorKind): ProvisioningError {
  try {
    fn();
  } catch (error) {
    return checked(error, kind);
  }
  throw new Error(`expected a ${kind ?? ''} ProvisioningError, but it returned`.replace('  ', ' '));
}

/** The ProvisioningError `promise` rejects with (of `kind`, when given); fails the test if it resolves. */
export async function failure(promise: Promise<unknown>, kind?: ErrorKind): Promise<ProvisioningError> {
  try {
    await promise;
  } catch (error) {
    return checked(error, kind);
  }
  throw new Error(`expected a ${kind ?? ''} ProvisioningError, but it resolved`.replace('  ', ' '));
}

function checked(error: unknown, kind: ErrorKind | undefined): ProvisioningError {
  expect(error).toBeInstanceOf(ProvisioningError);
  if (kind !== undefined) expect((error as ProvisioningError).kind).toBe(kind);
  return error as ProvisioningError;
}
