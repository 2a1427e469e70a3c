// `moddable-dps`: the command table. Each command is a function of (argv, io) that returns the
// exit status, so tests run it in-process; bin.ts is the thin process wrapper. The commands that
// bring the emulator or the service client are loaded only when they run (start-up time).
import { computeDeviceKey, sasToken } from './keys.js';
import { register } from './register.js';
import { type CliIo, type Command, EXIT_CODES, reportError } from './shared/io.js';
import { escapedOutput } from './shared/output.js';

const USAGE = `Usage: moddable-dps <command> [options]

Commands:
  register             provision a device with DPS (or the local emulator) and store the result
  device               provision, connect to the assigned IoT hub, send telemetry, answer methods
  compute-device-key   derive a device key from an enrollment group key
  factory              derive each device's key and write its NVS partition (no group key on any device)
  sas-token            print a DPS registration SAS token
  dps                  manage DPS: show/update, linked-hub, enrollment(-group), registrations (as az iot dps)
  hub                  the emulator's IoT hubs (as az iot hub): device-identity, device-twin, invoke-device-method,
                       c2d-message send, monitor-events, policy renew-key, connection-string show
  emulator             run a local DPS (device endpoint, service API) for development and CI;
                       'emulator export' writes its state as a config file
  fleet                provision many virtual devices at once (a load test)

Run 'moddable-dps <command> --help' for a command's options.
`;

const COMMANDS: Record<string, Command> = {
  register,
  'compute-device-key': computeDeviceKey,
  'sas-token': sasToken,
  // Loaded when used: the emulator and the management client are most of the CLI's start-up time.
  // What the service API sends (names, tags, twins) is printed escaped, as DPS's answers are.
  dps: async (argv, io) => (await import('./dps/command.js')).dpsCommand(argv, escapedOutput(io)),
  hub: async (argv, io) => (await import('./hub/command.js')).hubCommand(argv, escapedOutput(io)),
  emulator: async (argv, io) =>
    argv[0] === 'export'
      ? (await import('./emulator-export.js')).emulatorExport(argv.slice(1), io)
      : (await import('./emulator.js')).emulatorCommand(argv, io),
  fleet: async (argv, io) => (await import('./fleet/command.js')).fleet(argv, io),
  device: async (argv, io) => (await import('./device.js')).device(argv, io),
  factory: async (argv, io) => (await import('./factory.js')).factory(argv, io),
};

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(USAGE);
    return name === undefined ? EXIT_CODES['invalid-input'] : 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined; // not 'toString'
  if (!command) {
    // Named only when it can be a command name: a key pasted in its place must not be printed.
    const shown = /^[a-z][a-z0-9-]{0,31}$/.test(name) ? ` '${name}'` : '';
    io.stderr(`moddable-dps: unknown command${shown}\n${USAGE}`);
    return EXIT_CODES['invalid-input'];
  }
  try {
    return await command(rest, io);
  } catch (error) {
    return reportError(error, io);
  }
}
