// Who may manage the emulator: DPS's service SAS. The one shared access policy is
// `provisioningserviceowner` (DPS's default policy with every service right). A request carries
//   Authorization: SharedAccessSignature sr=<service host>&sig=<...>&se=<expiry>&skn=provisioningserviceowner
// signed with the policy's primary or secondary key over the URL-encoded host name, the token
// Microsoft's service SDK builds from the connection string (azure-iot-common
// SharedAccessSignature.create(HostName, SharedAccessKeyName, SharedAccessKey, expiry)).
//
// The keys live in `service-policy.json` in the state directory (mode 0600), created once, so a
// connection string keeps working across restarts. A key given as an option is used instead
// (and not written).
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { verifySasToken } from '../src/sas-verify.js';
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

export type ServiceAuthResult = { ok: true } | { ok: false; message: string };

/**
 * Check an Authorization header. `resources` are the names a token may be signed for (the
 * service's host:port as in the connection string, and the bare host). The message says what is
 * wrong without repeating the token.
 */
export function authorizeServiceRequest(
  header: string | undefined,
  policy: ServicePolicy,
  resources: readonly string[],
  nowSeconds: number,
): ServiceAuthResult {
  if (header === undefined || header === '') {
    return {
      ok: false,
      message: 'The Authorization header is missing: send a SharedAccessSignature for the provisioningserviceowner policy',
    };
  }
  const reasons = new Set<string>();
  for (const key of [policy.primaryKey, policy.secondaryKey]) {
    const result = verifySasToken(header, key, nowSeconds);
    if (!result.ok) {
      reasons.add(result.reason);
      continue;
    }
    const { token } = result;
    if ((token.skn ?? '').toLowerCase() !== SERVICE_KEY_NAME) {
      return {
        ok: false,
        message: `The SharedAccessSignature names the policy '${shown(token.skn)}'; the emulator has only ${SERVICE_KEY_NAME}`,
      };
    }
    if (!resources.some((resource) => resource.toLowerCase() === token.resource.toLowerCase())) {
      return { ok: false, message: `The SharedAccessSignature is for '${shown(token.resource)}', not for this service (${resources[0]})` };
    }
    return { ok: true };
  }
  if (reasons.has('expired')) return { ok: false, message: 'The SharedAccessSignature has expired (check the clock, or sign a new one)' };
  if (reasons.has('signature'))
    return { ok: false, message: 'The SharedAccessSignature is not signed with a key of the provisioningserviceowner policy' };
  return { ok: false, message: 'The Authorization header is not a valid SharedAccessSignature' };
}

/** A name from a token, echoed only when it cannot be a secret. */
function shown(text: string | undefined): string {
  return text !== undefined && /^[A-Za-z0-9.:[\]_-]{0,100}$/.test(text) ? text : '?';
}
