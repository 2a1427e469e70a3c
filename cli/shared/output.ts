// How the CLI prints provisioning: progress lines and the result. Whatever came from a server
// or a file is shown escaped (src/text.ts), never acted on by the terminal.
import type { HubEvent, ProvisioningEvent } from '../../src/ports.js';
import type { Assignment } from '../../src/provisioner.js';
import { printable } from '../../src/text.js';
import type { CliIo } from './io.js';

/**
 * An io whose stdout shows every line escaped: for commands that print what a service sent
 * (names, tags, twins, messages), line by line as the command wrote it. JSON stays JSON of the
 * same value (the escapes are JSON's own).
 */
export function escapedOutput(io: CliIo): CliIo {
  return { ...io, stdout: (text) => io.stdout(text.split('\n').map(printable).join('\n')) };
}

/**
 * What register prints on stdout. The core checked what DPS sent (a host name, a device ID), and
 * it is shown escaped all the same; JSON's own escapes leave DEL, C1 controls, bidi overrides and
 * U+2028 raw, so each line of the JSON is escaped too (it stays JSON of the same value).
 */
export function describeAssignment(assignment: Assignment, fromCache: boolean, json: boolean): string {
  if (json)
    return `${JSON.stringify({ ...assignment, fromCache }, null, 2)
      .split('\n')
      .map(printable)
      .join('\n')}\n`;
  return `assignedHub: ${printable(assignment.assignedHub)}\ndeviceId: ${printable(assignment.deviceId)}\n`;
}

/** A progress line for a person. Events carry no secrets by construction; what a server or a file said is shown escaped. */
export function describeEvent(event: ProvisioningEvent): string {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  switch (event.type) {
    case 'cached':
      return `using the stored assignment: ${printable(event.assignedHub)} as ${printable(event.deviceId)} (DPS not contacted; --force to provision again)`;
    case 'store-unreadable':
      return `warning: the stored assignment cannot be read, provisioning again: ${printable(event.message)}`;
    case 'store-failed':
      return `warning: could not store the assignment: ${printable(event.message)}`;
    case 'connecting':
      return `connecting to ${event.host}:${event.port}${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}`;
    case 'connected':
      return `connected to ${event.host}:${event.port}`;
    case 'registering':
      return `registering ${event.registrationId}`;
    case 'assigning':
      return `assigning — attempt ${event.attempt}, waiting ${seconds(event.waitMs)}`;
    case 'retrying':
      return `retrying: ${printable(event.reason)} — waiting ${seconds(event.waitMs)}`;
    case 'reconnecting':
      return `connection lost: ${printable(event.reason)} — reconnecting in ${seconds(event.waitMs)}`;
    case 'assigned':
      return `assigned hub ${printable(event.assignedHub)} (device ID ${printable(event.deviceId)})`;
    case 'stored':
      return `stored the assignment`;
  }
}

/** A progress line for the IoT Hub session; what the hub sent is shown escaped. */
export function describeHubEvent(event: HubEvent): string {
  switch (event.type) {
    case 'hub-connecting':
      return `connecting to the hub at ${event.host}:${event.port}${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}`;
    case 'hub-connected':
      return `connected to the hub at ${event.host}:${event.port}`;
    case 'hub-twin':
      return `twin received (desired version ${event.desiredVersion}, reported version ${event.reportedVersion})`;
    case 'hub-desired':
      return `desired properties version ${event.version} applied`;
    case 'hub-reported':
      return `reported properties now at version ${event.version}`;
    case 'hub-telemetry':
      return `telemetry sent (${event.bytes} bytes)`;
    case 'hub-method':
      return `direct method ${printable(event.name)} answered ${event.status}`;
    case 'hub-c2d':
      return `cloud-to-device message (${event.bytes} bytes)`;
    case 'hub-renewing':
      return `renewing the SAS token (it expires at ${new Date(event.expiresAt).toISOString()}): reconnecting`;
    case 'hub-disconnected':
      return `hub connection lost: ${printable(event.reason)} — reconnecting in ${(event.waitMs / 1000).toFixed(1)} s`;
    case 'hub-ignored':
      return `ignored from the hub: ${printable(event.reason)}`;
  }
}
