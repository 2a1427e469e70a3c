// What the `hub` commands share: the shape of a command (its usage, its own flags, what it does),
// the hub's path in the service API, and the JSON-valued flags. Imports no command.
import { ProvisioningError } from '../../src/errors.js';
import { type Flags, type Io, required, type Values } from '../service/flags.js';
import { jsonFlag } from '../shared/args.js';

/** The io of a hub command; `signal` (tests) stops `monitor-events` as Ctrl-C does. */
export interface HubIo extends Io {
  signal?: AbortSignal;
}

export interface HubCommand {
  /** Its usage and what it does, for `hub <command> --help` and `hub --help`. */
  usage: string;
  /** Its own flags; the common ones (--service, --ca, --timeout, --json) are added. Any other is refused. */
  flags: Flags;
  run(values: Values, io: HubIo): Promise<number>;
}

export const HUB_NAME: Flags = { 'hub-name': { type: 'string' } };
export const DEVICE_ID: Flags = { 'device-id': { type: 'string' } };

/** The hub's path in the emulator's service API: /hubs/{host}. */
export function hubBase(values: Values): string {
  return `/hubs/${encodeURIComponent(required(values, 'hub-name'))}`;
}

/** A JSON object flag, e.g. --desired '{"interval": 5}'. */
export function jsonObjectFlag(values: Values, flag: string): Record<string, unknown> | undefined {
  const value = jsonFlag(values[flag] as string | undefined, `--${flag}`);
  if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    throw new ProvisioningError('invalid-input', `--${flag} must be a JSON object, e.g. '{"interval": 5}'`);
  }
  return value as Record<string, unknown> | undefined;
}

/** A whole number of seconds within bounds. */
export function seconds(values: Values, flag: string, min: number, max: number, fallback: number): number {
  const text = values[flag];
  if (text === undefined) return fallback;
  if (typeof text !== 'string' || !/^\d{1,6}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new ProvisioningError('invalid-input', `--${flag} must be a whole number of seconds from ${min} to ${max}`);
  }
  return Number(text);
}
