// The emulator command in-process, as the emulator tests start it: every port ephemeral, the
// output captured, stopped as SIGINT stops it.
import { emulatorCommand } from '../../cli/emulator.js';
import type { DpsEmulator } from '../../emulator/index.js';
import { captureIo } from './cli-runner.js';

/** Every port the emulator command listens on, picked by the system. */
export const EPHEMERAL_PORTS = ['--port', '0', '--service-port', '0', '--hub-port', '0', '--https-port', '0', '--console-port', '0'];

/** Start `moddable-dps emulator <args>` in-process; resolves once the banner is out (rejects when it exits first). */
export async function startEmulatorCommand(args: string[]) {
  const io = captureIo();
  const abort = new AbortController();
  let ready!: (dps: DpsEmulator) => void;
  const started = new Promise<DpsEmulator>((resolve) => (ready = resolve));
  const exited = emulatorCommand(args, io, { signal: abort.signal, onReady: ready });
  const dps = await Promise.race([started, exited.then((code) => Promise.reject(new Error(`exited ${code}: ${io.err()}`)))]);
  return { dps, io, stop: () => (abort.abort(), exited) };
}
