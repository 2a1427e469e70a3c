// The device's IoT Hub session over MQTT: connect with a fresh SAS token, subscribe and GET the
// twin in one burst, keep the desired properties applied in version order, answer direct
// methods, deliver cloud-to-device messages, send telemetry, and stay connected: reconnect with
// backoff and jitter after a drop, and with a fresh token before the current one expires. A hub
// that refuses the device (CONNACK 4/5) ends the session with an `unauthorized` error.
// Protocol: Microsoft's "Communicate with an IoT hub using the MQTT protocol" (see topics.ts).

import { utf8Encode } from '../bytes.js';
import { backoffMs } from '../dps/machine.js';
import { ProvisioningError } from '../errors.js';
import { MqttClient } from '../mqtt/client.js';
import type { HubEvent } from '../ports.js';
import { desiredProperties, type JsonObject, parseDesiredPatch, reportedPatchBody, type TwinDocument } from './messages.js';
import { answerMethod } from './methods.js';
import { type HubPorts, type HubSessionOptions, MAX_TELEMETRY_BYTES, RENEW_AT, type ResolvedOptions, resolveOptions } from './options.js';
import * as topics from './topics.js';
import { asError, TwinRequests } from './twin-requests.js';

/** Failures worth another connection; the others (unauthorized, tls, invalid-input, failed) end the session. */
const TRANSIENT = new Set(['network', 'server', 'protocol', 'throttled', 'timeout']);

/** Connect to the hub and GET the twin. Resolves once both are done (retrying transient failures); rejects with a ProvisioningError. */
export function connectHub(options: HubSessionOptions, ports: HubPorts): Promise<HubSession> {
  return HubSession.connect(options, ports);
}

export class HubSession {
  /** The twin as last received (after connectHub: the twin of the first connection). */
  twin: TwinDocument = { desired: { $version: 0 }, reported: { $version: 0 } };
  /** Settles once, when the session ends: undefined after close(), else why the hub refused the device or stayed out of reach. */
  readonly ended: Promise<ProvisioningError | undefined>;
  #end!: (error: ProvisioningError | undefined) => void;
  #client: MqttClient | undefined;
  #closed = false;
  /** Wakes a reconnection wait when the session closes. */
  #wake: (() => void) | undefined;
  /** Cancels the current connection's token renewal. */
  #renewal: (() => void) | undefined;
  #desiredVersion = -1;
  #connections = 0;
  readonly #twin: TwinRequests;
  readonly #timers = new Set<() => void>();
  readonly #options: ResolvedOptions;
  readonly #ports: HubPorts;

  private constructor(options: HubSessionOptions, ports: HubPorts) {
    this.#options = resolveOptions(options);
    this.#ports = ports;
    const random = ports.random ?? Math.random;
    this.#twin = new TwinRequests(
      (callback, ms) => this.#timer(callback, ms),
      this.#options.requestTimeoutMs,
      Math.floor(random() * 0x100000).toString(16),
    );
    this.ended = new Promise((resolve) => (this.#end = resolve));
  }

  static async connect(options: HubSessionOptions, ports: HubPorts): Promise<HubSession> {
    const session = new HubSession(options, ports);
    try {
      await session.#connectLoop(undefined);
    } catch (error) {
      session.close();
      throw error;
    }
    return session;
  }

  get isConnected(): boolean {
    return this.#client?.isOpen === true;
  }

  /** GET the twin; resolves with it (desired properties newer than the last applied go to onDesired first). */
  async getTwin(): Promise<TwinDocument> {
    return (await this.#twin.send(this.#connected('get the twin'), 'GET', new Uint8Array(0))) as TwinDocument;
  }

  /** PATCH the reported properties; resolves with their new `$version`. */
  async updateReported(patch: JsonObject): Promise<number> {
    const body = reportedPatchBody(patch);
    const version = (await this.#twin.send(this.#connected('update reported properties'), 'PATCH', body)) as number;
    this.#log({ type: 'hub-reported', version });
    return version;
  }

  /** Send a device-to-cloud message at QoS 1; resolves on PUBACK. */
  async sendTelemetry(body: Uint8Array | string, properties?: topics.TelemetryProperties): Promise<void> {
    const bytes = typeof body === 'string' ? utf8Encode(body) : body;
    if (bytes.length > MAX_TELEMETRY_BYTES)
      throw new ProvisioningError('invalid-input', `A telemetry message is at most ${MAX_TELEMETRY_BYTES} bytes`);
    const topic = topics.telemetryTopic(this.#options.deviceId, properties);
    const client = this.#connected('send telemetry');
    const acknowledged = client.publish(topic, bytes, 1);
    await new Promise<void>((resolve, reject) => {
      const seconds = this.#options.requestTimeoutMs / 1000;
      const cancel = this.#timer(() => {
        const error = new ProvisioningError('timeout', `IoT Hub did not acknowledge the telemetry message within ${seconds} s`);
        reject(error);
        // The hub acknowledges in order (MQTT 3.1.1 §4.6): no PUBACK in that time is a connection
        // that went silent (a dead NAT entry, a hub gone away) and will not come back: a new one.
        this.#lost(client, error);
      }, this.#options.requestTimeoutMs);
      acknowledged.then(
        () => (cancel(), resolve()),
        (error: unknown) => (cancel(), reject(asError(error))),
      );
    });
    this.#log({ type: 'hub-telemetry', bytes: bytes.length });
  }

  /** Disconnect and end the session (`ended` settles with undefined). Idempotent. */
  close(): void {
    this.#finish(undefined);
  }

  /** Connect until it works (backing off), or until offlineTimeoutMs passes or the hub refuses: then throws. */
  async #connectLoop(lost: ProvisioningError | undefined): Promise<void> {
    const { clock } = this.#ports;
    const { endpoint, offlineTimeoutMs } = this.#options;
    const backoff = { backoff: this.#options.backoff, random: this.#ports.random ?? Math.random };
    const start = clock.now();
    let failures = lost ? 1 : 0;
    let last = lost;
    for (;;) {
      if (last) {
        const waitMs = backoffMs(failures, backoff);
        if (clock.now() + waitMs - start > offlineTimeoutMs) {
          const seconds = Math.round((clock.now() - start) / 1000);
          throw last.rephrase(`IoT Hub ${endpoint.host}:${endpoint.port} could not be reached for ${seconds} s: ${last.message}`);
        }
        this.#log({ type: 'hub-disconnected', reason: last.message, attempt: failures, waitMs });
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          this.#timer(resolve, waitMs);
        });
      }
      if (this.#closed) throw new ProvisioningError('network', 'The IoT Hub session was closed');
      try {
        return await this.#open();
      } catch (error) {
        last = asError(error);
        if (this.#closed || !TRANSIENT.has(last.kind)) throw last;
        failures++;
      }
    }
  }

  async #open(): Promise<void> {
    const { hub, deviceId, deviceKey, modelId, sasTtlSeconds, requestTimeoutMs, endpoint } = this.#options;
    const { clock } = this.#ports;
    this.#log({ type: 'hub-connecting', host: endpoint.host, port: endpoint.port, attempt: ++this.#connections });
    const expiry = Math.floor(clock.now() / 1000) + sasTtlSeconds;
    let client: MqttClient | undefined;
    let established = false;
    let burst: Promise<unknown> | undefined;
    try {
      client = await MqttClient.connect(this.#ports.connect, endpoint, clock, {
        clientId: deviceId,
        username: topics.hubUsername(hub, deviceId, modelId),
        ...(deviceKey !== undefined && { password: topics.hubSasToken(hub, deviceId, deviceKey, expiry) }),
        connectTimeoutMs: requestTimeoutMs,
        ...(this.#options.keepAliveSeconds !== undefined && { keepAliveSeconds: this.#options.keepAliveSeconds }),
        ...(this.#options.maxPacketSize !== undefined && { maxPacketSize: this.#options.maxPacketSize }),
        onMessage: (topic, payload) => this.#onMessage(topic, payload),
        // One burst right behind CONNECT, waiting for neither CONNACK nor SUBACK (MQTT keeps order,
        // and the hub has subscribed us before it answers the GET): a connect costs one round trip after TLS.
        onConnectSent: (opening) => {
          const subscribed = this.#subscriptions().map((topic) => opening.subscribe(topic, 1));
          burst = Promise.all([...subscribed, this.#twin.send(opening, 'GET', new Uint8Array(0))]);
          burst.catch(() => {}); // awaited once connected; a refused connection is connect()'s to report
        },
        onClose: (error) => {
          if (client === undefined || this.#client !== client) return;
          const lost = error ?? new ProvisioningError('network', 'IoT Hub closed the connection');
          this.#drop(lost); // while opening, the GET in flight fails with it and the loop tries again
          if (established) this.#reconnect(lost);
        },
      });
    } catch (error) {
      this.#twin.failAll(asError(error)); // the GET sent behind a refused CONNECT gets no answer
      throw error;
    }
    if (this.#closed) return client.disconnect();
    this.#client = client;
    try {
      await burst;
    } catch (error) {
      if (this.#client === client) this.#drop(asError(error));
      throw error;
    }
    established = true;
    this.#log({ type: 'hub-connected', host: endpoint.host, port: endpoint.port });
    if (deviceKey === undefined) return; // X.509: the certificate does not expire with the connection
    this.#renewal = this.#timer(
      () => {
        this.#log({ type: 'hub-renewing', expiresAt: expiry * 1000 });
        this.#drop(new ProvisioningError('network', 'The connection was closed to renew its SAS token'));
        this.#reconnect(undefined);
      },
      Math.max(0, expiry * 1000 - clock.now()) * RENEW_AT,
    );
  }

  #subscriptions(): string[] {
    const { onDesired, onMethod, onC2D, deviceId } = this.#options;
    const list = [topics.TWIN_RESPONSE_SUBSCRIBE_TOPIC];
    if (onDesired) list.push(topics.DESIRED_SUBSCRIBE_TOPIC);
    if (onMethod) list.push(topics.METHODS_SUBSCRIBE_TOPIC);
    if (onC2D) list.push(topics.c2dSubscribeTopic(deviceId));
    return list;
  }

  /** Routes a message by its topic; anything malformed or unexpected is ignored (and logged), never fatal. */
  #onMessage(topic: string, payload: Uint8Array): void {
    try {
      const response = topics.parseTwinResponseTopic(topic);
      if (response) {
        if (!this.#twin.answer(response, payload, (twin) => this.#received(twin))) this.#ignore('a twin response to no request in flight');
        return;
      }
      const desired = topics.parseDesiredTopic(topic);
      if (desired) return this.#onDesiredPatch(desired.version, payload);
      const method = topics.parseMethodTopic(topic);
      if (method) return void this.#onMethod(method, payload);
      const c2d = topics.parseC2dTopic(topic, this.#options.deviceId);
      const { onC2D, maxC2dBytes } = this.#options;
      if (!c2d || !onC2D) return this.#ignore('a message on a topic this session does not handle');
      if (payload.length > maxC2dBytes) return this.#ignore(`a cloud-to-device message of ${payload.length} bytes (over ${maxC2dBytes})`);
      this.#log({ type: 'hub-c2d', bytes: payload.length });
      this.#call(() => onC2D(payload, c2d), 'the cloud-to-device handler threw');
    } catch (error) {
      this.#ignore(asError(error).message);
    }
  }

  #received(twin: TwinDocument): void {
    this.twin = twin;
    this.#log({ type: 'hub-twin', desiredVersion: twin.desired.$version, reportedVersion: twin.reported.$version });
    this.#applyDesired(desiredProperties(twin), twin.desired.$version);
  }

  #onDesiredPatch(topicVersion: number | undefined, payload: Uint8Array): void {
    const { patch, version } = parseDesiredPatch(payload, topicVersion);
    if (version <= this.#desiredVersion)
      return this.#ignore(`desired properties version ${version}, not newer than ${this.#desiredVersion}`);
    if (this.#desiredVersion >= 0 && version > this.#desiredVersion + 1 && !this.#twin.fetching) {
      // A version was missed (an update while disconnected, or lost): catch up from the whole twin.
      this.getTwin().catch((error: unknown) => this.#ignore(`catching up on desired properties failed: ${asError(error).message}`));
      return;
    }
    this.#applyDesired(patch, version);
  }

  #applyDesired(patch: JsonObject, version: number): void {
    if (version <= this.#desiredVersion) return;
    this.#desiredVersion = version;
    this.#log({ type: 'hub-desired', version });
    this.#call(() => this.#options.onDesired?.(patch, version), 'the desired-properties handler threw');
  }

  /** Runs a device handler; what it throws is the device's business, logged without its text (it may hold anything). */
  #call(handler: () => void, reason: string): void {
    try {
      handler();
    } catch {
      this.#ignore(reason);
    }
  }

  async #onMethod(call: topics.MethodRequestTopic, payload: Uint8Array): Promise<void> {
    const handler = this.#options.onMethod;
    if (!handler) return this.#ignore('a direct method call, but no handler is set');
    const answer = await answerMethod(handler, call, payload);
    this.#log({ type: 'hub-method', name: call.name, status: answer.status });
    // The call belongs to its connection: after a reconnect the hub no longer waits for it.
    const client = this.#client;
    if (client?.isOpen) client.publish(answer.topic, answer.body, 0).catch(() => {});
  }

  /** Ends the current connection; twin requests in flight fail with `error`. */
  #drop(error: ProvisioningError): void {
    const client = this.#client;
    this.#client = undefined;
    this.#renewal?.();
    this.#renewal = undefined;
    client?.disconnect();
    this.#twin.failAll(error);
  }

  /** `client`'s connection is beyond saving: unless it is already gone, drop it and connect again. */
  #lost(client: MqttClient, error: ProvisioningError): void {
    if (this.#closed || this.#client !== client) return;
    this.#drop(error);
    this.#reconnect(error);
  }

  #reconnect(lost: ProvisioningError | undefined): void {
    if (this.#closed) return;
    this.#connectLoop(lost).catch((error: unknown) => this.#finish(asError(error)));
  }

  #finish(error: ProvisioningError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const cancel of this.#timers) cancel();
    this.#timers.clear();
    this.#wake?.();
    this.#drop(error ?? new ProvisioningError('network', 'The IoT Hub session was closed'));
    this.#end(error);
  }

  #connected(what: string): MqttClient {
    const client = this.#client;
    if (!client?.isOpen)
      throw new ProvisioningError(
        'network',
        `Cannot ${what}: not connected to IoT Hub${this.#closed ? ' (the session was closed)' : ' (reconnecting)'}`,
      );
    return client;
  }

  /** A timer that close() cancels; returns its cancel function. */
  #timer(callback: () => void, ms: number): () => void {
    const cancel = this.#ports.clock.setTimer(() => {
      this.#timers.delete(cancel);
      callback();
    }, ms);
    this.#timers.add(cancel);
    return () => {
      this.#timers.delete(cancel);
      cancel();
    };
  }

  #log(event: HubEvent): void {
    this.#ports.log?.(event);
  }

  #ignore(reason: string): void {
    this.#log({ type: 'hub-ignored', reason });
  }
}
