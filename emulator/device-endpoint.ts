// The device endpoint: DPS's MQTT protocol (MQTT 3.1.1 over TLS) behind node:tls. DPS answers
// requests and routes nothing between devices, so each connection is an MQTT session of its own
// (mqtt-session.ts), with no broker.
//
// - CONNECT is checked by auth.ts; any refusal is CONNACK 5 (not authorized). Wills are ignored.
//   TLS asks every client for a certificate, as DPS does, and lets it connect without one: a
//   certificate (and no password) is X.509 attestation, checked with the CONNECT (x509.ts).
// - SUBSCRIBE: only '$dps/registrations/res/#' is granted (QoS min(requested, 1)); any other
//   filter gets 0x80.
// - PUBLISH to the register or poll topic is answered on
//   '$dps/registrations/res/<status>/?$rid=<rid>[&retry-after=<n>]', on the requesting device's
//   connection only, and only once it has subscribed to the response topic, as a broker would. A PUBLISH to any other topic, or a
//   register/poll topic without $rid, closes the connection: IoT Hub and DPS support only their
//   documented topics, and MQTT 3.1.1 §3.3.5 lets a server close the connection for a publish it
//   does not authorize. A QoS 2 publish closes the connection and a QoS 2 subscription is granted
//   QoS 1, IoT Hub's documented MQTT rules (MicrosoftDocs/azure-docs, iot-mqtt-connect-to-iot-hub.md).
// - One bad client never disturbs another: packets over `maxPacketBytes` close that connection
//   before they are buffered (packet-limit.ts); nothing a device sends is kept for another;
//   handshakes and CONNECTs time out; an unexpected exception while serving a request answers 500, and one
//   anywhere else in the handler closes only the client concerned.
import type { Duplex } from 'node:stream';
import { createServer } from 'node:tls';
import type { IConnectPacket, IPublishPacket, ISubscribePacket } from 'mqtt-packet';
import { parseRequestTopic, type RequestTopic, responseTopic } from '../src/dps/server.js';
import { RESPONSE_SUBSCRIBE_TOPIC } from '../src/dps/topics.js';
import { type AuthFailure, authenticateDevice, type DeviceAttestation } from './auth.js';
import { DpsError, ErrorCodes, errorBody } from './dps-errors.js';
import { applyFault, type FaultAction, type FaultPlan, type FaultTarget, RawBody, statusFaultResponse } from './faults.js';
import type { HubEndpointEvent } from './iothub-service.js';
import { listen } from './listen-address.js';
import type { DpsModel } from './model.js';
import { MqttSession } from './mqtt-session.js';
import type { RegistrationAnswer, RegistrationService } from './registrations.js';
import { type PeerCertificates, peerCertificates } from './x509.js';

/** What the emulator reports: the DPS endpoint's events and the IoT hubs' (iothub-service.ts). */
export type EndpointEvent =
  | HubEndpointEvent
  | { type: 'refused'; clientId: string; reason: AuthFailure | 'fault' }
  | { type: 'connected'; registrationId: string }
  | { type: 'request'; registrationId: string; request: RequestTopic['type']; status: number }
  | { type: 'fault'; registrationId: string; on: string; action: FaultAction['type'] }
  | { type: 'closed-client'; clientId: string; reason: string };

export interface DeviceEndpointOptions {
  idScope: string;
  model: DpsModel;
  service: RegistrationService;
  faults: FaultPlan;
  /** PEM server certificate (leaf) and key. */
  cert: string;
  key: string;
  host: string;
  /** 0 for an ephemeral port. */
  port: number;
  /** Largest inbound MQTT packet; default 64 KiB. */
  maxPacketBytes?: number;
  /** QoS of responses (at most the granted QoS); default 0, as DPS sends them. */
  responseQos?: 0 | 1;
  /** TLS handshake and MQTT CONNECT deadlines; default 10 s each. */
  timeoutMs?: number;
  onEvent?: (event: EndpointEvent) => void;
  now?: () => number;
}

export interface DeviceEndpoint {
  host: string;
  port: number;
  /**
   * A connection that reached DPS another way (MQTT over WebSockets: websocket.ts), from its first
   * byte of MQTT, with the client certificates its TLS connection presented.
   */
  accept(stream: Duplex, servername?: string | false, peer?: PeerCertificates): void;
  /** Stop listening and close every connection. */
  close(): Promise<void>;
}

export async function startDeviceEndpoint(options: DeviceEndpointOptions): Promise<DeviceEndpoint> {
  const now = options.now ?? Date.now;
  const emit = (event: EndpointEvent): void => {
    try {
      options.onEvent?.(event);
    } catch {
      // a listener's bug is not the device's problem
    }
  };
  /** Every MQTT connection, whichever way it came (TLS or WebSockets). */
  const clients = new Set<DpsClient>();
  const timers = new Set<NodeJS.Timeout>();
  const timeoutMs = options.timeoutMs ?? 10_000;
  const responseQos = options.responseQos ?? 0;
  const maxPacketBytes = options.maxPacketBytes ?? 64 * 1024;

  /** One device's connection: its session and what DPS knows of it. */
  class DpsClient {
    readonly session: MqttSession;
    clientId = '';
    attestation: DeviceAttestation | undefined;
    /** The QoS granted for the response topic; undefined until then (nothing is sent before). */
    granted: 0 | 1 | undefined;
    /** The last answer given, for a replay fault. */
    lastAnswer: { answer: RegistrationAnswer; rid: string } | undefined;

    constructor(
      stream: Duplex,
      readonly peer: PeerCertificates | undefined,
    ) {
      this.session = new MqttSession(stream, this, { maxPacketBytes, connectTimeoutMs: timeoutMs });
      clients.add(this);
    }

    connect(packet: IConnectPacket): void {
      this.clientId = packet.clientId;
      guarded(this, () => {
        const result = authenticateDevice(
          options.model,
          options.idScope,
          packet.clientId,
          packet.username,
          packet.password?.toString('utf8'),
          Math.floor(now() / 1000),
          this.peer,
        );
        if (!result.ok) {
          emit({ type: 'refused', clientId: packet.clientId, reason: result.reason });
          this.session.refuse(5); // not authorized
          return;
        }
        const { attestation } = result;
        const fault = options.faults.take('connect', attestation.registrationId);
        const accept = (): void => {
          this.attestation = attestation;
          emit({ type: 'connected', registrationId: attestation.registrationId });
          this.session.accept();
        };
        if (!fault) return accept();
        emit({ type: 'fault', registrationId: attestation.registrationId, on: 'connect', action: fault.type });
        return applyFault('connect', fault, {
          ...faultTarget(this),
          proceed: (how) => {
            accept();
            if (how?.hangUpAfterMs !== undefined) this.session.hangUp(); // a drop after CONNACK
          },
          refuse: (status) => this.session.refuse(status.status),
          drop: () => this.session.destroy(),
        });
      });
    }

    subscribe(packet: ISubscribePacket): void {
      guarded(this, () => {
        const granted: number[] = [];
        let fault: FaultAction | undefined;
        for (const { topic, qos } of packet.subscriptions) {
          if (topic !== RESPONSE_SUBSCRIBE_TOPIC) {
            granted.push(0x80); // SUBACK failure for this filter
            continue;
          }
          fault ??= options.faults.take('subscribe', this.registrationId);
          granted.push(Math.min(qos, 1));
        }
        const suback = (): void => {
          const qos = granted.find((code) => code !== 0x80);
          if (qos !== undefined) this.granted = qos as 0 | 1;
          this.session.send({ cmd: 'suback', messageId: packet.messageId, granted });
        };
        if (!fault) return suback();
        emit({ type: 'fault', registrationId: this.registrationId, on: 'subscribe', action: fault.type });
        return applyFault('subscribe', fault, {
          ...faultTarget(this),
          proceed: suback,
          refuse: () => this.session.send({ cmd: 'suback', messageId: packet.messageId, granted: granted.map(() => 0x80) }),
          drop: () => this.session.destroy(),
        });
      });
    }

    unsubscribe(packet: { unsubscriptions: string[] }): void {
      if (packet.unsubscriptions.includes(RESPONSE_SUBSCRIBE_TOPIC)) this.granted = undefined;
    }

    publish(packet: IPublishPacket): void {
      let request: RequestTopic | undefined;
      try {
        request = parseRequestTopic(packet.topic);
      } catch {
        request = undefined;
      }
      if (!request) {
        emit({ type: 'closed-client', clientId: this.clientId, reason: 'publish to an unsupported topic' });
        this.session.destroy();
        return;
      }
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      guarded(this, () => handle(this, request, payload));
    }

    error(reason: string): void {
      emit({ type: 'closed-client', clientId: this.clientId, reason });
    }

    closed(): void {
      clients.delete(this);
    }

    get registrationId(): string {
      return this.attestation?.registrationId ?? this.clientId;
    }
  }

  /** A bug of ours while serving a client closes that client only. */
  function guarded(client: DpsClient, run: () => void | Promise<void>): void {
    const failed = (error: unknown): void => {
      emit({ type: 'closed-client', clientId: client.clientId, reason: `internal error: ${(error as Error).message}` });
      client.session.destroy();
    };
    try {
      const done = run();
      if (done) done.catch(failed);
    } catch (error) {
      failed(error);
    }
  }

  function handle(client: DpsClient, request: RequestTopic, payload: Buffer): void | Promise<void> {
    const registrationId = client.registrationId;
    const answer = (): RegistrationAnswer => {
      let response: RegistrationAnswer;
      try {
        response =
          request.type === 'register'
            ? options.service.register(client.attestation!, payload)
            : options.service.poll(client.attestation!, request.operationId);
      } catch (error) {
        response = errorResponse(error);
      }
      emit({ type: 'request', registrationId, request: request.type, status: response.status });
      return response;
    };
    const fault = options.faults.take(request.type, registrationId);
    if (!fault) return respond(client, answer(), request.rid);
    emit({ type: 'fault', registrationId, on: request.type, action: fault.type });
    return applyFault(request.type, fault, {
      ...faultTarget(client),
      proceed(how) {
        const response = answer();
        const answers = how?.answers ?? 1;
        for (let i = 1; i < answers; i++) respond(client, response, request.rid);
        if (answers === 0) return;
        const hangUpAfterMs = how?.hangUpAfterMs;
        respond(
          client,
          response,
          request.rid,
          hangUpAfterMs === undefined ? undefined : () => later(hangUpAfterMs, () => client.session.hangUp()),
        );
      },
      refuse: (status) => respond(client, statusFaultResponse(status, new Date(now())), request.rid),
      drop: () => client.session.destroy(),
      wait: (ms) => new Promise<boolean>((resolve) => later(ms, () => resolve(!client.session.closed))),
      send: (answer, rid) => respond(client, answer, rid),
      previous: () => client.lastAnswer,
    });
  }

  /** What every trigger's target does alike: write raw bytes, wait, tell the time. */
  function faultTarget(client: DpsClient): Pick<FaultTarget, 'writeRaw' | 'wait' | 'now'> {
    return {
      writeRaw(fault) {
        client.session.sendRaw(fault.bytes);
        if ((fault.then ?? 'close') === 'close') client.session.hangUp();
      },
      wait: (ms) => new Promise<boolean>((resolve) => later(ms, () => resolve(true))),
      now: () => new Date(now()),
    };
  }

  function errorResponse(error: unknown): RegistrationAnswer {
    if (error instanceof DpsError) return { status: error.status, body: errorBody(error.errorCode, error.message, new Date(now())) };
    return { status: 500, body: errorBody(ErrorCodes.internal, 'Internal error in the emulator', new Date(now())) };
  }

  function respond(client: DpsClient, response: RegistrationAnswer, rid: string, then?: () => void): void {
    const qos = client.granted === undefined ? undefined : Math.min(client.granted, responseQos);
    if (client.session.closed || qos === undefined) {
      then?.();
      return; // nobody listens: a broker would not deliver it either
    }
    client.lastAnswer = { answer: response, rid };
    const topic = responseTopic(response.status, rid, response.retryAfterSeconds);
    const payload = Buffer.from(response.body instanceof RawBody ? response.body.text : JSON.stringify(response.body));
    client.session.send(
      qos === 1
        ? { cmd: 'publish', topic, payload, qos, retain: false, dup: false, messageId: client.session.messageId() }
        : { cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false },
      then,
    );
  }

  function later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      run();
    }, ms);
    timers.add(timer);
  }

  const server = createServer({
    cert: options.cert,
    key: options.key,
    minVersion: 'TLSv1.2',
    handshakeTimeout: timeoutMs,
    requestCert: true,
    rejectUnauthorized: false,
  });
  server.on('tlsClientError', () => {
    // An untrusting or broken client: its socket is closed by node:tls; nothing else to do.
  });
  function accept(stream: Duplex, _servername?: string | false, peer?: PeerCertificates): void {
    new DpsClient(stream, peer);
  }
  server.on('secureConnection', (socket) => {
    socket.setNoDelay(true);
    accept(socket, socket.servername || false, peerCertificates(socket));
  });
  const listening = await listen(server, options.port, options.host);
  return {
    host: options.host,
    port: listening.port,
    accept,
    close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const client of clients) client.session.destroy(); // those that came over WebSockets too
      return listening.close();
    },
  };
}
