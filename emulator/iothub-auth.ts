// Who is connecting to an emulated IoT hub: the CONNECT check of the hub endpoint. IoT Hub's MQTT
// rules for a device with a symmetric key (MicrosoftDocs/azure-docs, iot-mqtt-connect-to-iot-hub.md):
//   client id  = the device ID
//   username   = '<hub host>/<deviceId>/?api-version=...' (IoT Hub ignores other parameters, such
//                as '&model-id=<DTMI>' and the Node SDK's '&DeviceClientType=...'; the Node SDK
//                also leaves out the '?': '<hub>/<deviceId>/api-version=...')
//   password   = 'SharedAccessSignature sr=<url-encoded hub/devices/deviceId>&sig=..&se=..' (no
//                skn), signed with the device's primary or secondary key (those DPS attested),
//                not expired and not expiring more than ten years ahead (auth.ts).
// An X.509 device (a TLS client certificate and no password) authenticates as its identity says:
// selfSigned, the certificate's thumbprint is the identity's primary or secondary; certificateAuthority,
// the certificate names the device ID as CN and chains to a CA the hub trusts (here: the CAs of the
// emulator's X.509 enrollment groups, the hub's CA certificates in IoT Hub). Either must be valid now.
// The device must exist in the hub's registry and be enabled.
import { verifySasToken } from '../src/sas-verify.js';
import { groupIssued, MAX_TOKEN_LIFETIME_SECONDS, nodeHmacSha256 } from './auth.js';
import type { DpsModel } from './model.js';
import type { HubDevice } from './model-types.js';
import { type CertificateFailure, hasThumbprint, namesId, type PeerCertificates, validity } from './x509.js';

export type HubAuthFailure =
  | 'username'
  | 'client-id'
  | 'no-device'
  | 'disabled'
  | 'token-malformed'
  | 'token-resource'
  | 'token-signature'
  | 'token-expired'
  | 'token-lifetime'
  /** The TLS server name (SNI) names another emulated hub than the username (iothub-sni.ts). */
  | 'sni'
  /** Neither a SAS token nor a client certificate, or not the kind the identity takes. */
  | 'no-credentials'
  | CertificateFailure;

export interface HubConnection {
  /** The hub's host name as the registry spells it. */
  hub: string;
  deviceId: string;
  /** The IoT Plug and Play model ID the device announced (`model-id`, or the Node SDK's `modelId`). */
  modelId?: string;
}

export type HubAuthResult = { ok: true; connection: HubConnection } | { ok: false; reason: HubAuthFailure; hub?: string };

const USERNAME = /^([A-Za-z0-9.-]{1,253})\/([A-Za-z0-9\-.%_*?!(),:=@$'+#]{1,128})\/\??(.*)$/;

/** Parse the username; undefined when it is not '<hub>/<deviceId>/[?]<parameters>'. */
export function parseHubUsername(username: string): HubConnection | undefined {
  const match = USERNAME.exec(username);
  if (!match) return undefined;
  const connection: HubConnection = { hub: match[1]!.toLowerCase(), deviceId: match[2]! };
  for (const part of match[3]!.split('&')) {
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    if (name !== 'model-id' && name !== 'modelId') continue;
    try {
      connection.modelId = decodeURIComponent(part.slice(eq + 1));
    } catch {
      return undefined;
    }
  }
  return connection;
}

export function authenticateHubDevice(
  model: DpsModel,
  clientId: string,
  username: string | undefined,
  password: string | undefined,
  nowSeconds: number,
  peer?: PeerCertificates,
): HubAuthResult {
  const parsed = username === undefined ? undefined : parseHubUsername(username);
  if (!parsed) return { ok: false, reason: 'username' };
  const hub = parsed.hub;
  if (clientId !== parsed.deviceId) return { ok: false, reason: 'client-id', hub };
  const device = model.hubDevice(hub, parsed.deviceId);
  if (!device) return { ok: false, reason: 'no-device', hub };
  if (device.status === 'disabled') return { ok: false, reason: 'disabled', hub };
  if ((password ?? '') === '' && peer) {
    const why = certificateFailure(model, device, peer, nowSeconds * 1000);
    return why ? { ok: false, reason: why, hub } : { ok: true, connection: parsed };
  }
  if (device.authentication.type !== 'sas') return { ok: false, reason: 'no-credentials', hub };
  const resource = `${hub}/devices/${parsed.deviceId}`;
  const rank: Record<string, number> = {
    'token-malformed': 0,
    'token-resource': 1,
    'token-signature': 2,
    'token-expired': 3,
    'token-lifetime': 3,
  };
  let worst: HubAuthFailure = 'token-malformed';
  const { primaryKey, secondaryKey } = device.authentication.symmetricKey;
  for (const key of [primaryKey, secondaryKey]) {
    const result = verifySasToken(password ?? '', key, nowSeconds, resource, nodeHmacSha256);
    let reason: HubAuthFailure;
    if (!result.ok) reason = `token-${result.reason}`;
    else if (result.token.se - nowSeconds > MAX_TOKEN_LIFETIME_SECONDS) reason = 'token-lifetime';
    else return { ok: true, connection: parsed };
    if (rank[reason]! > rank[worst]!) worst = reason;
  }
  return { ok: false, reason: worst, hub };
}

/** Why the identity does not accept this certificate, or undefined when it does. */
function certificateFailure(model: DpsModel, device: HubDevice, peer: PeerCertificates, nowMs: number): HubAuthFailure | undefined {
  const auth = device.authentication;
  if (auth.type === 'sas') return 'no-credentials';
  const invalid = validity(peer.leaf, nowMs);
  if (invalid) return invalid;
  if (auth.type === 'selfSigned') {
    const { primaryThumbprint, secondaryThumbprint } = auth.x509Thumbprint;
    return hasThumbprint(peer.leaf, primaryThumbprint) || hasThumbprint(peer.leaf, secondaryThumbprint) ? undefined : 'cert-unknown';
  }
  if (!namesId(peer.leaf, device.deviceId)) return 'cert-cn-mismatch';
  return [...model.readEnrollmentGroups()].some((group) => groupIssued(model, group, peer, nowMs)) ? undefined : 'cert-untrusted-ca';
}
