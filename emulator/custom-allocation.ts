// The custom allocation policy: DPS POSTs an AllocationRequest to the enrollment's webhook and
// uses the AllocationResponse (MicrosoftDocs/azure-docs, articles/iot-dps/concepts-custom-allocation.md):
//   request  {"enrollmentGroup" | "individualEnrollment": <the enrollment, keys omitted>,
//             "deviceRuntimeContext": {"registrationId", "currentIotHubHostName"?, "currentDeviceId"?,
//                                      "symmetricKey": {}, "payload"?},
//             "linkedHubs": [<host names the device may be assigned to>]}
//   response {"iotHubHostName": <one of linkedHubs>, "initialTwin"?: {...}, "payload"?: <any JSON>}
// A webhook that fails (non-2xx, bad JSON, a hub not offered, no answer in time) makes the
// registration fail with 400207 "Custom allocation failed with status code: <n>", the code and
// message DPS sends (azure-sdk-for-c, test_az_iot_provisioning_client_parser.c).
import { BodyTooLargeError, readBoundedBody } from './http-body.js';
import type { EnrollmentGroup, IndividualEnrollment, InitialTwin } from './model-types.js';

export interface AllocationRequestInput {
  webhookUrl: string;
  enrollment: { kind: 'group'; value: EnrollmentGroup } | { kind: 'individual'; value: IndividualEnrollment };
  registrationId: string;
  currentIotHubHostName?: string;
  currentDeviceId?: string;
  payload?: unknown;
  linkedHubs: string[];
}

export type AllocationOutcome =
  | { ok: true; iotHubHostName: string; initialTwin?: InitialTwin; payload?: unknown }
  | { ok: false; errorMessage: string };

const MAX_RESPONSE_BYTES = 256 * 1024;

export async function callAllocationWebhook(
  input: AllocationRequestInput,
  options: { timeoutMs: number; signal: AbortSignal },
): Promise<AllocationOutcome> {
  const { attestation, ...enrollment } = input.enrollment.value;
  const body = {
    [input.enrollment.kind === 'group' ? 'enrollmentGroup' : 'individualEnrollment']: {
      ...enrollment,
      attestation: { type: attestation.type },
    },
    deviceRuntimeContext: {
      registrationId: input.registrationId,
      ...(input.currentIotHubHostName ? { currentIotHubHostName: input.currentIotHubHostName } : {}),
      ...(input.currentDeviceId ? { currentDeviceId: input.currentDeviceId } : {}),
      symmetricKey: {},
      ...(input.payload !== undefined ? { payload: input.payload } : {}),
    },
    linkedHubs: input.linkedHubs,
  };
  let status: number;
  let text: string;
  try {
    ({ status, text } = await post(input.webhookUrl, JSON.stringify(body), options));
  } catch (error) {
    return { ok: false, errorMessage: `Custom allocation failed: ${(error as Error).message}` };
  }
  if (status < 200 || status > 299) return { ok: false, errorMessage: `Custom allocation failed with status code: ${status}` };
  let parsed: { iotHubHostName?: unknown; iotHubHostname?: unknown; initialTwin?: unknown; payload?: unknown };
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, errorMessage: 'Custom allocation failed: the webhook did not answer JSON' };
  }
  const hub = parsed?.iotHubHostName ?? parsed?.iotHubHostname;
  if (typeof hub !== 'string' || !input.linkedHubs.includes(hub.toLowerCase())) {
    return { ok: false, errorMessage: 'Custom allocation failed: the webhook chose no IoT hub among linkedHubs' };
  }
  const twin = parsed.initialTwin;
  if (twin !== undefined && twin !== null && (typeof twin !== 'object' || Array.isArray(twin))) {
    return { ok: false, errorMessage: 'Custom allocation failed: the webhook returned an initialTwin that is not an object' };
  }
  return {
    ok: true,
    iotHubHostName: hub.toLowerCase(),
    ...(twin ? { initialTwin: twin as InitialTwin } : {}),
    ...(parsed.payload !== undefined ? { payload: parsed.payload } : {}),
  };
}

/**
 * One POST, bounded in time (the whole exchange, body included) and in the size of the answer.
 * An https webhook is checked against Node's trusted roots, as DPS checks it against public ones.
 * A redirect is an answer like any other non-2xx, not followed.
 */
async function post(
  url: string,
  body: string,
  options: { timeoutMs: number; signal: AbortSignal },
): Promise<{ status: number; text: string }> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  try {
    const res = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      signal: AbortSignal.any([options.signal, timeout]),
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body,
    });
    const text = res.body ? (await readBoundedBody(res.body, MAX_RESPONSE_BYTES)).toString('utf8') : '';
    return { status: res.status, text };
  } catch (error) {
    if (timeout.aborted) throw new Error(`no answer from the webhook within ${options.timeoutMs} ms`);
    if (error instanceof BodyTooLargeError) throw new Error('the webhook answer is too large');
    // fetch says only 'fetch failed'; its cause says why (ECONNREFUSED, a certificate, ...).
    const cause = (error as { cause?: unknown }).cause;
    throw new Error(cause instanceof Error ? cause.message : (error as Error).message);
  }
}
