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
import type { EmulatedHub, HubRight } from './hubs.js';
import { shownName, verifyPolicyToken } from './service-auth.js';

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
  const result = verifyPolicyToken(header, hub.policies, nowSeconds, `a shared access policy of ${hub.hostName}`);
  if (!result.ok) {
    const hint = result.reason === 'signature' ? " (was the key renewed? use the hub's current connection string)" : '';
    return { ok: false, message: `${result.message}${hint}` };
  }
  const { policy, token } = result;
  if (!covers(token.resource, hub.hostName, path)) {
    return {
      ok: false,
      message: `The SharedAccessSignature is for '${shownName(token.resource)}', not for ${hub.hostName}${shownName(path)}`,
    };
  }
  if (!policy.rights.some((right) => ACCEPTED[operation].includes(right))) {
    return {
      ok: false,
      message: `The shared access policy '${policy.keyName}' of ${hub.hostName} lacks ${NEEDED[operation]}, which this operation needs`,
    };
  }
  return { ok: true, keyName: policy.keyName };
}

/** The token's resource is the hub, or a resource under it that the request's path falls under. */
function covers(resource: string, hostName: string, path: string): boolean {
  const wanted = resource.toLowerCase().replace(/\/+$/, '');
  const target = `${hostName}${path}`.toLowerCase();
  return wanted === hostName.toLowerCase() || target === wanted || target.startsWith(`${wanted}/`);
}
