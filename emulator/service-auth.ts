// Who may manage the emulator: DPS's service SAS. The one shared access policy is
// `provisioningserviceowner` (DPS's default policy with every service right). A request carries
//   Authorization: SharedAccessSignature sr=<service host>&sig=<...>&se=<expiry>&skn=provisioningserviceowner
// signed with the policy's primary or secondary key over the URL-encoded host name, the token
// Microsoft's service SDK builds from the connection string (azure-iot-common
// SharedAccessSignature.create(HostName, SharedAccessKeyName, SharedAccessKey, expiry)). The
// emulated hubs' service API checks its tokens against the hub's policies the same way
// (verifyPolicyToken, used by iothub-service-auth.ts).
//
// The keys live in `service-policy.json` in the state directory (mode 0600), created once, so a
// connection string keeps working across restarts. A key given as an option is used instead
// (and not written).
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ParsedSasToken, verifySasToken } from '../src/sas-verify.js';
import { makeStateDirectory, stateFileError } from './state-dir.js';
import { generateKey, isBase64Key } from './validation.js';

export const SERVICE_KEY_NAME = 'provisioningserviceowner';
export const SERVICE_POLICY_FILE = 'service-policy.json';

export interface ServicePolicy {
  keyName: typeof SERVICE_KEY_NAME;
  primaryKey: string;
  secondaryKey: string;
}

export async function loadOrCreateServicePolicy(stateDir: string, primaryKey?: string): Promise<ServicePolicy> {
  if (primaryKey !== undefined) {
    if (!isBase64Key(primaryKey)) throw new TypeError('serviceKey must be a base64 key of 16 to 64 bytes');
    return { keyName: SERVICE_KEY_NAME, primaryKey, secondaryKey: generateKey() };
  }
  const path = join(stateDir, SERVICE_POLICY_FILE);
  try {
    const stored = JSON.parse(await readFile(path, 'utf8')) as Partial<ServicePolicy>;
    if (isBase64Key(stored.primaryKey ?? '') && isBase64Key(stored.secondaryKey ?? '')) {
      return { keyName: SERVICE_KEY_NAME, primaryKey: stored.primaryKey!, secondaryKey: stored.secondaryKey! };
    }
  } catch {
    // missing or damaged: create afresh
  }
  const policy: ServicePolicy = { keyName: SERVICE_KEY_NAME, primaryKey: generateKey(), secondaryKey: generateKey() };
  await makeStateDirectory(stateDir);
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, `${JSON.stringify(policy, null, 2)}\n`, { mode: 0o600 });
    await rename(temp, path);
  } catch (error) {
    throw stateFileError(path, error);
  }
  return policy;
}

/** A shared access policy: the name a token's skn gives, and the two keys that may sign it. */
export interface SharedAccessPolicy {
  keyName: string;
  primaryKey: string;
  secondaryKey: string;
}

export type PolicyTokenResult<P extends SharedAccessPolicy> =
  | { ok: true; policy: P; token: ParsedSasToken }
  | { ok: false; reason: 'missing' | 'expired' | 'skn' | 'malformed' | 'signature'; message: string };

/**
 * The policy of `policies` whose primary or secondary key signed the Authorization `header` and
 * whose name its skn gives (ignoring case), at `nowSeconds`; else why not ('skn': signed with a
 * policy's key but naming another). `whose` names the policies in the message ("the ... policy"),
 * which says what is wrong without repeating the token.
 */
export function verifyPolicyToken<P extends SharedAccessPolicy>(
  header: string | undefined,
  policies: readonly P[],
  nowSeconds: number,
  whose: string,
): PolicyTokenResult<P> {
  if (header === undefined || header === '') {
    return { ok: false, reason: 'missing', message: `The Authorization header is missing: send a SharedAccessSignature for ${whose}` };
  }
  const reasons = new Set<string>();
  let named: string | undefined;
  for (const policy of policies) {
    for (const key of [policy.primaryKey, policy.secondaryKey]) {
      const result = verifySasToken(header, key, nowSeconds);
      if (!result.ok) {
        reasons.add(result.reason);
        continue;
      }
      const { token } = result;
      if ((token.skn ?? '').toLowerCase() === policy.keyName.toLowerCase()) return { ok: true, policy, token };
      // Signed with this policy's key but naming another policy (or none: a device's token).
      reasons.add('skn');
      named = token.skn;
    }
  }
  if (reasons.has('expired')) {
    return { ok: false, reason: 'expired', message: 'The SharedAccessSignature has expired (check the clock, or sign a new one)' };
  }
  if (reasons.has('skn')) {
    return {
      ok: false,
      reason: 'skn',
      message: `The SharedAccessSignature is signed with a key of ${whose} but names the policy '${shownName(named)}'`,
    };
  }
  if (reasons.has('malformed')) {
    return { ok: false, reason: 'malformed', message: 'The Authorization header is not a valid SharedAccessSignature' };
  }
  return { ok: false, reason: 'signature', message: `The SharedAccessSignature is not signed with a key of ${whose}` };
}

export type ServiceAuthResult = { ok: true } | { ok: false; message: string };

/**
 * Check an Authorization header. `resources` are the names a token may be signed for (the
 * service's host:port as in the connection string, and the bare host).
 */
export function authorizeServiceRequest(
  header: string | undefined,
  policy: ServicePolicy,
  resources: readonly string[],
  nowSeconds: number,
): ServiceAuthResult {
  const result = verifyPolicyToken(header, [policy], nowSeconds, `the ${SERVICE_KEY_NAME} policy`);
  if (!result.ok) return { ok: false, message: result.message };
  const { resource } = result.token;
  if (!resources.some((name) => name.toLowerCase() === resource.toLowerCase())) {
    return { ok: false, message: `The SharedAccessSignature is for '${shownName(resource)}', not for this service (${resources[0]})` };
  }
  return { ok: true };
}

/** A name from a token (a policy, a resource, a path), echoed only when it cannot be a secret. */
export function shownName(text: string | undefined): string {
  return text !== undefined && /^[A-Za-z0-9.:[\]/_%-]{0,200}$/.test(text) ? text : '?';
}
