// Twin requests in flight: each GET or reported-properties PATCH carries a fresh $rid, and the
// answer on '$iothub/twin/res/<status>/?$rid=<rid>' settles the request with that $rid. An
// answer to no request in flight is a stray (the caller ignores it); a request unanswered within
// its time ends with a `timeout` error. Protocol: see topics.ts.
import { isProvisioningError, ProvisioningError } from '../errors.js';
import type { MqttClient } from '../mqtt/client.js';
import { parseTwinDocument, type TwinDocument } from './messages.js';
import { reportedPatchTopic, type TwinResponseTopic, twinGetTopic } from './topics.js';

type Method = 'GET' | 'PATCH';

interface Pending {
  method: Method;
  resolve(value: TwinDocument | number): void;
  reject(error: ProvisioningError): void;
}

/** Starts a timer (one close() cancels with the others); returns its cancel function. */
export type SetTimer = (callback: () => void, ms: number) => () => void;

export class TwinRequests {
  readonly #pending = new Map<string, Pending>();
  #count = 0;

  constructor(
    private readonly setTimer: SetTimer,
    private readonly timeoutMs: number,
    private readonly ridPrefix: string,
  ) {}

  /** Whether a GET is in flight (its answer will bring the whole twin). */
  get fetching(): boolean {
    for (const pending of this.#pending.values()) if (pending.method === 'GET') return true;
    return false;
  }

  /** Publish the request at QoS 0 (its answer is the acknowledgement); resolves with the twin (GET) or the new reported $version (PATCH). */
  send(client: MqttClient, method: Method, body: Uint8Array): Promise<TwinDocument | number> {
    return new Promise((resolve, reject) => {
      const rid = `${this.ridPrefix}.${++this.#count}`;
      const settle = () => {
        this.#pending.delete(rid);
        cancel();
      };
      const cancel = this.setTimer(() => {
        settle();
        reject(new ProvisioningError('timeout', `IoT Hub did not answer the twin ${method} within ${this.timeoutMs / 1000} s`));
      }, this.timeoutMs);
      this.#pending.set(rid, {
        method,
        resolve: (value) => (settle(), resolve(value)),
        reject: (error) => (settle(), reject(error)),
      });
      const topic = method === 'GET' ? twinGetTopic(rid) : reportedPatchTopic(rid);
      client.publish(topic, body, 0).catch((error: unknown) => this.#pending.get(rid)?.reject(asError(error)));
    });
  }

  /**
   * Settle the request `response` answers; false when none is in flight (a stray). A GET's twin
   * goes to `received` before the request resolves; a malformed twin rejects the request.
   */
  answer(response: TwinResponseTopic, payload: Uint8Array, received: (twin: TwinDocument) => void): boolean {
    const pending = this.#pending.get(response.rid);
    if (!pending) return false;
    const { status } = response;
    try {
      if (status === 200 && pending.method === 'GET') {
        const twin = parseTwinDocument(payload);
        received(twin);
        pending.resolve(twin);
      } else if (status === 204 && pending.method === 'PATCH') {
        if (response.version === undefined)
          throw new ProvisioningError('protocol', 'IoT Hub answered the reported-properties PATCH without a $version', { status });
        pending.resolve(response.version);
      } else {
        pending.reject(statusError(pending.method, status));
      }
    } catch (error) {
      pending.reject(asError(error));
    }
    return true;
  }

  /** Every request in flight fails with `error` (the connection is gone). */
  failAll(error: ProvisioningError): void {
    for (const pending of [...this.#pending.values()]) pending.reject(error);
  }
}

/** A twin answer as an error: 401/403 unauthorized, 429 throttled, 5xx server, other 4xx failed (404 keeps its status); a success of the wrong kind is protocol. */
function statusError(method: Method, status: number): ProvisioningError {
  const kind =
    status < 300
      ? 'protocol'
      : status === 401 || status === 403
        ? 'unauthorized'
        : status === 429
          ? 'throttled'
          : status >= 500
            ? 'server'
            : 'failed';
  return new ProvisioningError(kind, `IoT Hub answered the twin ${method} with status ${status}`, { status });
}

export function asError(error: unknown): ProvisioningError {
  if (isProvisioningError(error)) return error;
  return new ProvisioningError('protocol', error instanceof Error ? error.message : String(error), { cause: error });
}
