// What every command shares: its io (so tests run commands in-process), the exit status of each
// kind of failure, and the one line that reports a failure. Imports no command.
import { type ErrorKind, isProvisioningError } from '../../src/errors.js';
import { printable } from '../../src/text.js';

/** A command is a function of (argv, io) that returns the exit status. */
export type Command = (argv: string[], io: CliIo) => Promise<number>;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
}

/** Exit status for each kind of failure, so scripts can tell them apart. */
export const EXIT_CODES: Record<ErrorKind | 'unexpected', number> = {
  'invalid-input': 2,
  unauthorized: 3,
  disabled: 4,
  failed: 5,
  throttled: 6,
  server: 7,
  network: 8,
  tls: 9,
  protocol: 10,
  timeout: 11,
  storage: 12,
  unexpected: 1,
};

/**
 * One clear line per failure; secrets never appear in ProvisioningError messages. Messages may
 * quote a server (DPS, the management API): control characters are shown escaped, never acted on.
 */
export function reportError(error: unknown, io: CliIo): number {
  if (isProvisioningError(error)) {
    const details = [
      error.errorCode !== undefined ? `errorCode ${error.errorCode}` : '',
      error.trackingId !== undefined ? `trackingId ${error.trackingId}` : '',
    ].filter(Boolean);
    io.stderr(`${printable(`error (${error.kind}): ${error.message}${details.length ? ` [${details.join(', ')}]` : ''}`)}\n`);
    return EXIT_CODES[error.kind];
  }
  const message = error instanceof Error ? error.message : String(error);
  io.stderr(`${printable(`error (unexpected): ${message}`)}\n`);
  return EXIT_CODES.unexpected;
}
