// The core's Connect port on Moddable's SecureSocket (modules/crypt/securesocket): TLS 1.2 over
// the classic socket module, which resolves host names with the network's own DNS.
//
// - Trust: exactly one anchor, the "dps-ca" resource the manifest builds in ($(DPS_CA):
//   DigiCert Global Root G2 for Azure, or the local emulator's CA). DER is used in place from
//   flash; a PEM file (such as the emulator's ca.pem) is decoded once.
// - The server name (SNI and the certificate check) is the endpoint's host. Moddable's check
//   matches DNS names and IPv4 addresses in subjectAltName, and the validity dates against the
//   device clock, which must therefore be set first.
// - SecureSocket reports a failed handshake and a failed TCP connection alike (an error message);
//   a failure after the server's hello is reported as `tls`, before it as `network`.
// - Writes are queued and sent as the socket accepts them.
import SecureSocket from "securesocket";
import Resource from "Resource";
import Timer from "timer";
import { base64Decode } from "../../src/bytes.js";
import { ProvisioningError } from "../../src/errors.js";
import type { Connect, Connection, ConnectionHandlers, Endpoint } from "../../src/ports.js";

export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
const TLS_1_2 = 0x303;
/** Plaintext per TLS record written; TLS allows 16 KiB, smaller keeps RAM use low. */
const MAX_CHUNK = 2048;

// SecureSocket callback messages (modules/network/socket/socket.js).
const CONNECTED = 1;
const READABLE = 2;
const WRITABLE = 3;
const DISCONNECTED = -1;
const ERROR = -2;

/** SecureSocket as used here (its typings lack the no-argument write and the callback). */
interface TlsSocket {
	/** Bytes that can be written now (after TLS overhead). */
	write(): number;
	write(data: Uint8Array): void;
	read(type: typeof ArrayBuffer): ArrayBuffer;
	close(): void;
	callback: (message: number, value?: number) => void;
	/** The TLS session (modules/crypt/ssl/session_original.js): set while the socket is open. */
	ssl?: { serverRandom?: unknown; alert?: unknown };
}

export interface TlsConnectOptions {
	/** The trust anchor (DER). Default: the "dps-ca" resource. */
	trustAnchor?: ArrayBuffer | HostBuffer;
	connectTimeoutMs?: number;
	/** Trace the TLS handshake (the SDK's own tracing; verbose). */
	traceTls?: boolean;
}

export function createTlsConnect(options: TlsConnectOptions = {}): Connect {
	const trustAnchor = options.trustAnchor ?? loadTrustAnchor();
	const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
	return (endpoint, handlers) => open(endpoint, handlers, trustAnchor, timeoutMs, options.traceTls === true);
}

/** The "dps-ca" resource as DER: dps-ca.der in place, or the first certificate of dps-ca.pem. */
export function loadTrustAnchor(): ArrayBuffer | HostBuffer {
	if (Resource.exists("dps-ca.der")) return new Resource("dps-ca.der");
	if (Resource.exists("dps-ca.pem")) {
		const pem = String.fromArrayBuffer(new Resource("dps-ca.pem").slice(0));
		const body = /-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/.exec(pem)?.[1];
		if (body) return base64Decode(body.replace(/\s+/g, ""), "The dps-ca.pem certificate").slice().buffer;
	}
	throw new ProvisioningError("invalid-input", "This firmware has no trust anchor: build it with DPS_CA=<certificate .der or .pem>");
}

function open(endpoint: Endpoint, handlers: ConnectionHandlers, trustAnchor: ArrayBuffer | HostBuffer, timeoutMs: number, traceTls: boolean): Promise<Connection> {
	const where = `${endpoint.host}:${endpoint.port}`;
	return new Promise<Connection>((resolve, reject) => {
		let socket: TlsSocket | undefined;
		let state: "connecting" | "open" | "closed" = "connecting";
		const queue: Uint8Array[] = [];
		let timer: Timer | undefined;

		const connection: Connection = {
			write(data) {
				if (state !== "open") return;
				if (data.length) queue.push(data);
				flush();
			},
			close() {
				if (state === "closed") return;
				finish();
				handlers.onClose();
			},
		};

		const finish = () => {
			state = "closed";
			queue.length = 0;
			if (timer !== undefined) Timer.clear(timer);
			timer = undefined;
			try {
				socket?.close();
			} catch {
				// already closed by the socket module
			}
		};

		const fail = (error: ProvisioningError) => {
			if (state === "connecting") {
				finish();
				reject(error);
			} else if (state === "open") {
				finish();
				handlers.onClose(error);
			}
		};

		function flush(): void {
			while (state === "open" && queue.length) {
				const room = Math.min(socket!.write(), MAX_CHUNK);
				if (room <= 0) return; // WRITABLE follows when the socket has room again
				const head = queue[0]!;
				if (head.length <= room) {
					queue.shift();
					socket!.write(head);
				} else {
					queue[0] = head.subarray(room);
					socket!.write(head.subarray(0, room));
				}
			}
		}

		// Start from a job of its own: the core calls connect deep in its async chain, and setting
		// up the SDK's TLS session (parsing the anchor) needs more stack than is left there.
		Promise.resolve().then(start);

		function start(): void {
			let tls: TlsSocket;
			try {
				tls = socket = new SecureSocket({
					host: endpoint.host,
					port: endpoint.port,
					secure: { protocolVersion: TLS_1_2, certificate: trustAnchor, trace: traceTls },
				}) as unknown as TlsSocket;
			} catch (error) {
				// The session refuses an anchor that is not valid at the device's time.
				const message = error instanceof Error ? error.message : String(error);
				reject(new ProvisioningError("tls", `Cannot start TLS to ${where}: ${message}${clockHint()}`, { cause: error }));
				return;
			}
			timer = Timer.set(() => {
				timer = undefined;
				fail(new ProvisioningError("network", `Timed out after ${timeoutMs / 1000} s connecting to ${where} (TCP or TLS handshake)`));
			}, timeoutMs);

			tls.callback = (message, value) => {
				if (state === "closed") return;
				switch (message) {
					case CONNECTED:
						if (timer !== undefined) Timer.clear(timer);
						timer = undefined;
						state = "open";
						resolve(connection);
						flush();
						return;
					case READABLE: {
						if (state !== "open" || !value) return;
						const data = new Uint8Array(tls.read(ArrayBuffer));
						try {
							handlers.onData(data);
						} catch (error) {
							fail(new ProvisioningError("protocol", `Handling data from ${where} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
						}
						return;
					}
					case WRITABLE:
						flush();
						return;
					case DISCONNECTED:
					case ERROR:
					default:
						if (state === "open") {
							finish();
							// The peer closed (orderly) or the connection broke: the core tells the two apart by `error`.
							handlers.onClose(message === DISCONNECTED ? undefined : new ProvisioningError("network", `The connection to ${where} failed`));
						} else {
							fail(handshakeError(tls, where, message));
						}
				}
			};
		}
	});
}

/** Before the connection opened: a TLS failure once the server has said hello, a network failure before. */
function handshakeError(socket: TlsSocket, where: string, message: number): ProvisioningError {
	const ssl = socket.ssl;
	if (ssl && (ssl.serverRandom !== undefined || ssl.alert !== undefined)) {
		return new ProvisioningError(
			"tls",
			`The TLS handshake with ${where} failed: the server certificate is not trusted by this firmware's anchor (dps-ca), names another host, or is not valid at the device's time${clockHint()}`,
		);
	}
	const what = message === DISCONNECTED ? "closed the connection before TLS began" : "could not be reached";
	return new ProvisioningError("network", `${where} ${what}`);
}

function clockHint(): string {
	return ` (the device clock reads ${new Date().toISOString()})`;
}
