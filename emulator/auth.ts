// Who is connecting: the device endpoint's CONNECT check (and, through authenticateRegistration,
// each request of the HTTPS device API, device-https.ts). DPS symmetric-key attestation:
//   client id  = the registration ID
//   username   = '<idScope>/registrations/<registrationId>/api-version=...[&ClientVersion=...]'
//   password   = a SAS token for resource '<idScope>/registrations/<registrationId>', signed with
//                the individual enrollment's primary or secondary key, or with the key derived
//                from an enrollment group's primary or secondary key; not expired, and not
//                expiring more than ten years from now (MAX_TOKEN_LIFETIME_SECONDS).
// X.509 attestation (a TLS client certificate and no password): the certificate's CN is the
// registration ID; an individual enrollment's certificate matches by thumbprint, a group's chain
// reaches its signing certificate or a verified CA it references (x509.ts).
// An individual enrollment for the registration ID takes precedence over every group, as in DPS.
import { createHmac, createSecretKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { parseDpsUsername } from '../src/dps/server.js';
import { verifySasToken } from '../src/sas-verify.js';
import type { DpsModel } from './model.js';
import type { EnrollmentGroup, EnrollmentRef, HubDevice, X509Attestation } from './model-types.js';
import { type CertificateFailure, chainsTo, hasThumbprint, namesId, type PeerCertificates, trustedCertificate, validity } from './x509.js';

/**
 * The longest a device SAS token may still be valid. DPS documents no maximum; the one figure on
 * record is Microsoft's for IoT Hub SAS tokens: "the standardized maximum lifetime currently
 * supported is ten years" (ewertons, Azure/azure-iot-sdk-c#714, 2018-11-19,
 * https://github.com/Azure/azure-iot-sdk-c/issues/714). The emulator applies it to DPS's device
 * tokens: one whose expiry lies further ahead (a clock far ahead, an expiry written in milliseconds)
 * is refused like a bad one (CONNACK 5). Ten years is counted as 3653 days (with the leap days)
 * from the emulator's clock; a token the device makes lives an hour by default, a day at most.
 */
export const MAX_TOKEN_LIFETIME_SECONDS = 3653 * 86_400;

export interface DeviceAttestation {
  /** As the device sent it (DPS IDs are case-insensitive; keys derive from the exact bytes). */
  registrationId: string;
  enrollment: EnrollmentRef;
  /**
   * How the identity DPS creates in the hub authenticates: the enrollment's keys or those derived
   * from the group's (sas); an individual X.509 enrollment's thumbprints (selfSigned); a group's
   * CA (certificateAuthority).
   */
  authentication: HubDevice['authentication'];
}

/** Why a CONNECT was refused; for the emulator's log, never sent to the device (CONNACK 5 says only "not authorized"). */
export type AuthFailure =
  | 'username'
  | 'id-scope'
  | 'client-id'
  | 'registration-id'
  | 'no-enrollment'
  | 'token-malformed'
  | 'token-resource'
  | 'token-signature'
  | 'token-expired'
  | 'token-lifetime'
  /** No SAS token and no client certificate, or a certificate for an enrollment that takes keys. */
  | 'no-credentials'
  | CertificateFailure;

export type AuthResult = { ok: true; attestation: DeviceAttestation } | { ok: false; reason: AuthFailure };

export function authenticateDevice(
  model: DpsModel,
  idScope: string,
  clientId: string,
  username: string | undefined,
  password: string | undefined,
  nowSeconds: number,
  peer?: PeerCertificates,
): AuthResult {
  const parsed = username === undefined ? undefined : safe(() => parseDpsUsername(username));
  if (!parsed) return { ok: false, reason: 'username' };
  if (parsed.idScope.toLowerCase() !== idScope.toLowerCase()) return { ok: false, reason: 'id-scope' };
  if (parsed.registrationId.toLowerCase() !== clientId.toLowerCase()) return { ok: false, reason: 'client-id' };
  return authenticateRegistration(model, idScope, parsed, password ?? '', nowSeconds, peer);
}

/**
 * The check both device APIs share (MQTT: the username and password of CONNECT; HTTPS: the path's
 * ID scope and registration ID and the Authorization header): a SAS token for
 * '<idScope>/registrations/<registrationId>' as the device sent them, signed with a key of the
 * enrollment that covers the registration ID.
 */
export function authenticateRegistration(
  model: DpsModel,
  idScope: string,
  requested: { idScope: string; registrationId: string },
  token: string,
  nowSeconds: number,
  peer?: PeerCertificates,
): AuthResult {
  if (requested.idScope.toLowerCase() !== idScope.toLowerCase()) return { ok: false, reason: 'id-scope' };
  const registrationId = requested.registrationId;
  if (!/^[A-Za-z0-9\-._:]{1,128}$/.test(registrationId) || !/[A-Za-z0-9-]$/.test(registrationId)) {
    return { ok: false, reason: 'registration-id' };
  }
  const resource = `${requested.idScope}/registrations/${registrationId}`;
  if (token === '' && peer) return authenticateCertificate(model, registrationId, peer, nowSeconds * 1000);

  const individual = model.readIndividualEnrollment(registrationId);
  const candidates: Array<{ enrollment: EnrollmentRef; keys: { primaryKey: string; secondaryKey: string } }> = [];
  if (individual) {
    if (individual.attestation.type !== 'symmetricKey') return { ok: false, reason: 'no-credentials' };
    candidates.push({
      enrollment: { kind: 'individual', registrationId: individual.registrationId },
      keys: individual.attestation.symmetricKey,
    });
  } else {
    for (const group of model.readEnrollmentGroups()) {
      if (group.attestation.type !== 'symmetricKey') continue;
      const { primaryKey, secondaryKey } = group.attestation.symmetricKey;
      candidates.push({
        enrollment: { kind: 'group', enrollmentGroupId: group.enrollmentGroupId },
        keys: { primaryKey: deviceKey(primaryKey, registrationId), secondaryKey: deviceKey(secondaryKey, registrationId) },
      });
    }
  }
  if (candidates.length === 0) return { ok: false, reason: 'no-enrollment' };

  // The most telling reason across all candidates: a token that verifies but has expired (or
  // lives too long) beats a wrong signature, which beats a wrong resource or a malformed token.
  const rank: Record<AuthFailure, number> = {
    'token-lifetime': 4,
    'token-expired': 4,
    'token-signature': 3,
    'token-resource': 2,
    'token-malformed': 1,
    username: 0,
    'no-credentials': 0,
    'cert-cn-mismatch': 0,
    'cert-expired': 0,
    'cert-not-yet-valid': 0,
    'cert-unknown': 0,
    'cert-untrusted-ca': 0,
    'cert-ca-not-verified': 0,
    'id-scope': 0,
    'client-id': 0,
    'registration-id': 0,
    'no-enrollment': 0,
  };
  let worst: AuthFailure = 'token-malformed';
  for (const candidate of candidates) {
    for (const key of [candidate.keys.primaryKey, candidate.keys.secondaryKey]) {
      const result = verifySasToken(token, key, nowSeconds, resource, nodeHmacSha256);
      if (result.ok && result.token.se - nowSeconds > MAX_TOKEN_LIFETIME_SECONDS) {
        worst = 'token-lifetime';
        continue;
      }
      if (result.ok) {
        return {
          ok: true,
          attestation: { registrationId, enrollment: candidate.enrollment, authentication: { type: 'sas', symmetricKey: candidate.keys } },
        };
      }
      const reason: AuthFailure = `token-${result.reason}`;
      if (rank[reason] > rank[worst]) worst = reason;
    }
  }
  return { ok: false, reason: worst };
}

/**
 * X.509 attestation: the device certificate's CN is the registration ID and it is valid now; an
 * individual enrollment for the ID must hold its thumbprint, otherwise an X.509 group's signing
 * certificate (or a verified CA it references) must issue it, through the chain the device sent.
 * Of several groups, the first whose CA issued the certificate; the most telling refusal otherwise.
 */
function authenticateCertificate(model: DpsModel, registrationId: string, peer: PeerCertificates, nowMs: number): AuthResult {
  if (!namesId(peer.leaf, registrationId)) return { ok: false, reason: 'cert-cn-mismatch' };
  const invalid = validity(peer.leaf, nowMs);
  if (invalid) return { ok: false, reason: invalid };
  const individual = model.readIndividualEnrollment(registrationId);
  if (individual) {
    if (individual.attestation.type !== 'x509') return { ok: false, reason: 'no-credentials' };
    const enrolled = individual.attestation.x509.clientCertificates;
    const matches = [enrolled?.primary, enrolled?.secondary].some((c) => hasThumbprint(peer.leaf, c?.info?.sha256Thumbprint));
    if (!matches) return { ok: false, reason: 'cert-unknown' };
    const thumbprints = {
      primaryThumbprint: enrolled!.primary.info!.sha256Thumbprint,
      ...(enrolled?.secondary?.info && { secondaryThumbprint: enrolled.secondary.info.sha256Thumbprint }),
    };
    return {
      ok: true,
      attestation: {
        registrationId,
        enrollment: { kind: 'individual', registrationId: individual.registrationId },
        authentication: { type: 'selfSigned', x509Thumbprint: thumbprints },
      },
    };
  }
  let worst: AuthFailure = 'cert-untrusted-ca';
  for (const group of model.readEnrollmentGroups()) {
    if (group.attestation.type !== 'x509') continue;
    const { anchors, unverified } = signingCertificates(model, group.attestation);
    const why = chainsTo(peer, anchors, nowMs);
    if (why === undefined) {
      return {
        ok: true,
        attestation: {
          registrationId,
          enrollment: { kind: 'group', enrollmentGroupId: group.enrollmentGroupId },
          authentication: { type: 'certificateAuthority' },
        },
      };
    }
    if (why !== 'cert-untrusted-ca') worst = why;
    else if (worst === 'cert-untrusted-ca' && unverified.length > 0 && chainsTo(peer, unverified, nowMs) === undefined) {
      worst = 'cert-ca-not-verified';
    }
  }
  return { ok: false, reason: worst };
}

/** The CAs an X.509 group trusts: its signing certificates, or the verified certificates it references (and those not verified). */
export function signingCertificates(
  model: DpsModel,
  attestation: X509Attestation,
): { anchors: X509Certificate[]; unverified: X509Certificate[] } {
  const anchors: X509Certificate[] = [];
  const unverified: X509Certificate[] = [];
  const { signingCertificates: signing, caReferences } = attestation.x509;
  for (const c of [signing?.primary, signing?.secondary]) if (c?.certificate) anchors.push(trustedCertificate(c.certificate, 'signing'));
  for (const name of [caReferences?.primary, caReferences?.secondary]) {
    const stored = name === undefined ? undefined : model.certificates.get(name);
    if (stored) (stored.isVerified ? anchors : unverified).push(trustedCertificate(stored.certificate, stored.name));
  }
  return { anchors, unverified };
}

/** An X.509 group, and which of its CAs issued this device certificate: for the hub's certificateAuthority check. */
export function groupIssued(model: DpsModel, group: Readonly<EnrollmentGroup>, peer: PeerCertificates, nowMs: number): boolean {
  return group.attestation.type === 'x509' && chainsTo(peer, signingCertificates(model, group.attestation).anchors, nowMs) === undefined;
}

/**
 * The group-derived device key: base64(HMAC-SHA256(base64-decode(groupKey), UTF-8(registrationId))),
 * from the bytes the device sent (DPS allows capitals in an ID). node:crypto, not the core's
 * pure-JavaScript deriveDeviceKey (the same bytes for a lower-case ID): a few microseconds instead
 * of ~15 per key, and the CONNECT check derives two per group.
 */
export function deviceKey(groupKey: string, registrationId: string): string {
  let key = groupKeys.get(groupKey);
  if (!key) {
    if (groupKeys.size >= 64) groupKeys.clear();
    key = createSecretKey(Buffer.from(groupKey, 'base64'));
    groupKeys.set(groupKey, key);
  }
  return createHmac('sha256', key).update(registrationId, 'utf8').digest('base64');
}

/** The SAS check's HMAC with node:crypto: a few microseconds, not the core's ~15 (the hub's CONNECT check uses it too). */
export function nodeHmacSha256(key: Uint8Array, message: string): Uint8Array {
  return createHmac('sha256', key).update(message, 'utf8').digest();
}

/** The group keys decoded once (a handful: two per group), not per CONNECT. */
const groupKeys = new Map<string, KeyObject>();

function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}
