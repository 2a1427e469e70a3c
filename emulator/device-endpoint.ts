// The device endpoint: DPS's MQTT protocol (MQTT 3.1.1 over TLS) on aedes behind node:tls.
//
// - CONNECT is checked by auth.ts; any refusal is CONNACK 5 (not authorized). Wills are dropped.
//   TLS asks every client for a certificate, as DPS does, and lets it connect without one: a
//   certificate (and no password) is X.509 attestation, checked with the CONNECT (x509.ts).
// - SUBSCRIBE: only '$dps/registrations/res/#' is granted (QoS min(requested, 1)); any other
//   filter gets 0x80.
// - PUBLISH to the register or poll topic is answered on
//   '$dps/registrations/res/<status>/?$rid=<rid>[&retry-after=<n>]', to the requesting client only
//   (written to its connection, never through the broker's fan-out) and only once it has
//   subscribed to the response topic, as a broker would. A PUBLISH to any other topic, or a
//   register/poll topic without $rid, closes the connection: IoT Hub and DPS support only their
//   documented topics, and MQTT 3.1.1 §3.3.5 lets a server close the connection for a publish it
//   does not authorize. A QoS 2 publish closes the connection and a QoS 2 subscription is granted
//   QoS 1, IoT Hub's documented MQTT rules (MicrosoftDocs/azure-docs, iot-mqtt-connect-to-iot-hub.md).
// - One bad client never disturbs another: packets over `maxPacketBytes` close that connection
//   before they are buffered (packet-limit.ts); retained flags are cleared; handshakes and
//   CONNECTs time out; an unexpected exception while serving a request answers 500, and one
//   anywhere else in the handler closes only the client concerned.
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer } from 'node:tls';
import { Aedes, type Client, type PublishPacket } from 'aedes';
import { parseRequestTopic, type RequestTopic, responseTopic } from '../src/dps/server.js';
import { RESPONSE_SUBSCRIBE_TOPIC } from '../src/dps/topics.js';
import { type AuthFailure, authenticateDevice, type DeviceAttestation } from './auth.js';
import { DpsError, ErrorCodes, errorBody } from './dps-errors.js';
import { applyFault, type FaultAction, type FaultPlan, type FaultTarget, RawBody, statusFaultResponse } from './faults.js';
import type { HubEndpointEvent } from './iothub-service.js';
import type { DpsModel } from './model.js';
import { BoundedMqttStream } from './packet-limit.js';
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
  /** Stop listening, close every connection and the broker. */
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
  const sessions = new WeakMap<Client, DeviceAttestation>();
  const subscribed = new WeakSet<Client>();
  /** Every TCP connection, including those still in the TLS handshake, so close() ends them all. */
  const connections = new Set<Socket>();
  const socketOf = new WeakMap<object, Duplex>();
  /** The client certificates each connection presented in its TLS handshake, by the stream aedes knows it by. */
  const peers = new WeakMap<object, PeerCertificates>();
  const timers = new Set<NodeJS.Timeout>();
  /** Clients whose connection a connect fault closes right after CONNACK. */
  const hangUpAfterConnack = new WeakSet<Client>();
  /** The last answer given on each connection, for a replay fault. */
  const lastAnswer = new WeakMap<Client, { answer: RegistrationAnswer; rid: string }>();
  const timeoutMs = options.timeoutMs ?? 10_000;
  const responseQos = options.responseQos ?? 0;

  const broker = await Aedes.createBroker({
    connectTimeout: timeoutMs,
    heartbeatInterval: 60_000,
    queueLimit: 16,
    maxInflightInbound: 16,
    maxTopicLevels: 16,
    preConnect(_client, packet, callback) {
      (packet as { will?: unknown }).will = undefined;
      callback(null, true);
    },
    authenticate(client, username, password, done) {
      const result = authenticateDevice(
        options.model,
        options.idScope,
        client.id,
        username,
        password?.toString('utf8'),
        Math.floor(now() / 1000),
        peers.get(client.conn),
      );
      if (!result.ok) {
        emit({ type: 'refused', clientId: client.id, reason: result.reason });
        done(Object.assign(new Error('not authorized'), { returnCode: 5 as const }), false);
        return;
      }
      const { attestation } = result;
      const fault = options.faults.take('connect', attestation.registrationId);
      if (fault) emit({ type: 'fault', registrationId: attestation.registrationId, on: 'connect', action: fault.type });
      const accept = (): void => {
        sessions.set(client, attestation);
        emit({ type: 'connected', registrationId: attestation.registrationId });
        done(null, true);
      };
      faultIn('connect', fault, client, {
        proceed(how) {
          if (how?.hangUpAfterMs !== undefined) hangUpAfterConnack.add(client);
          accept();
        },
        refuse: (status) => done(Object.assign(new Error('refused by fault'), { returnCode: status.status as 2 | 3 | 4 | 5 }), false),
        drop() {
          socketOf.get(client.conn)?.destroy();
          done(Object.assign(new Error('dropped'), { returnCode: 3 as const }), false);
        },
      });
    },
    authorizeSubscribe(client, subscription, callback) {
      if (subscription.topic !== RESPONSE_SUBSCRIBE_TOPIC || !sessions.has(client)) {
        callback(null, null); // SUBACK 0x80 for this filter
        return;
      }
      const grant = (): void => {
        subscribed.add(client);
        callback(null, { ...subscription, qos: Math.min(subscription.qos, 1) as 0 | 1 });
      };
      const registrationId = sessions.get(client)!.registrationId;
      const fault = options.faults.take('subscribe', registrationId);
      if (fault) emit({ type: 'fault', registrationId, on: 'subscribe', action: fault.type });
      faultIn('subscribe', fault, client, {
        proceed: grant,
        refuse: () => callback(null, null), // SUBACK 0x80
        drop: () => socketOf.get(client.conn)?.destroy(),
      });
    },
    authorizePublish(client, packet, callback) {
      const session = client ? sessions.get(client) : undefined;
      let request: RequestTopic | undefined;
      try {
        request = parseRequestTopic(packet.topic);
      } catch {
        request = undefined;
      }
      if (!client || !session || !request) {
        callback(new Error('publish to an unsupported topic'));
        return;
      }
      if (packet.qos === 2) {
        callback(new Error('QoS 2 is not supported')); // as IoT Hub: the connection is closed
        return;
      }
      packet.retain = false;
      const payload = Buffer.from(packet.payload ?? []);
      const req = request;
      setImmediate(() => void handle(client, session, req, payload));
      callback(null);
    },
    authorizeForward(_client, packet) {
      return packet.topic.startsWith('$dps/registrations/res/') ? packet : null;
    },
  });
  broker.on('connackSent', (_packet, client) => {
    if (hangUpAfterConnack.has(client)) hangUp(client);
  });
  broker.on('clientError', (client, error) => emit({ type: 'closed-client', clientId: client.id, reason: error.message }));
  broker.on('connectionError', (client, error) => emit({ type: 'closed-client', clientId: client.id ?? '', reason: error.message }));

  async function handle(client: Client, session: DeviceAttestation, request: RequestTopic, payload: Buffer): Promise<void> {
    const registrationId = session.registrationId;
    try {
      if (socketOf.get(client.conn)?.destroyed) return; // the connection died (or a fault dropped it) meanwhile
      const fault = options.faults.take(request.type, registrationId);
      if (fault) emit({ type: 'fault', registrationId, on: request.type, action: fault.type });
      const answerNow = (): RegistrationAnswer => {
        let response: RegistrationAnswer;
        try {
          response =
            request.type === 'register' ? options.service.register(session, payload) : options.service.poll(session, request.operationId);
        } catch (error) {
          response = errorResponse(error);
        }
        emit({ type: 'request', registrationId, request: request.type, status: response.status });
        return response;
      };
      await applyFault(request.type, fault, {
        ...faultTarget(client),
        proceed(how) {
          const response = answerNow();
          const answers = how?.answers ?? 1;
          for (let i = 1; i < answers; i++) respond(client, response, request.rid);
          if (answers === 0) return;
          const hangUpAfterMs = how?.hangUpAfterMs;
          respond(
            client,
            response,
            request.rid,
            hangUpAfterMs === undefined ? undefined : () => later(hangUpAfterMs, () => hangUp(client)),
          );
        },
        refuse: (status) => respond(client, statusFaultResponse(status, new Date(now())), request.rid),
        drop: () => socketOf.get(client.conn)?.destroy(),
        wait: (ms) => new Promise<boolean>((resolve) => later(ms, () => resolve(!client.closed))),
        send: (answer, rid) => respond(client, answer, rid),
        previous: () => lastAnswer.get(client),
      });
    } catch (error) {
      // A bug of ours: answer 500 and close this client only.
      emit({ type: 'closed-client', clientId: client.id, reason: `internal error: ${(error as Error).message}` });
      socketOf.get(client.conn)?.destroy();
    }
  }

  /** What every trigger's target does alike: write raw bytes, wait, tell the time. */
  function faultTarget(client: Client): Pick<FaultTarget, 'writeRaw' | 'wait' | 'now'> {
    return {
      writeRaw: (fault) => writeRaw(client, fault),
      wait: (ms) => new Promise<boolean>((resolve) => later(ms, () => resolve(true))),
      now: () => new Date(now()),
    };
  }

  /** applyFault inside an aedes hook: a bug of ours closes this client only. */
  function faultIn(
    on: 'connect' | 'subscribe',
    fault: FaultAction | undefined,
    client: Client,
    target: Pick<FaultTarget, 'proceed' | 'refuse' | 'drop'>,
  ): void {
    applyFault(on, fault, { ...faultTarget(client), ...target }).catch((error: Error) => {
      emit({ type: 'closed-client', clientId: client.id, reason: `internal error: ${error.message}` });
      socketOf.get(client.conn)?.destroy();
    });
  }

  /** Close after what was written has gone out; read nothing more meanwhile. */
  function hangUp(client: Client): void {
    const socket = socketOf.get(client.conn);
    if (!socket || socket.destroyed) return;
    socket.pause();
    (client.conn as unknown as Duplex).end();
    later(2000, () => socket.destroy()); // a peer that never closes its side
  }

  /** A raw fault: bytes in order with aedes' own writes, then close or say nothing more. */
  function writeRaw(client: Client, fault: Extract<FaultAction, { type: 'raw' }>): void {
    const socket = socketOf.get(client.conn);
    if (!socket || socket.destroyed) return;
    (client.conn as unknown as Duplex).write(Buffer.from(fault.bytes.buffer, fault.bytes.byteOffset, fault.bytes.byteLength));
    if ((fault.then ?? 'close') === 'close') hangUp(client);
  }

  function errorResponse(error: unknown): RegistrationAnswer {
    if (error instanceof DpsError) return { status: error.status, body: errorBody(error.errorCode, error.message, new Date(now())) };
    return { status: 500, body: errorBody(ErrorCodes.internal, 'Internal error in the emulator', new Date(now())) };
  }

  function respond(client: Client, response: RegistrationAnswer, rid: string, then?: () => void): void {
    if (client.closed || !subscribed.has(client)) {
      then?.();
      return; // nobody listens: a broker would not deliver it either
    }
    lastAnswer.set(client, { answer: response, rid });
    const packet: PublishPacket = {
      cmd: 'publish',
      topic: responseTopic(response.status, rid, response.retryAfterSeconds),
      payload: Buffer.from(response.body instanceof RawBody ? response.body.text : JSON.stringify(response.body)),
      qos: responseQos,
      retain: false,
      dup: false,
    };
    client.publish(packet, () => then?.());
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
  server.on('connection', (raw: Socket) => {
    connections.add(raw);
    raw.on('close', () => connections.delete(raw));
  });
  function accept(socket: Duplex, _servername?: string | false, peer?: PeerCertificates): void {
    const stream = new BoundedMqttStream(socket, options.maxPacketBytes ?? 64 * 1024);
    socketOf.set(stream, socket);
    if (peer) peers.set(stream, peer);
    stream.on('error', () => {
      // reported through aedes' clientError; the connection is gone
    });
    broker.handle(stream);
  }
  server.on('secureConnection', (socket) => {
    socket.setNoDelay(true);
    accept(socket, socket.servername || false, peerCertificates(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port: address.port,
    accept,
    close() {
      closing ??= (async () => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const raw of connections) raw.destroy();
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        await serverClosed;
      })();
      return closing;
    },
  };
}
