#!/usr/bin/env node
// The `moddable-dps` executable: runs the CLI with the process's arguments and streams.
import { main } from './main.js';

const code = await main(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
});
process.exitCode = code;
// Exit once the output is flushed, without waiting for the event loop to drain: a TLS handshake
// the flow gave up on at its deadline (a silent server) would otherwise hold the process until
// the connection's own timeout (30 s), long after --timeout.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
