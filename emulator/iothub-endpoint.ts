// The emulated IoT hubs' device endpoint: IoT Hub's MQTT device protocol (MQTT 3.1.1 over TLS) on
// aedes behind node:tls, one port for every emulated hub; the username names the hub
// (iothub-auth.ts). Source: MicrosoftDocs/azure-docs, iot-mqtt-connect-to-iot-hub.md.
//
// - CONNECT is checked against the hub's registry (iothub-auth.ts) and the SNI name (iothub-sni.ts,
//   which also picks a hub's own certificate); any refusal is CONNACK 5.
// - A device subscribes and publishes only its own topics (deviceTopic below): another filter gets
//   SUBACK 0x80, a publish elsewhere is dropped; both are logged. A QoS 2 publish closes the
//   connection and a QoS 2 subscription is granted QoS 1, as the doc says IoT Hub does.
// - A device deleted or disabled while connected (through the service side, or moved to another
//   hub by DPS) is disconnected: at once by the service side, at its next packet otherwise.
// - Twin GET and reported PATCH are answered on '$iothub/twin/res/<status>/?$rid=<rid>[&$version=n]'
//   once the device has subscribed to '$iothub/twin/res/#'; telemetry is PUBACKed and logged.
// - What the service side sends (desired updates, method calls, C2D) is written to the device's
//   own connection, never through the broker's fan-out. iothub-service.ts is that service side.
import type { Duplex } from 'node:stream';
import { createServer } from 'node:tls';
import { Aedes, type Client, type PublishPacket } from 'aedes';
import { authenticateHubDevice, type HubConnection } from './iothub-auth.js';
import { type HubEndpointEvent, IotHubService } from './iothub-service.js';
import { hubSniCallback, sniContradicts } from './iothub-sni.js';
import { parseJson, patchTwin, printable, twinDocument } from './iothub-twins.js';
import { listen } from './listen-address.js';
import type { DpsModel } from './model.js';
import { BoundedMqttStream } from './packet-limit.js';
import { type PeerCertificates, peerCertificates } from './x509.js';

export type { HubEndpointEvent } from './iothub-service.js';

export interface IotHubEndpointOptions {
  model: DpsModel;
  /** PEM server certificate chain and key. */
  cert: string;
  key: string;
  /** A PEM chain (leaf, CA) for `key` covering one emulated hub's host name, for devices that name it in SNI (iothub-sni.ts). */
  issueCertificate?: (hostName: string) => string;
  host: string;
  /** 0 for an ephemeral port. */
  port: number;
  /** Largest inbound MQTT packet; default 256 KiB + 1 KiB (IoT Hub's largest device-to-cloud message and its topic). */
  maxPacketBytes?: number;
  /** TLS handshake and MQTT CONNECT deadlines; default 10 s each. */
  timeoutMs?: number;
  onEvent?: (event: HubEndpointEvent) => void;
  now?: () => number;
}

export interface IotHubEndpoint {
  host: string;
  port: number;
  /** The service side: twins, device status, methods, C2D, telemetry. */
  hubs: IotHubService;
  /**
   * A connection that reached the hubs another way (MQTT over WebSockets: websocket.ts), from its
   * first byte of MQTT; `servername` is its TLS server name (false for none), checked as on this port.
   */
  accept(stream: Duplex, servername: string | false, peer?: PeerCertificates): void;
  close(): Promise<void>;
}

/** The topics a device may use, for its device ID; undefined for any other. */
function deviceTopic(topic: string, deviceId: string): 'telemetry' | 'twin-get' | 'twin-patch' | 'method-response' | undefined {
  if (topic.startsWith(`devices/${deviceId}/messages/events/`) || topic === `devices/${deviceId}/messages/events`) return 'telemetry';
  if (topic.startsWith('$iothub/twin/GET/?')) return 'twin-get';
  if (topic.startsWith('$iothub/twin/PATCH/properties/reported/?')) return 'twin-patch';
  if (/^\$iothub\/methods\/res\/\d{1,5}\/\?/.test(topic)) return 'method-response';
  return undefined;
}

const SUBSCRIBABLE = ['$iothub/twin/res/#', '$iothub/twin/PATCH/properties/desired/#', '$iothub/methods/POST/#'];

/** The $rid of a request topic; undefined when absent or unusable (then the request is dropped). */
function ridOf(topic: string): string | undefined {
  const query = topic.slice(topic.indexOf('?') + 1);
  for (const part of query.split('&')) {
    if (part.startsWith('$rid=')) {
      const rid = part.slice(5);
      return /^[A-Za-z0-9._~%:-]{1,128}$/.test(rid) ? rid : undefined;
    }
  }
  return undefined;
}

export async function startIotHubEndpoint(options: IotHubEndpointOptions): Promise<IotHubEndpoint> {
  const now = options.now ?? Date.now;
  const emit = (event: HubEndpointEvent): void => {
    try {
      options.onEvent?.(event);
    } catch {
      // a listener's bug is not the device's problem
    }
  };
  const model = options.model;
  const sessions = new WeakMap<Client, HubConnection>();
  /** The name each connection sent in SNI, by the stream aedes knows it by. */
  const serverNames = new WeakMap<object, string | false>();
  /** The client certificates each connection presented (X.509 devices), by the stream aedes knows it by. */
  const peers = new WeakMap<object, PeerCertificates>();
  const timeoutMs = options.timeoutMs ?? 10_000;
  const hubs = new IotHubService(model, emit, now);

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
      let result = authenticateHubDevice(
        model,
        client.id,
        username,
        password?.toString('utf8'),
        Math.floor(now() / 1000),
        peers.get(client.conn),
      );
      if (result.ok && sniContradicts(model, serverNames.get(client.conn), result.connection.hub))
        result = { ok: false, reason: 'sni', hub: result.connection.hub };
      if (!result.ok) {
        emit({
          type: 'hub-refused',
          clientId: printable(client.id),
          ...(result.hub !== undefined && { hub: result.hub }),
          reason: result.reason,
        });
        done(Object.assign(new Error('not authorized'), { returnCode: 5 as const }), false);
        return;
      }
      sessions.set(client, result.connection);
      hubs.attach(result.connection, client);
      done(null, true);
    },
    authorizeSubscribe(client, subscription, callback) {
      const session = sessions.get(client);
      const allowed = session && [...SUBSCRIBABLE, `devices/${session.deviceId}/messages/devicebound/#`].includes(subscription.topic);
      if (session && !stillRegistered(session)) {
        client.close();
        return;
      }
      if (!session || !allowed) {
        if (session) hubs.refusedTopic(session, 'subscribe', subscription.topic);
        callback(null, null); // SUBACK 0x80 for this filter
        return;
      }
      hubs.subscribed(client, subscription.topic);
      callback(null, { ...subscription, qos: Math.min(subscription.qos, 1) as 0 | 1 });
    },
    authorizePublish(client, packet, callback) {
      const session = client ? sessions.get(client) : undefined;
      if (!client || !session) {
        callback(new Error('not connected'));
        return;
      }
      if (packet.qos === 2) {
        callback(new Error('QoS 2 is not supported')); // as IoT Hub: the connection is closed
        return;
      }
      if (!stillRegistered(session)) {
        callback(new Error('the device was deleted or disabled')); // e.g. DPS moved it to another hub
        return;
      }
      const retained = packet.retain; // not kept: IoT Hub passes it on with the property mqtt-retain (iot-mqtt-connect-to-iot-hub.md)
      packet.retain = false;
      const kind = deviceTopic(packet.topic, session.deviceId);
      if (!kind) hubs.refusedTopic(session, 'publish', packet.topic);
      else {
        const payload = Buffer.from(packet.payload ?? []);
        const topic = packet.topic;
        setImmediate(() => handle(client, session, kind, topic, payload, retained));
      }
      callback(null); // acknowledged (PUBACK for QoS 1); forwarded to nobody (authorizeForward)
    },
    authorizeForward(client, packet) {
      const session = sessions.get(client);
      return session && hubs.mayReceive(session, packet.topic) ? packet : null;
    },
  });
  broker.on('unsubscribe', (topics, client) => {
    for (const topic of topics) hubs.unsubscribed(client, topic);
  });
  broker.on('clientDisconnect', (client) => {
    const session = sessions.get(client);
    if (session) hubs.detach(session, client);
  });
  broker.on('clientError', (client) => {
    const session = sessions.get(client);
    if (session) hubs.detach(session, client);
  });

  /** The device still exists in its hub, enabled (DPS may have moved it meanwhile). */
  function stillRegistered(session: HubConnection): boolean {
    const device = model.hubDevice(session.hub, session.deviceId);
    return device !== undefined && device.status !== 'disabled';
  }

  function handle(
    client: Client,
    session: HubConnection,
    kind: NonNullable<ReturnType<typeof deviceTopic>>,
    topic: string,
    payload: Buffer,
    retained: boolean,
  ): void {
    if (client.closed) return;
    if (kind === 'telemetry') {
      hubs.telemetryReceived(session, topic, payload, retained);
      return;
    }
    const rid = ridOf(topic);
    if (rid === undefined) {
      hubs.refusedTopic(session, 'publish', topic);
      return;
    }
    if (kind === 'method-response') {
      hubs.methodAnswered(session, Number(topic.split('/')[3]), rid, payload);
      return;
    }
    const device = model.hubDevice(session.hub, session.deviceId);
    if (!device) {
      respond(client, `$iothub/twin/res/404/?$rid=${rid}`, '');
      return;
    }
    if (kind === 'twin-get') {
      respond(client, `$iothub/twin/res/200/?$rid=${rid}`, twinDocument(device));
      return;
    }
    const result = patchTwin(device, 'reported', parseJson(payload));
    if ('error' in result) {
      emit({ type: 'hub-twin', hub: session.hub, deviceId: session.deviceId, request: 'reported', status: 400 });
      respond(client, `$iothub/twin/res/400/?$rid=${rid}`, JSON.stringify({ message: `Bad request: ${result.error}`, errorCode: 400004 }));
      return;
    }
    model.replaceHubDevice(session.hub, result.device);
    emit({ type: 'hub-twin', hub: session.hub, deviceId: session.deviceId, request: 'reported', status: 204, version: result.version });
    respond(client, `$iothub/twin/res/204/?$rid=${rid}&$version=${result.version}`, '');
  }

  function respond(client: Client, topic: string, body: string): void {
    if (!hubs.isSubscribed(client, '$iothub/twin/res/#')) return; // nobody listens: a broker would not deliver it
    const packet: PublishPacket = { cmd: 'publish', topic, payload: Buffer.from(body), qos: 0, retain: false, dup: false };
    client.publish(packet, () => {});
  }

  const server = createServer({
    cert: options.cert,
    key: options.key,
    minVersion: 'TLSv1.2',
    handshakeTimeout: timeoutMs,
    // As IoT Hub: every client is asked for a certificate (X.509 devices), none is required (SAS devices).
    requestCert: true,
    rejectUnauthorized: false,
    ...(options.issueCertificate && { SNICallback: hubSniCallback(model, options.key, options.issueCertificate) }),
  });
  server.on('tlsClientError', () => {
    // An untrusting or broken client: its socket is closed by node:tls.
  });
  function accept(socket: Duplex, servername: string | false, peer?: PeerCertificates): void {
    const stream = new BoundedMqttStream(socket, options.maxPacketBytes ?? 257 * 1024);
    serverNames.set(stream, servername);
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
  const listening = await listen(server, options.port, options.host);

  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port: listening.port,
    hubs,
    accept,
    close() {
      closing ??= (async () => {
        hubs.close();
        const serverClosed = listening.close();
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        await serverClosed;
      })();
      return closing;
    },
  };
}
