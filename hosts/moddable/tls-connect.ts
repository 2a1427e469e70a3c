// The core's Connect port on Moddable's SecureSocket (modules/crypt/securesocket): TLS 1.2 over
// the classic socket module, which resolves host names with the network's own DNS.
//
// - Trust: the anchors of anchors.ts (the two Azure roots, or the factory's, or a development
//   build's), every one of them registered with the TLS session.
// - The server name (SNI and the certificate check) is the endpoint's host. Moddable's check
//   matches DNS names and IPv4 addresses in subjectAltName, and the validity dates against the
//   device clock, which must therefore be set first.
// - SecureSocket reports a failed handshake and a failed TCP connection alike (an error message);
//   a failure after the server's hello is reported as `tls`, before it as `network`.
// - Writes are queued and sent as the socket accepts them.

import SecureSocket from "securesocket";
import Timer from "timer";
import { ProvisioningError } from "../../src/errors.js";
import type { Connect, Connection, ConnectionHandlers, Endpoint } from "../../src/ports.js";
// A type only: anchors.ts reads Preference, which must not load with this preloaded module (its
// cache would be frozen at build time).
import type { TrustAnchor } from "./anchors.js";

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
	ssl?: {
		serverRandom?: unknown;
		/** Set when the handshake failed, by the peer's alert or by the SDK's own check (modules/crypt/ssl/ssl_alert.js). */
		alert?: { level?: number; description?: number };
		/** modules/crypt/ssl/ssl_cert.js: register() adds an anchor (refused outside its validity dates). */
		certificateManager?: { register(certificate: ArrayBuffer | HostBuffer): void };
	};
}

export interface TlsConnectOptions {
	/** The roots to trust (anchors.ts trustAnchors()). */
	trustAnchors: TrustAnchor[];
	connectTimeoutMs?: number;
	/** Trace the TLS handshake (the SDK's own tracing; verbose). */
	traceTls?: boolean;
	/**
	 * X.509 attestation: the certificate chain to present (DER, the device's first) and its PKCS#8
	 * private key (DER, RSA: the SDK's CertificateVerify signs with RSA keys only).
	 */
	clientCertificate?: { certificates: Uint8Array[]; key: Uint8Array };
}

export function createTlsConnect(options: TlsConnectOptions): Connect {
	const anchors = options.trustAnchors.map((anchor) => anchor.certificate);
	const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
	const client = options.clientCertificate && {
		clientCertificates: options.clientCertificate.certificates.map(toArrayBuffer),
		clientKey: toArrayBuffer(options.clientCertificate.key),
	};
	return (endpoint, handlers) => open(endpoint, handlers, anchors, timeoutMs, options.traceTls === true, client);
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
	return bytes.slice().buffer as ArrayBuffer; // a copy of its own: the view's buffer may hold more
}

function open(
	endpoint: Endpoint,
	handlers: ConnectionHandlers,
	anchors: (ArrayBuffer | HostBuffer)[],
	timeoutMs: number,
	traceTls: boolean,
	client: { clientCertificates: ArrayBuffer[]; clientKey: ArrayBuffer } | undefined,
): Promise<Connection> {
	const where = `${endpoint.host}:${endpoint.port}`;
	return new Promise<Connection>((resolve, reject) => {
		let socket: TlsSocket | undefined;
		let state: "connecting" | "open" | "closed" = "connecting";
		const queue: Uint8Array[] = [];
		let timer: Timer | undefined;

		const connection: Connection = {
			// Writes of one turn leave together, from a job queued behind them: the hub session's
			// CONNECT, SUBSCRIBEs and twin GET go out as one TLS record in one send(). Sent one by one,
			// a hub that refuses the CONNECT and closes while the rest is still being encrypted
			// turns the next send() into SIGPIPE, which kills the simulator (its socket module sends
			// without MSG_NOSIGNAL: see the host README). Fewer records cost less on a device too.
			write(data) {
				if (state !== "open" || !data.length) return;
				queue.push(data);
				if (queue.length === 1) Promise.resolve().then(flush);
			},
			close() {
				if (state === "closed") return;
				finish();
				handlers.onClose();
			},
		};

		// The connection is marked closed at once (nothing more is delivered or written), whichever
		// path ended it (errors, timeouts, DISCONNECT, the peer); SecureSocket is closed on a later
		// turn, never inside a socket callback, and its TCP socket when guardSocket() says.
		const finish = () => {
			state = "closed";
			queue.length = 0;
			if (timer !== undefined) Timer.clear(timer);
			timer = undefined;
			const closing = socket;
			socket = undefined;
			if (closing) later(() => closeQuietly(closing));
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
				socket!.write(take(queue, room));
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
					secure: { protocolVersion: TLS_1_2, certificate: anchors[0], trace: traceTls, ...client },
				}) as unknown as TlsSocket;
			} catch (error) {
				// The session refuses an anchor that is not valid at the device's time.
				const message = error instanceof Error ? error.message : String(error);
				reject(new ProvisioningError("tls", `Cannot start TLS to ${where}: ${message}${clockHint()}`, { cause: error }));
				return;
			}
			// The session takes one anchor as an option; its certificate manager registers the others.
			for (const extra of anchors.slice(1)) {
				try {
					tls.ssl?.certificateManager?.register(extra);
				} catch {
					// not valid at the device's time: not trusted (the first anchor's refusal is reported above)
				}
			}
			timer = Timer.set(() => {
				timer = undefined;
				fail(new ProvisioningError("network", `Timed out after ${timeoutMs / 1000} s connecting to ${where} (TCP or TLS handshake)`));
			}, timeoutMs);
			guardSocket(tls);

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
							fail(
								new ProvisioningError(
									"protocol",
									`Handling data from ${where} failed: ${error instanceof Error ? error.message : String(error)}`,
									{ cause: error },
								),
							);
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
							handlers.onClose(
								message === DISCONNECTED ? undefined : new ProvisioningError("network", `The connection to ${where} failed`),
							);
						} else {
							fail(handshakeError(tls, where, message));
						}
				}
			};
		}
	});
}

/** Up to `room` bytes from the head of `queue`, removed from it: whole writes joined, the last one split. */
function take(queue: Uint8Array[], room: number): Uint8Array {
	const head = queue[0]!;
	if (head.length >= room || queue.length === 1) {
		const part = head.length <= room ? head : head.subarray(0, room);
		if (part === head) queue.shift();
		else queue[0] = head.subarray(room);
		return part;
	}
	let size = 0;
	for (const data of queue) {
		size += data.length;
		if (size >= room) break;
	}
	const out = new Uint8Array(Math.min(size, room));
	let at = 0;
	while (at < out.length) {
		const data = queue[0]!;
		const n = Math.min(data.length, out.length - at);
		out.set(n === data.length ? data : data.subarray(0, n), at);
		at += n;
		if (n === data.length) queue.shift();
		else queue[0] = data.subarray(n);
	}
	return out;
}

/**
 * How long a closed connection's TCP socket waits for the peer to close its end before it is
 * closed anyway (see guardSocket()).
 */
export const PEER_CLOSE_WAIT_MS = 3_000;

/** Runs `task` on a later turn: never inside the socket callback that asked for it. */
function later(task: () => void): void {
	Timer.set(task, 1);
}

/**
 * When the TCP socket under SecureSocket is closed, and why not sooner.
 *
 * The simulator's socket module (modules/network/socket/lin/modSocket.c, SDK 8.2.3) polls its
 * sockets every 20 ms and queues a "readable" message per socket with data (or the peer's close)
 * waiting. The message holds a raw pointer to the native socket and no use count, and `close()`
 * frees that socket at once when no callback of it is on the stack. A message queued before the
 * close and delivered after it reads freed memory: valgrind shows it (`socketReadable` reading a
 * block freed by `xs_socket_close`), and the simulator died with SIGSEGV on DPS's refusals and
 * when a hub refused or dropped the device. A deferred close alone does not help: a message can be
 * queued between any close decision and the close, and `Timer.set(f, 0)` even runs ahead of the
 * queued messages (G_PRIORITY_HIGH, modules/base/timer/lin/timer.c).
 *
 * What is safe: once the module has read the peer's close, it marks the socket done, stops
 * polling it, and never frees it (its later `close()` throws "close on closed socket"). So a closed
 * connection's TCP socket stays open until the peer closes its end, which it does at once in every
 * case the core closes for (a refusal, its DISCONNECT, a protocol error), and is closed only then,
 * on a later turn; or after PEER_CLOSE_WAIT_MS of a silent peer, when nothing is queued unless data
 * arrives in that very millisecond. The rest is the SDK's to fix: a use count per queued message, as
 * its ESP32 module (modules/network/socket/lwip) has. There, waiting for the peer costs a socket for
 * a moment and nothing else.
 *
 * SecureSocket closes its TCP socket inside that socket's callback, when the peer closes or a record
 * fails to decode (modules/crypt/securesocket/securesocket.js: `this.close()` in `sock.callback`);
 * going through the same `close`, it gets the same treatment. The peer's close and an error reach
 * SecureSocket on a later turn.
 */
function guardSocket(tls: TlsSocket): void {
	const raw = (tls as unknown as { sock?: RawSocket }).sock;
	if (!raw) return;
	const close = raw.close;
	let peerClosed = false;
	let closing = false;
	let wait: Timer | undefined;
	const closeNow = () => {
		if (wait !== undefined) Timer.clear(wait);
		wait = undefined;
		later(() => closeQuietly({ close: () => close.call(raw) }));
	};
	// An own property: assigning would throw, the prototype being frozen in the preloaded module.
	Object.defineProperty(raw, "close", {
		value: () => {
			if (closing) return;
			closing = true;
			if (peerClosed) closeNow();
			else wait = Timer.set(closeNow, PEER_CLOSE_WAIT_MS);
		},
	});
	const inner = raw.callback;
	raw.callback = (message, value) => {
		if (message !== DISCONNECTED && message !== ERROR) return inner(message, value);
		peerClosed = true;
		if (closing) closeNow();
		later(() => {
			try {
				inner(message, value);
			} catch {
				// SecureSocket's close() of a socket the socket module has already closed
			}
		});
	};
}

interface RawSocket {
	callback: (message: number, value?: number) => void;
	close(): void;
}

function closeQuietly(socket: { close(): void }): void {
	try {
		socket.close();
	} catch {
		// already closed by the socket module
	}
}

/** Before the connection opened: a TLS failure once the server has said hello, a network failure before. */
function handshakeError(socket: TlsSocket, where: string, message: number): ProvisioningError {
	const ssl = socket.ssl;
	if (ssl && (ssl.serverRandom !== undefined || ssl.alert !== undefined)) {
		const alert = ssl.alert?.description;
		const named = alert === undefined ? undefined : ALERTS[alert];
		const why =
			alert === undefined || alert === 42 || alert === 45 || alert === 46 || alert === 48
				? `the server certificate is not trusted by this firmware's anchors, names another host, or is not valid at the device's time${clockHint()}`
				: `TLS alert ${alert}${named ? ` (${named})` : ""}${alert === 40 || alert === 51 ? ": if the device presents a certificate, is its key the certificate's, PKCS#8 and RSA?" : ""}`;
		return new ProvisioningError(
			"tls",
			`The TLS handshake with ${where} failed: ${why}${alert !== undefined && !why.startsWith("TLS alert") ? ` (TLS alert ${alert}${named ? `: ${named}` : ""})` : ""}`,
		);
	}
	const what = message === DISCONNECTED ? "closed the connection before TLS began" : "could not be reached";
	return new ProvisioningError("network", `${where} ${what}`);
}

/** TLS alert descriptions (RFC 5246 §7.2), the ones a handshake ends with. */
const ALERTS: Record<number, string> = {
	10: "unexpected_message",
	20: "bad_record_mac",
	40: "handshake_failure",
	42: "bad_certificate",
	43: "unsupported_certificate",
	44: "certificate_revoked",
	45: "certificate_expired",
	46: "certificate_unknown",
	47: "illegal_parameter",
	48: "unknown_ca",
	50: "decode_error",
	51: "decrypt_error",
	70: "protocol_version",
	71: "insufficient_security",
	80: "internal_error",
};

function clockHint(): string {
	return ` (the device clock reads ${new Date().toISOString()})`;
}
