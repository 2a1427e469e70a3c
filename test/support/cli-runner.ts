// The CLI in-process, as a user runs it: main(argv, io) with the output captured.
import { main } from '../../cli/main.js';
import type { CliIo } from '../../cli/shared/io.js';
import type { DpsEmulator } from '../../emulator/index.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** An io that keeps what a command writes; `extra` adds what a command reads beyond CliIo (fleet's stderrIsTTY and columns). */
export function captureIo(env: Record<string, string | undefined> = {}, extra: object = {}): CliIo & { out(): string; err(): string } {
  let stdout = '';
  let stderr = '';
  return { ...extra, env, stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), out: () => stdout, err: () => stderr };
}

export async function runCli(args: string[], env: Record<string, string | undefined> = {}, extra: object = {}): Promise<CliRun> {
  const io = captureIo(env, extra);
  const code = await main(args, io);
  return { code, stdout: io.out(), stderr: io.err() };
}

/** `moddable-dps register` against the emulator for a group member (its key derived from `groupKey`), trusting its CA; `extra` adds flags. */
export function registerWithCli(
  dps: Pick<DpsEmulator, 'endpoint' | 'caPath'>,
  idScope: string,
  registrationId: string,
  groupKey: string,
  ...extra: string[]
): Promise<CliRun> {
  return runCli([
    'register',
    '--id-scope',
    idScope,
    '--endpoint',
    `127.0.0.1:${dps.endpoint.port}`,
    '--ca',
    dps.caPath,
    '--registration-id',
    registrationId,
    '--group-key',
    groupKey,
    ...extra,
  ]);
}
