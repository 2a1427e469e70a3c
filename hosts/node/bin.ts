#!/usr/bin/env node
// The `moddable-dps` executable: runs the CLI with the process's arguments and streams.
import { main } from './cli.js';

const code = await main(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
});
process.exitCode = code;
