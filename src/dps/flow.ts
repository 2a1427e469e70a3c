// Runs the register/poll state machine (machine.ts) against real ports: opens the MQTT
// connection with a fresh SAS token, sends the request the machine asks for, matches the
// answer by $rid, sleeps when told to, and reconnects after a loss.
import { isProvisioningError, ProvisioningError } from '../errors.js';
import { validateIdScope, validateRegistrationId } from '../identity.js';
import { MqttClient } from '../mqtt/client.js';
import { encodePacket } from '../mqtt/codec.js';
import type { Clock, Connect, Endpoint, Log, Random } from '../ports.js';
import { dpsRegistrationSasToken } from '../sas.js';
import { type BackoffPolicy, initialState, type MachineEvent, type Phase, step } from './machine.js';
import { DPS_MAX_MESSAGE_BYTES, parseResponseBody, type RegistrationState, registerRequestBody } from './messages.js';
import { dpsUsername, parseResponseTopic, pollTopic, RESPONSE_SUBSCRIBE_TOPIC, registerTopic } from './topics.js';

export const DPS_GLOBAL_ENDPOINT: Endpoint = { host: 'global.azure-devices-provisioning.net', port: 8883 };

export interface RegisterOptions {
  idScope: string;
  registrationId: string;
  /**
   * The device's own symmetric key (base64): for a group enrollment, the derived key. A secret.
   * Absent: X.509 attestation, the device certificate (its CN the registration ID) is presented by
   * the host's Connect (TLS client authentication) and CONNECT carries no password.
   */
  deviceKey?: string;
  endpoint?: Endpoint;
  /** Custom data sent with the registration (any JSON value). */
  payload?: unknown;
  /** The whole flow ends within this many ms (default 5 minutes). */
  timeoutMs?: number;
  /** SAS token lifetime in seconds (default 3600, at most 86400). */
  sasTtlSeconds?: number;
  /** A request (CONNECT included) unanswered for this long counts as a lost connection (default 30 s). */
  responseTimeoutMs?: number;
  /** Wait between polls when DPS sends no retry-after (default 3 s). */
  defaultRetryAfterMs?: number;
  backoff?: Partial<BackoffPolicy>;
  keepAliveSeconds?: number;
  maxPacketSize?: number;
  /** Sent as the username's ClientVersion. */
  clientVersion?: string;
}

export interface RegisterPorts {
  connect: Connect;
  clock: Clock;
  log?: Log;
  random?: Random;
}

export interface RegistrationResult {
  registrationId: string;
  assignedHub: string;
  deviceId: string;
  operationId: string;
  substatus?: string;
  payload?: unknown;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
  etag?: string;
}

export const DEFAULT_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_SAS_TTL_SECONDS = 3600;
export const MAX_SAS_TTL_SECONDS = 86_400;
export const DEFAULT_RESPONSE_TIMEOUT_MS = 30_000;
const DEFAULT_BACKOFF: BackoffPolicy = { minMs: 1000, maxMs: 60_000, jitterMs: 1000 };

/** Register with DPS and poll until assigned. Resolves with the assignment or rejects with a ProvisioningError. */
export async function registerDevice(options: RegisterOptions, ports: RegisterPorts): Promise<RegistrationResult> {
  const registrationId = validateRegistrationId(options.registrationId);
  validateIdScope(options.idScope);
  const sasTtlSeconds = options.sasTtlSeconds ?? DEFAULT_SAS_TTL_SECONDS;
  if (!Number.isInteger(sasTtlSeconds) || sasTtlSeconds < 60 || sasTtlSeconds > MAX_SAS_TTL_SECONDS) {
    throw new ProvisioningError('invalid-input', `The SAS lifetime must be a whole number of seconds from 60 to ${MAX_SAS_TTL_SECONDS}`);
  }
  // The register request is the same on every attempt: built and measured once, before any traffic.
  const registerBody = registerRequestBody(registrationId, options.payload);
  const registerBytes = registerPacketBytes(registerBody);
  if (registerBytes > DPS_MAX_MESSAGE_BYTES) {
    throw new ProvisioningError(
      'invalid-input',
      `The registration request would be ${registerBytes} bytes, over DPS's limit of ${DPS_MAX_MESSAGE_BYTES} bytes (96 KB per message): send a smaller payload`,
    );
  }
  const session = new Session({ ...options, registrationId, sasTtlSeconds, registerBody, registerBytes }, ports);
  // Sign the first connection's token now: a malformed key is an input error before any traffic.
  session.password();
  try {
    return await session.run();
  } finally {
    session.close();
  }
}

type Inbox = { resolve: (event: MachineEvent) => void; rid: string } | undefined;

class Session {
  private client: MqttClient | undefined;
  private inbox: Inbox;
  private ridCounter = 0;
  private readonly ridPrefix: string;
  private connectAttempts = 0;
  /** Retries and reconnections so far: each wait that is not a poll is the next one. */
  private retries = 0;
  private readonly log: Log;
  private readonly random: Random;
  private readonly endpoint: Endpoint;
  /** The last token signed: the same expiry second gives the same token, so it is signed once. */
  private signed: { expiry: number; token: string } | undefined;

  constructor(
    private readonly options: RegisterOptions & {
      registrationId: string;
      sasTtlSeconds: number;
      registerBody: Uint8Array;
      registerBytes: number;
    },
    private readonly ports: RegisterPorts,
  ) {
    this.log = ports.log ?? (() => {});
    this.random = ports.random ?? Math.random;
    this.endpoint = options.endpoint ?? DPS_GLOBAL_ENDPOINT;
    this.ridPrefix = Math.floor(this.random() * 0x100000).toString(16);
  }

  async run(): Promise<RegistrationResult> {
    const { clock } = this.ports;
    const config = {
      deadline: clock.now() + (this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      defaultRetryAfterMs: this.options.defaultRetryAfterMs ?? 3000,
      backoff: { ...DEFAULT_BACKOFF, ...this.options.backoff },
      random: this.random,
      maxProtocolErrors: 3,
      registerRequestBytes: this.options.registerBytes,
    };
    let state = initialState();
    let event: MachineEvent = { type: 'start' };
    for (;;) {
      const next = step(state, event, clock.now(), config);
      state = next.state;
      const action = next.action;
      switch (action.type) {
        case 'done':
          // DPS echoes the registration ID it assigned (in any case): another device's assignment is not ours.
          if (action.registrationState.registrationId.toLowerCase() !== this.options.registrationId.toLowerCase()) {
            throw new ProvisioningError('protocol', 'DPS answered with the assignment of another registration ID');
          }
          this.log({ type: 'assigned', assignedHub: action.registrationState.assignedHub!, deviceId: action.registrationState.deviceId! });
          return toResult(action.registrationState, action.operationId);
        case 'fail':
          throw this.explain(action.error);
        case 'wait':
          this.log(
            action.reason === 'assigning'
              ? { type: 'assigning', operationId: action.operationId, attempt: action.poll, waitMs: action.ms }
              : { type: action.reason, reason: action.detail, attempt: ++this.retries, waitMs: action.ms },
          );
          await this.sleep(Math.min(action.ms, config.deadline - clock.now()));
          event = { type: 'waited' };
          break;
        case 'request':
          event = await this.request(action.phase, config.deadline);
          break;
      }
    }
  }

  close(): void {
    const client = this.client;
    this.client = undefined;
    client?.disconnect();
  }

  private async request(phase: Phase, deadline: number): Promise<MachineEvent> {
    const { clock } = this.ports;
    let client = this.client;
    let subscribed: Promise<number> | undefined;
    if (!client?.isOpen) {
      try {
        client = await this.connect(deadline);
      } catch (error) {
        return { type: 'connect-failed', error: asProvisioningError(error, 'network') };
      }
      // Pipelined: the request follows SUBSCRIBE without waiting for SUBACK (MQTT keeps order).
      subscribed = client.subscribe(RESPONSE_SUBSCRIBE_TOPIC, 1);
    }
    const rid = `${this.ridPrefix}.${++this.ridCounter}`;
    const answer = new Promise<MachineEvent>((resolve) => {
      this.inbox = { resolve, rid };
    });
    const cancelTimer = clock.setTimer(
      () => this.deliver({ type: 'lost', error: new ProvisioningError('network', 'DPS did not answer the request in time') }),
      Math.max(0, Math.min(this.options.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT_MS, deadline - clock.now())),
    );
    subscribed?.catch((error: unknown) => this.deliver({ type: 'connect-failed', error: asProvisioningError(error, 'failed') }));
    if (phase.type === 'register') {
      this.log({ type: 'registering', registrationId: this.options.registrationId });
      client.publish(registerTopic(rid), this.options.registerBody, 1).catch(() => {});
    } else {
      client.publish(pollTopic(rid, phase.operationId), new Uint8Array(0), 1).catch(() => {});
    }
    const event = await answer;
    cancelTimer();
    if (event.type !== 'response') this.close();
    return event;
  }

  /** The SAS token for a connection opened now (valid for sasTtlSeconds); none with X.509. */
  password(): string | undefined {
    const { idScope, registrationId, deviceKey, sasTtlSeconds } = this.options;
    if (deviceKey === undefined) return undefined;
    const expiry = Math.floor(this.ports.clock.now() / 1000) + sasTtlSeconds;
    if (this.signed?.expiry !== expiry)
      this.signed = { expiry, token: dpsRegistrationSasToken(idScope, registrationId, deviceKey, expiry) };
    return this.signed.token;
  }

  private async connect(deadline: number): Promise<MqttClient> {
    const { clock } = this.ports;
    const { idScope, registrationId } = this.options;
    this.connectAttempts++;
    this.log({ type: 'connecting', host: this.endpoint.host, port: this.endpoint.port, attempt: this.connectAttempts });
    let client: MqttClient | undefined;
    const password = this.password();
    client = await MqttClient.connect(this.ports.connect, this.endpoint, clock, {
      clientId: registrationId,
      username: dpsUsername(idScope, registrationId, this.options.clientVersion),
      ...(password !== undefined && { password }),
      // TLS + CONNACK get the same time as any request, and never outlast the deadline.
      connectTimeoutMs: Math.max(
        1,
        Math.min(this.options.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT_MS, deadline - clock.now(), 2 ** 31 - 1),
      ),
      ...(this.options.keepAliveSeconds !== undefined && { keepAliveSeconds: this.options.keepAliveSeconds }),
      ...(this.options.maxPacketSize !== undefined && { maxPacketSize: this.options.maxPacketSize }),
      onMessage: (topic, payload) => this.onMessage(topic, payload),
      onClose: (error) => {
        if (client === undefined || this.client !== client) return; // an earlier connection, or one that died while connecting
        this.client = undefined;
        this.deliver({ type: 'lost', error: error ?? new ProvisioningError('network', 'DPS closed the connection'), closed: true });
      },
    });
    if (!client.isOpen) throw new ProvisioningError('network', 'DPS closed the connection right after accepting it');
    this.client = client;
    this.log({ type: 'connected', host: this.endpoint.host, port: this.endpoint.port });
    return client;
  }

  private onMessage(topic: string, payload: Uint8Array): void {
    let event: MachineEvent;
    try {
      const parsed = parseResponseTopic(topic);
      // Not a DPS response, or an answer to some other request (stray or stale): ignore it.
      if (!parsed || parsed.rid === undefined || parsed.rid !== this.inbox?.rid) return;
      event = {
        type: 'response',
        status: parsed.status,
        retryAfterSeconds: parsed.retryAfterSeconds,
        response: parseResponseBody(parsed.status, payload),
      };
    } catch (error) {
      event = { type: 'lost', error: asProvisioningError(error, 'protocol') };
    }
    this.deliver(event);
  }

  private deliver(event: MachineEvent): void {
    const inbox = this.inbox;
    if (!inbox) return;
    this.inbox = undefined;
    inbox.resolve(event);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.ports.clock.setTimer(resolve, Math.max(0, ms)));
  }

  /**
   * DPS's advice on a refusal: CONNACK 2 means the client ID is not the registration ID; being
   * unauthorized is most often a wrong ID scope, registration ID or key, or a wrong clock (say what
   * the clock read).
   */
  private explain(error: ProvisioningError): ProvisioningError {
    const fromConnack = error.errorCode === undefined && error.status !== undefined && error.message.includes('CONNACK');
    let message: string;
    if (error.kind === 'invalid-input' && fromConnack && error.status === 2) {
      message = `${error.message}; for DPS it must be the registration ID`;
    } else if (error.kind === 'unauthorized' && this.options.deviceKey === undefined && !error.message.includes('certificate')) {
      const reads = new Date(this.ports.clock.now()).toISOString();
      message =
        `${error.message}; with X.509 attestation check that the device certificate's CN is the registration ID, ` +
        `that it or its chain matches an enrollment (its thumbprint, or a verified CA of an enrollment group) and ` +
        `that it is valid now: the device clock reads ${reads}`;
    } else if (error.kind === 'unauthorized' && !error.message.includes('clock reads')) {
      const reads = new Date(this.ports.clock.now()).toISOString();
      const check = fromConnack ? '; check the ID scope, registration ID and key' : '';
      message = `${error.message}${check}. The SAS token's expiry comes from the device clock, which reads ${reads}: if that is wrong, sync the clock`;
    } else {
      return error;
    }
    return error.rephrase(message);
  }
}

/** The register PUBLISH's size on the wire (with the longest request ID this client sends). */
function registerPacketBytes(body: Uint8Array): number {
  const topic = registerTopic('fffff.4294967295');
  return encodePacket({ type: 'publish', topic, payload: body, qos: 1, dup: false, retain: false, messageId: 1 }).length;
}

function toResult(state: RegistrationState, operationId: string): RegistrationResult {
  return {
    registrationId: state.registrationId,
    assignedHub: state.assignedHub!,
    deviceId: state.deviceId!,
    operationId,
    ...(state.substatus !== undefined && { substatus: state.substatus }),
    ...(state.payload !== undefined && { payload: state.payload }),
    ...(state.createdDateTimeUtc !== undefined && { createdDateTimeUtc: state.createdDateTimeUtc }),
    ...(state.lastUpdatedDateTimeUtc !== undefined && { lastUpdatedDateTimeUtc: state.lastUpdatedDateTimeUtc }),
    ...(state.etag !== undefined && { etag: state.etag }),
  };
}

function asProvisioningError(error: unknown, kind: 'network' | 'protocol' | 'failed'): ProvisioningError {
  if (isProvisioningError(error)) return error;
  return new ProvisioningError(kind, error instanceof Error ? error.message : String(error), { cause: error });
}
