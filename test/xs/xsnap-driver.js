// Drives one xsnap (XS engine) worker for the XS-engine tests and the footprint bench.
// Runs in its own Node process because @agoric/xsnap's Node API needs SES (`harden`, `assert`):
// `@endo/init` locks down this process, never the vitest worker or the bench.
//
// Job on stdin (JSON):
//   { name, lockdown: boolean, scripts: string[], commands: string[], meteringLimit?: number }
// `lockdown` evaluates @agoric/xsnap-lockdown's SES bundle in the worker first. Each script is
// evaluated in order, then each command is delivered to the worker's global `handleCommand`.
// Result on stdout (JSON):
//   { scripts: [{ meterUsage }], commands: [{ reply, meterUsage }], messages: [{ during, value }],
//     stdout, stderr, error? }
// `messages` are what the XS side sent with `issueCommand` (JSON text), tagged with the step
// ('script 0', 'command 1', ...) during which they arrived.
import '@endo/init';
import { spawn } from 'node:child_process';
import os from 'node:os';
import { xsnap } from '@agoric/xsnap';
import { getLockdownBundle } from '@agoric/xsnap-lockdown';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function main() {
  const job = await readStdin();
  const messages = [];
  let during = 'start';
  // The worker's own stdout/stderr (XS `print`, fatal messages) are kept for diagnostics:
  // xsnap keeps the child process to itself, so wrap spawn to read them.
  let stdout = '';
  let stderr = '';
  const spawnAndListen = (...args) => {
    const child = spawn(...args);
    child.stdout?.on('data', (chunk) => (stdout += chunk));
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    return child;
  };
  const worker = await xsnap({
    os: os.type(),
    spawn: spawnAndListen,
    fs: /** @type {any} */ ({}),
    name: job.name ?? 'xs-engine',
    stdout: 'pipe',
    stderr: 'pipe',
    // Computrons per delivery before xsnap aborts it ("too much computation"): a runaway loop
    // ends instead of hanging the test. The whole flow scenario takes ~15 million.
    meteringLimit: job.meteringLimit ?? 1e9,
    handleCommand: async (bytes) => {
      const text = decoder.decode(bytes);
      let value;
      try {
        value = JSON.parse(text);
      } catch {
        value = { unparsable: text };
      }
      messages.push({ during, value });
      return encoder.encode('{}');
    },
  });
  const out = { scripts: [], commands: [], messages, stdout: '', stderr: '' };
  try {
    const scripts = [...job.scripts];
    if (job.lockdown) {
      const bundle = await getLockdownBundle();
      scripts.unshift(`(${bundle.source}\n)()`.trim());
    }
    for (let i = 0; i < scripts.length; i++) {
      during = job.lockdown ? (i === 0 ? 'lockdown' : `script ${i - 1}`) : `script ${i}`;
      const { meterUsage } = await worker.evaluate(scripts[i]);
      if (!(job.lockdown && i === 0)) out.scripts.push({ meterUsage });
      else out.lockdown = { meterUsage };
    }
    for (let i = 0; i < (job.commands ?? []).length; i++) {
      during = `command ${i}`;
      const { reply, meterUsage } = await worker.issueStringCommand(job.commands[i]);
      out.commands.push({ reply, meterUsage });
    }
  } catch (error) {
    out.error = error instanceof Error ? error.message : String(error);
  } finally {
    await worker.close().catch(() => {});
  }
  out.stdout = stdout;
  out.stderr = stderr;
  return out;
}

main().then(
  (out) => {
    process.stdout.write(JSON.stringify(out));
  },
  (error) => {
    process.stdout.write(JSON.stringify({ error: String(error?.stack ? error.stack : error) }));
    process.exitCode = 1;
  },
);
