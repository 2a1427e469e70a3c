// The device events of the emulator as one line of text each: what the emulator command logs and
// the web console's Live page lists. No event carries a key or a token; what a device sent
// (client and registration IDs) and what a custom allocation webhook answered are escaped and
// clipped, so a line never carries a control character.
import { printable } from '../src/text.js';
import type { AuthFailure } from './auth.js';
import type { EndpointEvent } from './device-endpoint.js';
import type { RegistrationOutcome } from './event-log.js';
import type { HubAuthFailure } from './iothub-auth.js';
import type { CertificateFailure } from './x509.js';

/** Why a client certificate was refused (X.509 attestation), at DPS and at a hub alike. */
const CERTIFICATE_REFUSALS: Record<CertificateFailure, string> = {
  'cert-cn-mismatch': "the certificate's common name is not the registration (device) ID",
  'cert-expired': 'the certificate has expired (check the device clock)',
  'cert-not-yet-valid': 'the certificate is not valid yet (check the device clock)',
  'cert-unknown': 'the certificate is not one the enrollment (identity) names',
  'cert-untrusted-ca': 'no enrollment group trusts a CA that issued the certificate',
  'cert-ca-not-verified': 'the CA that issued the certificate is not verified (proof of possession)',
};

/** Why the DPS device endpoint refused a device (CONNACK 5). */
const REFUSALS: Record<AuthFailure | 'fault', string> = {
  ...CERTIFICATE_REFUSALS,
  'no-credentials': 'neither a SAS token nor a client certificate, or not the kind its enrollment takes',
  username: 'the MQTT username is not <idScope>/registrations/<registrationId>/api-version=...',
  'id-scope': 'wrong ID scope',
  'client-id': 'the MQTT client ID differs from the registration ID',
  'registration-id': 'not a valid registration ID',
  'no-enrollment': 'no enrollment matches (no individual enrollment and no enrollment group)',
  'token-malformed': 'the SAS token is malformed',
  'token-resource': 'the SAS token is for another resource (sr)',
  'token-signature': 'the SAS signature does not match any enrollment key (wrong key, or a group key used as the device key?)',
  'token-expired': 'the SAS token has expired (check the device clock)',
  'token-lifetime': 'the SAS token expires more than ten years from now (check the device clock, and that the expiry is in seconds)',
  fault: 'refused by an injected fault',
};

/** Why the IoT hub endpoint refused a device (CONNACK 5). */
const HUB_REFUSALS: Record<HubAuthFailure, string> = {
  ...CERTIFICATE_REFUSALS,
  'no-credentials': 'neither a SAS token nor a client certificate, or not the kind the identity takes',
  sni: 'the TLS server name (SNI) names another hub than the username',
  username: 'the username is not <hub>/<deviceId>/?api-version=...',
  'client-id': 'the client ID is not the device ID',
  'no-device': 'no such device in that hub',
  disabled: 'the device is disabled in that hub',
  'token-malformed': 'the SAS token is malformed',
  'token-resource': 'the SAS token is for another resource',
  'token-signature': "the SAS token is not signed with the device's key",
  'token-expired': 'the SAS token has expired',
  'token-lifetime': 'the SAS token is valid for more than ten years (an expiry in milliseconds?)',
};

/**
 * One line for a device event; undefined for the noise (polls still assigning, and the closing
 * of a connection whose refusal has its own line). `outcome` is what the registration record said
 * when the request was answered (registrationOutcome, event-log.ts).
 */
export function describeEvent(event: EndpointEvent, outcome: RegistrationOutcome | undefined): string | undefined {
  switch (event.type) {
    case 'refused':
      return `refused    ${shown(event.clientId)}: ${REFUSALS[event.reason] ?? event.reason} (CONNACK 5)`;
    case 'connected':
      return `connected  ${shown(event.registrationId)}`;
    case 'fault':
      return `fault      ${shown(event.registrationId)}: ${event.action} on ${event.on}`;
    case 'closed-client':
      if (event.reason === 'not authorized') return undefined; // the refusal has its line
      return `closed     ${shown(event.clientId) || '(before CONNECT)'}: ${shown(event.reason)}`;
    case 'request': {
      const id = event.registrationId;
      if (event.request === 'register') {
        if (event.status !== 202) return `register   ${shown(id)}: answered ${event.status}`;
        const group = outcome?.enrollmentGroupId;
        return `registering ${shown(id)} (${group !== undefined ? `enrollment group ${shown(group)}` : 'individual enrollment'})`;
      }
      if (event.status === 202) return undefined;
      if (event.status !== 200 || !outcome) return `poll       ${shown(id)}: answered ${event.status}`;
      if (outcome.status === 'assigned') {
        return `assigned   ${shown(id)} → ${shown(outcome.assignedHub ?? '')} as device ${shown(outcome.deviceId ?? '')} (${shown(outcome.substatus ?? '')})`;
      }
      if (outcome.status === 'disabled') return `disabled   ${shown(id)}: its enrollment is disabled`;
      return `${outcome.status.padEnd(10)} ${shown(id)}: ${outcome.errorCode ?? ''} ${shown(outcome.errorMessage ?? '')}`.trimEnd();
    }
    case 'hub-refused':
      return `hub refused ${shown(event.clientId)}${event.hub ? ` at ${shown(event.hub)}` : ''}: ${HUB_REFUSALS[event.reason] ?? event.reason} (CONNACK 5)`;
    case 'hub-connected':
      return `online     ${shown(event.deviceId)} at ${shown(event.hub)}${event.modelId ? ` (model ${shown(event.modelId)})` : ''}`;
    case 'hub-disconnected':
      return `offline    ${shown(event.deviceId)} at ${shown(event.hub)}`;
    case 'hub-topic-refused':
      return `hub refused ${shown(event.deviceId)}'s ${event.action} on ${shown(event.topic)} (not its own topic)`;
    case 'hub-twin':
      return event.request === 'reported'
        ? `twin       ${shown(event.deviceId)} reported${event.version !== undefined ? ` → version ${event.version}` : ''} (${event.status})`
        : `twin       ${shown(event.deviceId)} desired${event.version !== undefined ? ` → version ${event.version}` : ''}`;
    case 'hub-telemetry':
      return `telemetry  ${shown(event.deviceId)} at ${shown(event.hub)}: ${event.bytes} bytes`;
    case 'hub-method':
      return `method     ${shown(event.method)} on ${shown(event.deviceId)}: ${event.status}`;
  }
}

/** Text from a device or a webhook: at most 160 characters, control characters escaped. */
function shown(text: string): string {
  return printable(text.slice(0, 160));
}
