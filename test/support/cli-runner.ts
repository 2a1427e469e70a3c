// The CLI in-process, as a user runs it: main(argv, io) with the output captured.
import { main } from '../../cli/main.js';
import type { CliIo } from '../../cli/shared/io.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `extra` adds to the io what a command reads beyond CliIo (fleet's stderrIsTTY and columns). */
export async function runCli(args: string[], env: Record<string, string | undefined> = {}, extra: object = {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = { ...extra, env, stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) };
  const code = await main(args, io);
  return { code, stdout, stderr };
}
