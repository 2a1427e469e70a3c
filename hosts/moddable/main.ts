// Boot: who am I (registration ID from the factory settings and the chip), what time is it
// (SNTP), where do I belong (a stored assignment that matches, or DPS), then go online: connect to
// the hub, and run the device (online.ts) until the hub turns it away or a method asks to
// provision again (then provision again), or the session ends.
// A failure is traced with its kind and retried with a growing wait; a configuration error stops
// the loop, since waiting will not fix it. Nothing secret is ever traced: the core's events and
// error messages carry no key, signature or token, and the settings are traced by source only.
//
// Every line starts with "dps: " or "hub: " (online.ts) and a word a test can match:
//   dps: boot <client version> <platform>
//   dps: settings idScope <scope> (<source>) key <group|device|x509> (<source>) endpoint <host:port> (<source>) transport <mqtt|mqtt-ws> (<source>)
//   dps: registration-id <id>
//   dps: warning the enrollment group key is on this device: use a derived device key in production
//   dps: warning <why Preference "dps"/"ca" was passed over>: using the build's anchors
//   dps: trust <anchor> sha256 <first 8 bytes, hex>[, <anchor> sha256 <...>]   (anchors.ts)
//   dps: clock <ISO time> sntp <server> | dps: clock <ISO time> device (<why SNTP did not answer>)
//   dps: connecting / connected / registering / assigning / retrying / reconnecting ...
//   dps: cached <hub> <deviceId>   (the stored assignment matched: DPS not contacted)
//   dps: assigned <hub> <deviceId> (DPS answered)
//   dps: stored <key> | dps: store-failed <message> | dps: store-unreadable <message>
//   dps: ready <hub> <deviceId> cached|provisioned [reprovisions <n>]   (provisioned and connected to the hub)
//   dps: reprovisioning <round> in <ms> ms: <why the hub turned the device away>
//   hub: connecting <host:port> attempt <n> | hub: connected | hub: disconnected ... (the session's events)
//   dps: memory slot-heap <bytes> peak <bytes> chunk-heap <bytes> peak <bytes> stack-peak <bytes> gc <n> in <ms> ms modules <n>   (debug builds)
//   dps: error <kind> <message>, then dps: retry <n> in <s> s | dps: stopped <why>

import { sha256 } from "@noble/hashes/sha2.js";
import Instrumentation from "instrumentation";
import config from "mc/config";
import { goOnline, type Online } from "../../src/device.js";
import { isProvisioningError } from "../../src/errors.js";
import { DEFAULT_HUB_SAS_TTL_SECONDS } from "../../src/hub/options.js";
import { shouldReprovision } from "../../src/hub/reprovision.js";
import type { HubEvent, ProvisioningEvent } from "../../src/ports.js";
import { resolveRegistrationId } from "../../src/provisioner.js";
import { printable } from "../../src/text.js";
import { trustAnchors } from "./anchors.js";
import { clock, sleep, syncClock } from "./clock.js";
import { macAddress, platform } from "./device.js";
import { type MemoryPeaks, watchMemory } from "./memory.js";
import { DeviceApp } from "./online.js";
import { PreferenceStore } from "./preference-store.js";
import { configNumber, DEFAULT_PORTS, parseEndpoint, readSettings } from "./settings.js";
import { createTlsConnect } from "./tls-connect.js";

export const CLIENT_VERSION = "moddable-dps/0.1.0";

export default function main(): void {
	boot().catch((error: unknown) => say(`stopped ${describe(error)}`));
}

/**
 * Provision (or find the stored assignment) and go online, retrying until it succeeds or the
 * settings are wrong; then run the device, and provision again whenever the hub turns it away.
 */
export async function boot(): Promise<void> {
	say(`boot ${CLIENT_VERSION} ${platform}`);
	const memory = watchMemory();
	let memoryTraced = false;
	const app = new DeviceApp((line) => trace(`hub: ${printable(line)}\n`), CLIENT_VERSION, configNumber("telemetryInterval", 60));
	const retryMinMs = configNumber("retryMin", 15) * 1000;
	const retryMaxMs = configNumber("retryMax", 1800) * 1000;
	let force = false;
	for (let attempt = 1; ; attempt++) {
		let online: Online;
		try {
			online = await onlineOnce(app, force);
		} catch (error) {
			const kind = isProvisioningError(error) ? error.kind : "internal";
			say(`error ${kind} ${describe(error)}`);
			if (kind === "invalid-input") {
				say('stopped: fix the settings (Preference "dps" or the build\'s config) and restart');
				return;
			}
			const waitMs = Math.min(retryMaxMs, retryMinMs * 2 ** Math.min(attempt - 1, 20)) + Math.random() * retryMinMs;
			say(`retry ${attempt} in ${Math.round(waitMs / 1000)} s`);
			await sleep(waitMs);
			continue;
		}
		attempt = 0;
		const { assignedHub, deviceId } = online.assignment;
		say(
			`ready ${assignedHub} ${deviceId} ${online.fromCache ? "cached" : "provisioned"}${online.reprovisions ? ` reprovisions ${online.reprovisions}` : ""}`,
		);
		if (!memoryTraced) {
			memoryTraced = true;
			traceMemory(memory.stop());
		}
		const end = await app.run(online.session, online.assignment);
		// Turned away by the hub, or asked by a method: DPS again (goOnline bounds the rounds).
		const error = end.reprovision ? undefined : end.error;
		force = end.reprovision || shouldReprovision(error);
		if (!force && !error) return;
	}
}

async function onlineOnce(app: DeviceApp, force: boolean): Promise<Online> {
	const settings = readSettings();
	const { sources } = settings;
	say(
		`settings idScope ${settings.idScope} (${sources.idScope}) key ${settings.x509 ? "x509" : settings.groupKey ? "group" : "device"} (${sources.key})` +
			` endpoint ${settings.endpoint.host}:${settings.endpoint.port} (${sources.endpoint}) transport ${settings.transport} (${sources.transport})`,
	);
	// Microsoft's symmetric-key attestation: derive each device's key at the factory; a device holding
	// the group key, once read out, enrolls any number of devices into the group.
	if (settings.groupKey) say("warning the enrollment group key is on this device: use a derived device key in production");
	const mac = macAddress();
	const registrationId = resolveRegistrationId({
		...(settings.registrationId && { registrationId: settings.registrationId }),
		registrationIdTemplate: settings.registrationIdTemplate,
		identity: { ...(settings.serial && { serial: settings.serial }), ...(mac && { mac }) },
	});
	say(`registration-id ${registrationId}`);

	const trust = trustAnchors();
	if (trust.warning) say(`warning ${trust.warning}`);
	say(
		`trust ${trust.anchors.map((a) => `${a.source} sha256 ${hex(sha256(new Uint8Array(a.certificate as ArrayBuffer)).subarray(0, 8))}`).join(", ")}`,
	);

	const sync = await syncClock(sntpServers());
	const now = new Date(clock.now()).toISOString();
	say(sync.server ? `clock ${now} sntp ${sync.server}` : `clock ${now} device (${sync.failure})`);

	const hubEndpoint = configText("hubEndpoint");
	const modelId = configText("modelId");
	const tls = createTlsConnect({
		trustAnchors: trust.anchors,
		// Development: the SDK's own trace of every TLS handshake (verbose; never a key).
		traceTls: configNumber("traceTls", 0) === 1,
		...(settings.x509 && { clientCertificate: settings.x509 }),
	});
	// MQTT over secure WebSockets: the core's WebSocket client (src/ws/) over the same TLS, loaded
	// only for that transport (its modules and SHA-1 cost a plain MQTT device RAM for nothing).
	const connect =
		settings.transport === "mqtt-ws" ? (await import("../../src/ws/client.js")).webSocketConnect(tls, { random: Math.random }) : tls;
	return goOnline(
		{
			idScope: settings.idScope,
			registrationId,
			...(settings.deviceKey && { deviceKey: settings.deviceKey }),
			...(settings.groupKey && { groupKey: settings.groupKey }),
			...(settings.x509 && { x509: true }),
			endpoint: settings.endpoint,
			timeoutMs: configNumber("provisioningTimeout", 300) * 1000,
			clientVersion: CLIENT_VERSION,
			...(force && { force }),
			// Development: the local emulator's hubs listen here; the credentials still name the hub.
			...(hubEndpoint && { hubEndpoint: parseEndpoint(hubEndpoint, DEFAULT_PORTS[settings.transport]) }),
			...(modelId && { modelId }),
			// The hub SAS token's lifetime (default an hour): the session reconnects with a fresh one at 80 %.
			session: {
				...app.settings(),
				sasTtlSeconds: configNumber("hubTokenTtl", DEFAULT_HUB_SAS_TTL_SECONDS),
				port: DEFAULT_PORTS[settings.transport],
			},
		},
		{
			connect,
			clock,
			store: new PreferenceStore(),
			log: (event) => say(describeEvent(event)),
			hubLog: (event) => trace(`hub: ${printable(describeHubEvent(event))}\n`),
			onEvent: (event) => say(`reprovisioning ${event.round} in ${event.waitMs} ms: ${event.reason}`),
		},
	);
}

function describeEvent(event: ProvisioningEvent): string {
	switch (event.type) {
		case "cached":
		case "assigned":
			return `${event.type} ${event.assignedHub} ${event.deviceId}`;
		case "connecting":
			return `connecting ${event.host}:${event.port} attempt ${event.attempt}`;
		case "connected":
			return `connected ${event.host}:${event.port}`;
		case "registering":
			return `registering ${event.registrationId}`;
		case "assigning":
			return `assigning ${event.operationId} poll ${event.attempt} wait ${event.waitMs} ms`;
		case "retrying":
		case "reconnecting":
			return `${event.type} attempt ${event.attempt} wait ${event.waitMs} ms: ${event.reason}`;
		case "stored":
			return `stored ${event.key}`;
		case "store-failed":
		case "store-unreadable":
			return `${event.type} ${event.message}`;
	}
}

function describeHubEvent(event: HubEvent): string {
	switch (event.type) {
		case "hub-connecting":
			return `connecting ${event.host}:${event.port} attempt ${event.attempt}`;
		case "hub-connected":
			return `connected ${event.host}:${event.port}`;
		case "hub-twin":
			return `twin desired ${event.desiredVersion} reported ${event.reportedVersion}`;
		case "hub-disconnected":
			return `disconnected attempt ${event.attempt} wait ${event.waitMs} ms: ${event.reason}`;
		case "hub-renewing":
			return `renewing token expiring ${new Date(event.expiresAt).toISOString()}`;
		case "hub-ignored":
			return `ignored ${event.reason}`;
		case "hub-desired":
		case "hub-reported":
			return `${event.type.slice(4)}-version ${event.version}`;
		case "hub-telemetry":
		case "hub-c2d":
			return `${event.type.slice(4)}-bytes ${event.bytes}`;
		case "hub-method":
			return `method-answered ${event.name} ${event.status}`;
	}
}

function configText(key: string): string | undefined {
	const value = (config as Record<string, unknown>)[key];
	return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
}

/** Debug builds only (instrumentation is compiled out of release builds): the XS memory in use, and its peaks since boot. */
function traceMemory(peaks: MemoryPeaks | undefined): void {
	if (!peaks) return;
	const modules = Instrumentation.get(Instrumentation.map("XS Modules Loaded"));
	say(
		`memory slot-heap ${peaks.slotHeap} peak ${peaks.slotHeapPeak} chunk-heap ${peaks.chunkHeap} peak ${peaks.chunkHeapPeak}` +
			` stack-peak ${peaks.stackPeak} gc ${peaks.collections} in ${peaks.ms} ms modules ${modules}`,
	);
}

function sntpServers(): string[] {
	const value = (config as Record<string, unknown>).sntp;
	return typeof value === "string"
		? value
				.split(",")
				.map((s) => s.trim())
				.filter((s) => s !== "")
		: [];
}

function hex(bytes: Uint8Array): string {
	let out = "";
	for (const byte of bytes) out += (byte < 16 ? "0" : "") + byte.toString(16);
	return out;
}

function describe(error: unknown): string {
	return error instanceof Error ? error.message : String(error);
}

/**
 * One trace line. Messages may quote DPS (a hub name, an error message): control characters are
 * shown escaped, so no line spans two and none drives the terminal a log is read on.
 */
function say(line: string): void {
	trace(`dps: ${printable(line)}\n`);
}
