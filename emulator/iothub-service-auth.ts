// Who may use an emulated hub's service REST API (iothub-rest.ts): the hub's own shared access
// policies (hubs.ts), as IoT Hub checks them (iot-hub-dev-guide-sas.md). A request carries
//   Authorization: SharedAccessSignature sr=<hub host>&sig=<...>&se=<expiry>&skn=<policy>
// the token azure-iothub builds from the hub's connection string
// (SharedAccessSignature.create(HostName, SharedAccessKeyName, SharedAccessKey, expiry)): signed
// with the policy's primary or secondary key over the URL-encoded resource, which is the hub's
// host name or a narrower resource under it (`<hub>/devices`, `<hub>/twins/<id>`) that the
// request's path must then fall under. After `hub policy renew-key` the old key is refused.
// Each operation needs a right of the policy (a missing one is a 401, as IoT Hub answers):
//   registry reads (GET /devices...)              RegistryRead (RegistryWrite includes it)
//   registry writes (PUT, DELETE /devices/{id})   RegistryWrite
//   twin reads (GET /twins/{id})                  ServiceConnect or RegistryRead
//   twin updates, direct methods                  ServiceConnect
// The messages say what is wrong without repeating the token.
import { verifySasToken } from '../src/sas-verify.js';
import type { EmulatedHub, HubRight } from './hubs.js';

export type HubServiceOperation = 'registry-read' | 'registry-write' | 'twin-read' | 'service-connect';

/** The rights each operation accepts: any one of them will do. */
const ACCEPTED: Record<HubServiceOperation, readonly HubRight[]> = {
  'registry-read': ['RegistryRead', 'RegistryWrite'],
  'registry-write': ['RegistryWrite'],
  'twin-read': ['ServiceConnect', 'RegistryRead', 'RegistryWrite'],
  'service-connect': ['ServiceConnect'],
};

const NEEDED: Record<HubServiceOperation, string> = {
  'registry-read': 'RegistryRead',
  'registry-write': 'RegistryWrite',
  'twin-read': 'ServiceConnect or RegistryRead',
  'service-connect': 'ServiceConnect',
};

export type HubServiceAuthResult = { ok: true; keyName: string } | { ok: false; message: string };

/**
 * Check an Authorization header for `operation` on `path` (the request's path, without the query)
 * of `hub` at `nowSeconds`.
 */
export function authorizeHubServiceRequest(
  header: string | undefined,
  hub: EmulatedHub,
  path: string,
  operation: HubServiceOperation,
  nowSeconds: number,
): HubServiceAuthResult {
  if (header === undefined || header === '') {
    return { ok: false, message: `The Authorization header is missing: send a SharedAccessSignature for a policy of ${hub.hostName}` };
  }
  const reasons = new Set<string>();
  const policies = hub.policies;
  for (const policy of policies) {
    for (const key of [policy.primaryKey, policy.secondaryKey]) {
      const result = verifySasToken(header, key, nowSeconds);
      if (!result.ok) {
        reasons.add(result.reason);
        continue;
      }
      const { token } = result;
      if ((token.skn ?? '').toLowerCase() !== policy.keyName.toLowerCase()) {
        // Signed with this policy's key but naming another policy (or none: a device's token).
        reasons.add('skn');
        continue;
      }
      if (!covers(token.resource, hub.hostName, path)) {
        return { ok: false, message: `The SharedAccessSignature is for '${shown(token.resource)}', not for ${hub.hostName}${shown(path)}` };
      }
      if (!policy.rights.some((right) => ACCEPTED[operation].includes(right))) {
        return {
          ok: false,
          message: `The shared access policy '${policy.keyName}' of ${hub.hostName} lacks ${NEEDED[operation]}, which this operation needs`,
        };
      }
      return { ok: true, keyName: policy.keyName };
    }
  }
  if (reasons.has('expired')) return { ok: false, message: 'The SharedAccessSignature has expired (check the clock, or sign a new one)' };
  if (reasons.has('malformed') && reasons.size === 1) {
    return { ok: false, message: 'The Authorization header is not a valid SharedAccessSignature' };
  }
  return {
    ok: false,
    message:
      `The SharedAccessSignature is not signed with a key of a shared access policy of ${hub.hostName} that its skn names ` +
      "(was the key renewed? use the hub's current connection string)",
  };
}

/** The token's resource is the hub, or a resource under it that the request's path falls under. */
function covers(resource: string, hostName: string, path: string): boolean {
  const wanted = resource.toLowerCase().replace(/\/+$/, '');
  const target = `${hostName}${path}`.toLowerCase();
  return wanted === hostName.toLowerCase() || target === wanted || target.startsWith(`${wanted}/`);
}

/** A name from a token, echoed only when it cannot be a secret. */
function shown(text: string): string {
  return /^[A-Za-z0-9.:/_%-]{0,200}$/.test(text) ? text : '?';
}
