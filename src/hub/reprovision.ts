// The decision "the hub turned the device away: provision again with DPS". DPS's troubleshooting
// guidance: on 401, 403 or 404 from the hub, or credentials it refuses, register again (with
// backoff). A session's or connectHub's error is one of these only when it is final: `unauthorized`
// (CONNACK 4/5, a twin 401/403), a twin 404 (the device is unknown to the hub), or `network` after
// offlineTimeoutMs of failed attempts (the hub unreachable past that bound, or its name unresolvable).
import type { ProvisioningError } from '../errors.js';

export function shouldReprovision(error: ProvisioningError | undefined): boolean {
  if (!error) return false;
  return error.kind === 'unauthorized' || error.kind === 'network' || (error.kind === 'failed' && error.status === 404);
}
