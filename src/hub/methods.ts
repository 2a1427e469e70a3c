// Direct methods: the answer to a call on '$iothub/methods/POST/<name>/?$rid=<rid>' is a PUBLISH
// to '$iothub/methods/res/<status>/?$rid=<rid>' with "a valid JSON or empty body" (Microsoft's
// "Communicate with an IoT hub using the MQTT protocol", "Respond to a direct method").
import { methodResponseBody, parseMethodPayload } from './messages.js';
import { type MethodRequestTopic, methodResponseTopic } from './topics.js';

export interface MethodResult {
  /** The response status, a whole number 0-65535 (e.g. 200). */
  status: number;
  /** Sent as JSON; undefined sends an empty body. */
  payload?: unknown;
}

/** The device's handler: a throw or a rejection answers 500. */
export type MethodHandler = (name: string, payload: unknown) => MethodResult | Promise<MethodResult>;

export interface MethodAnswer {
  status: number;
  topic: string;
  body: Uint8Array;
}

/**
 * Run `handler` for `call` and build the answer: 400 when the payload is not JSON (the handler is
 * not called), 500 when the handler throws, rejects, or returns a status or payload that cannot
 * be sent. The error texts sent back are the core's own, never the handler's.
 */
export async function answerMethod(handler: MethodHandler, call: MethodRequestTopic, payload: Uint8Array): Promise<MethodAnswer> {
  let request: unknown;
  try {
    request = parseMethodPayload(payload);
  } catch (error) {
    return answer(call, 400, { message: (error as Error).message });
  }
  try {
    const result = await handler(call.name, request);
    return { status: result.status, topic: methodResponseTopic(result.status, call.rid), body: methodResponseBody(result.payload) };
  } catch {
    return answer(call, 500, { message: `The method ${call.name} failed on the device` });
  }
}

function answer(call: MethodRequestTopic, status: number, payload: unknown): MethodAnswer {
  return { status, topic: methodResponseTopic(status, call.rid), body: methodResponseBody(payload) };
}
