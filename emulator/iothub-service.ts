// The service side of the emulated IoT hubs, what an application does through IoT Hub's service
// API: read twins and update desired properties, enable, disable and delete devices, invoke
// direct methods, send cloud-to-device messages, and read or follow the telemetry. It knows the
// live device connections the endpoint (iothub-endpoint.ts) attaches.
import { randomUUID } from 'node:crypto';
import type { Client, PublishPacket } from 'aedes';
import type { HubAuthFailure, HubConnection } from './iothub-auth.js';
import {
  buildPropertyBag,
  type JsonObject,
  parseJson,
  parsePropertyBag,
  patchTags,
  patchTwin,
  printable,
  type TwinView,
  twinView,
} from './iothub-twins.js';
import type { DpsModel } from './model.js';

export type HubEndpointEvent =
  | { type: 'hub-refused'; clientId: string; hub?: string; reason: HubAuthFailure }
  | { type: 'hub-connected'; hub: string; deviceId: string; modelId?: string }
  | { type: 'hub-disconnected'; hub: string; deviceId: string }
  | { type: 'hub-topic-refused'; hub: string; deviceId: string; action: 'subscribe' | 'publish'; topic: string }
  | { type: 'hub-twin'; hub: string; deviceId: string; request: 'reported' | 'desired'; status: number; version?: number }
  | { type: 'hub-telemetry'; hub: string; deviceId: string; bytes: number }
  | { type: 'hub-method'; hub: string; deviceId: string; method: string; status: number };

/** A device-to-cloud message as the hub logged it. */
export interface TelemetryMessage {
  hub: string;
  deviceId: string;
  /** The body as UTF-8 text. */
  body: string;
  /** The property bag, decoded: application properties and system ones ('$.ct', '$.mid', ...). */
  properties: Record<string, string>;
  enqueuedTimeUtc: string;
  /** 1, 2, 3... per hub, as Event Hubs numbers the messages of IoT Hub's built-in endpoint: a follower's cursor. */
  sequenceNumber: number;
}

/** Why a service call failed, with IoT Hub's HTTP status: 404 (no such device, or not connected), 504 (no answer in time), 400. */
export class IotHubError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'IotHubError';
  }
}

/** The service-side API of the emulated hubs (DpsEmulator.hubs). */
export interface EmulatedIotHubs {
  twin(hub: string, deviceId: string): TwinView | undefined;
  /** Merge a patch into the desired properties; the device gets it if connected and subscribed. Returns the new $version. */
  updateDesired(hub: string, deviceId: string, patch: JsonObject): number;
  /** Update Twin: merge patches into the tags and/or the desired properties, both or neither (an invalid one changes nothing). */
  updateTwin(hub: string, deviceId: string, patch: { tags?: JsonObject; desired?: JsonObject }): void;
  /** Disabling also closes the device's connection, as IoT Hub does. */
  setDeviceStatus(hub: string, deviceId: string, status: 'enabled' | 'disabled'): void;
  /** Remove the device from the hub's registry and close its connection. */
  deleteDevice(hub: string, deviceId: string): void;
  invokeMethod(
    hub: string,
    deviceId: string,
    methodName: string,
    payload: unknown,
    timeoutMs?: number,
  ): Promise<{ status: number; payload: unknown }>;
  /** Resolves once the message is written to the device's connection (QoS 1). */
  sendC2D(hub: string, deviceId: string, body: string | Uint8Array, properties?: Record<string, string>): Promise<void>;
  /** The last TELEMETRY_LOG_SIZE messages of a hub, oldest first. */
  telemetry(hub: string): TelemetryMessage[];
  onTelemetry(listener: (message: TelemetryMessage) => void): () => void;
  connected(hub: string, deviceId: string): boolean;
}

export const TELEMETRY_LOG_SIZE = 1000;
const METHOD_NAME = /^[A-Za-z0-9\-._:~!$'()*,;=@]{1,128}$/;

interface PendingCall {
  key: string;
  resolve(answer: { status: number; payload: unknown }): void;
  reject(error: Error): void;
  method: string;
  timer: NodeJS.Timeout;
}

export class IotHubService implements EmulatedIotHubs {
  readonly #live = new Map<string, Client>();
  readonly #subscriptions = new WeakMap<Client, Set<string>>();
  readonly #logs = new Map<string, TelemetryMessage[]>();
  readonly #sequence = new Map<string, number>();
  readonly #listeners = new Set<(message: TelemetryMessage) => void>();
  readonly #calls = new Map<string, PendingCall>();
  #nextRid = 1;

  constructor(
    private readonly model: DpsModel,
    private readonly emit: (event: HubEndpointEvent) => void,
    private readonly now: () => number,
  ) {}

  // ---- the service side ----

  twin(hub: string, deviceId: string): TwinView | undefined {
    const device = this.model.hubDevice(hub, deviceId);
    return device && twinView(device);
  }

  updateDesired(hub: string, deviceId: string, patch: JsonObject): number {
    const result = patchTwin(this.#device(hub, deviceId), 'desired', patch);
    if ('error' in result) throw new IotHubError(400, `Cannot update the desired properties: ${result.error}`);
    this.model.replaceHubDevice(hub, result.device);
    this.#desiredChanged(hub, deviceId, patch, result.version);
    return result.version;
  }

  updateTwin(hub: string, deviceId: string, patch: { tags?: JsonObject; desired?: JsonObject }): void {
    let device = this.#device(hub, deviceId);
    if (patch.tags !== undefined) {
      const tagged = patchTags(device, patch.tags);
      if ('error' in tagged) throw new IotHubError(400, `Cannot update the tags: ${tagged.error}`);
      device = tagged.device;
    }
    let version: number | undefined;
    if (patch.desired !== undefined) {
      const result = patchTwin(device, 'desired', patch.desired);
      if ('error' in result) throw new IotHubError(400, `Cannot update the desired properties: ${result.error}`);
      device = result.device;
      version = result.version;
    }
    this.model.replaceHubDevice(hub, device);
    if (version !== undefined) this.#desiredChanged(hub, deviceId, patch.desired!, version);
  }

  /** The connected device gets the patch; the log gets the event. */
  #desiredChanged(hub: string, deviceId: string, patch: JsonObject, version: number): void {
    const client = this.#live.get(key(hub, deviceId));
    const topic = `$iothub/twin/PATCH/properties/desired/?$version=${version}`;
    if (client && this.isSubscribed(client, '$iothub/twin/PATCH/properties/desired/#')) {
      this.#send(client, topic, JSON.stringify({ ...patch, $version: version }), 0).catch(() => {});
    }
    this.emit({ type: 'hub-twin', hub: hub.toLowerCase(), deviceId, request: 'desired', status: 200, version });
  }

  setDeviceStatus(hub: string, deviceId: string, status: 'enabled' | 'disabled'): void {
    if (status !== 'enabled' && status !== 'disabled') throw new IotHubError(400, "A device's status is 'enabled' or 'disabled'");
    this.model.replaceHubDevice(hub, { ...this.#device(hub, deviceId), status });
    if (status === 'disabled') this.#live.get(key(hub, deviceId))?.close();
  }

  deleteDevice(hub: string, deviceId: string): void {
    this.#device(hub, deviceId);
    this.model.removeHubDevice(hub, deviceId);
    this.#live.get(key(hub, deviceId))?.close();
  }

  invokeMethod(
    hub: string,
    deviceId: string,
    methodName: string,
    payload: unknown,
    timeoutMs = 30_000,
  ): Promise<{ status: number; payload: unknown }> {
    if (typeof methodName !== 'string' || !METHOD_NAME.test(methodName)) {
      return Promise.reject(new IotHubError(400, "A method name is 1-128 of A-Z a-z 0-9 - . _ : ~ ! $ ' ( ) * , ; = @"));
    }
    const client = this.#live.get(key(hub, deviceId));
    if (!client || !this.isSubscribed(client, '$iothub/methods/POST/#')) {
      return Promise.reject(new IotHubError(404, `The device ${deviceId} is not connected to ${hub} with direct methods subscribed`));
    }
    const rid = (this.#nextRid++).toString(16);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#calls.delete(rid);
        reject(new IotHubError(504, `The device ${deviceId} did not answer the method ${methodName} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#calls.set(rid, { key: key(hub, deviceId), resolve, reject, method: methodName, timer });
      this.#send(client, `$iothub/methods/POST/${methodName}/?$rid=${rid}`, JSON.stringify(payload ?? null), 0).catch(() => {});
    });
  }

  sendC2D(hub: string, deviceId: string, body: string | Uint8Array, properties: Record<string, string> = {}): Promise<void> {
    const client = this.#live.get(key(hub, deviceId));
    const filter = `devices/${deviceId}/messages/devicebound/#`;
    if (!client || !this.isSubscribed(client, filter)) {
      return Promise.reject(
        new IotHubError(404, `The device ${deviceId} is not connected to ${hub} with cloud-to-device messages subscribed`),
      );
    }
    const bag = buildPropertyBag({ ...properties, '$.mid': randomUUID(), '$.to': `/devices/${deviceId}/messages/devicebound` });
    return this.#send(client, `devices/${deviceId}/messages/devicebound/${bag}`, body, 1);
  }

  telemetry(hub: string): TelemetryMessage[] {
    return structuredClone(this.#logs.get(hub.toLowerCase()) ?? []);
  }

  onTelemetry(listener: (message: TelemetryMessage) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  connected(hub: string, deviceId: string): boolean {
    return this.#live.has(key(hub, deviceId));
  }

  // ---- the endpoint's side ----

  attach(session: HubConnection, client: Client): void {
    this.#live.set(key(session.hub, session.deviceId), client);
    this.#subscriptions.set(client, new Set());
    this.emit({
      type: 'hub-connected',
      hub: session.hub,
      deviceId: session.deviceId,
      ...(session.modelId !== undefined && { modelId: printable(session.modelId) }),
    });
  }

  detach(session: HubConnection, client: Client): void {
    const id = key(session.hub, session.deviceId);
    if (this.#live.get(id) !== client) return;
    this.#live.delete(id);
    this.emit({ type: 'hub-disconnected', hub: session.hub, deviceId: session.deviceId });
  }

  subscribed(client: Client, topic: string): void {
    this.#subscriptions.get(client)?.add(topic);
  }

  unsubscribed(client: Client, topic: string): void {
    this.#subscriptions.get(client)?.delete(topic);
  }

  /**
   * Granted by authorizeSubscribe (aedes records it only later, and answers the PUBLISHes behind a
   * SUBSCRIBE meanwhile), or restored by aedes from a previous session (CleanSession 0, as the
   * Node SDK connects).
   */
  isSubscribed(client: Client, topic: string): boolean {
    const restored = (client as unknown as { subscriptions: Record<string, unknown> }).subscriptions;
    return this.#subscriptions.get(client)?.has(topic) === true || restored[topic] !== undefined;
  }

  /** What the hub may write to a device's connection. */
  mayReceive(session: HubConnection, topic: string): boolean {
    return [
      '$iothub/twin/res/',
      '$iothub/twin/PATCH/properties/desired/',
      '$iothub/methods/POST/',
      `devices/${session.deviceId}/messages/devicebound/`,
    ].some((prefix) => topic.startsWith(prefix));
  }

  refusedTopic(session: HubConnection, action: 'subscribe' | 'publish', topic: string): void {
    this.emit({ type: 'hub-topic-refused', hub: session.hub, deviceId: session.deviceId, action, topic: printable(topic) });
  }

  /** `retained`: the PUBLISH had RETAIN set, which IoT Hub passes on as the application property mqtt-retain. */
  telemetryReceived(session: HubConnection, topic: string, payload: Buffer, retained = false): void {
    const bag = topic.slice(`devices/${session.deviceId}/messages/events/`.length);
    const properties = parsePropertyBag(bag) ?? {};
    if (retained) properties['mqtt-retain'] = 'true';
    const message: TelemetryMessage = {
      hub: session.hub,
      deviceId: session.deviceId,
      body: payload.toString('utf8'),
      properties,
      enqueuedTimeUtc: new Date(this.now()).toISOString(),
      sequenceNumber: (this.#sequence.get(session.hub) ?? 0) + 1,
    };
    this.#sequence.set(session.hub, message.sequenceNumber);
    const log = this.#logs.get(session.hub) ?? [];
    this.#logs.set(session.hub, log);
    log.push(message);
    if (log.length > TELEMETRY_LOG_SIZE) log.splice(0, log.length - TELEMETRY_LOG_SIZE);
    this.emit({ type: 'hub-telemetry', hub: session.hub, deviceId: session.deviceId, bytes: payload.length });
    for (const listener of this.#listeners) {
      try {
        listener(structuredClone(message));
      } catch {
        // a follower's bug is not the device's problem
      }
    }
  }

  methodAnswered(session: HubConnection, status: number, rid: string, payload: Buffer): void {
    const call = this.#calls.get(rid);
    if (!call || call.key !== key(session.hub, session.deviceId)) return; // a stray or late answer
    this.#calls.delete(rid);
    clearTimeout(call.timer);
    this.emit({ type: 'hub-method', hub: session.hub, deviceId: session.deviceId, method: call.method, status });
    call.resolve({ status, payload: payload.length === 0 ? null : (parseJson(payload) ?? payload.toString('utf8')) });
  }

  close(): void {
    for (const call of this.#calls.values()) {
      clearTimeout(call.timer);
      call.reject(new IotHubError(503, 'The emulator was closed before the device answered'));
    }
    this.#calls.clear();
    this.#listeners.clear();
  }

  #device(hub: string, deviceId: string) {
    const device = this.model.hubDevice(hub, deviceId);
    if (!device) throw new IotHubError(404, `The device ${deviceId} does not exist in ${hub}`);
    return device;
  }

  #send(client: Client, topic: string, body: string | Uint8Array, qos: 0 | 1): Promise<void> {
    const packet = { cmd: 'publish', topic, payload: Buffer.from(body), qos, retain: false, dup: false } as PublishPacket;
    return new Promise((resolve, reject) => client.publish(packet, (error) => (error ? reject(error) : resolve())));
  }
}

function key(hub: string, deviceId: string): string {
  return `${hub.toLowerCase()}/${deviceId}`;
}
