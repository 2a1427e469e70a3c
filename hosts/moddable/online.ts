// What the device does once online: report who it is, send telemetry every telemetryInterval
// seconds (the twin's desired property, which the demo enrollment's initial twin sets), and answer
// direct methods. It runs until the session ends or a method asks it to provision again.
//
//   hub: online <hub> <deviceId> desired <version> interval <s>
//   hub: reported <version> | hub: telemetry <n> | hub: desired <version> interval <s>
//   hub: method <name> <status> | hub: ended <kind> <message> | hub: reprovision requested
import Timer from "timer";
import type { SessionSettings } from "../../src/device.js";
import type { ProvisioningError } from "../../src/errors.js";
import type { JsonObject } from "../../src/hub/messages.js";
import type { MethodResult } from "../../src/hub/methods.js";
import type { HubSession } from "../../src/hub/session.js";
import type { Assignment } from "../../src/provisioner.js";
import { restart } from "./restart.js";

/** How the session ended: a method asked to provision again, or the session's own end (undefined: closed). */
export type SessionEnd = { reprovision: true } | { reprovision: false; error: ProvisioningError | undefined };

const DEFAULT_INTERVAL_SECONDS = 60;
const MAX_INTERVAL_SECONDS = 86_400;

export class DeviceApp {
	readonly #trace: (line: string) => void;
	readonly #firmware: string;
	#intervalSeconds: number;
	#session: HubSession | undefined;
	#timer: Timer | undefined;
	#sent = 0;
	#reprovision: (() => void) | undefined;

	constructor(trace: (line: string) => void, firmware: string, intervalSeconds = DEFAULT_INTERVAL_SECONDS) {
		this.#trace = trace;
		this.#firmware = firmware;
		this.#intervalSeconds = intervalSeconds;
	}

	/** The handlers the hub session calls; given to goOnline before it connects. */
	settings(): SessionSettings {
		return {
			onDesired: (patch, version) => this.#desired(patch, version),
			onMethod: (name) => this.#method(name),
		};
	}

	/** Report, send telemetry until the session ends or a method asks to provision again. */
	async run(session: HubSession, assignment: Assignment): Promise<SessionEnd> {
		this.#session = session;
		this.#applyInterval(session.twin.desired);
		this.#trace(
			`online ${assignment.assignedHub} ${assignment.deviceId} desired ${session.twin.desired.$version} interval ${this.#intervalSeconds}`,
		);
		try {
			const version = await session.updateReported({
				firmware: this.#firmware,
				registrationId: assignment.registrationId,
				provisionedAt: assignment.provisionedAt,
			});
			this.#trace(`reported ${version}`);
		} catch (error) {
			this.#trace(`report-failed ${error instanceof Error ? error.message : String(error)}`);
		}
		this.#schedule(0);
		const asked = new Promise<SessionEnd>((resolve) => (this.#reprovision = () => resolve({ reprovision: true })));
		const ended = session.ended.then((error): SessionEnd => ({ reprovision: false, error }));
		const end = await Promise.race([asked, ended]);
		this.#stop();
		if (end.reprovision) {
			this.#trace("reprovision requested");
			session.close();
		} else if (end.error) {
			this.#trace(`ended ${end.error.kind} ${end.error.message}`);
		}
		return end;
	}

	#schedule(ms: number): void {
		if (this.#timer !== undefined) Timer.clear(this.#timer);
		this.#timer = Timer.set(() => {
			this.#timer = undefined;
			this.#send();
		}, ms);
	}

	#send(): void {
		const session = this.#session;
		if (!session) return;
		const seq = ++this.#sent;
		const body = JSON.stringify({ seq, uptime: Math.round(Date.now() / 1000) });
		session.sendTelemetry(body, { contentType: "application/json", contentEncoding: "utf-8" }).then(
			() => this.#trace(`telemetry ${seq}`),
			(error: unknown) => this.#trace(`telemetry-failed ${seq} ${error instanceof Error ? error.message : String(error)}`),
		);
		this.#schedule(this.#intervalSeconds * 1000);
	}

	#stop(): void {
		if (this.#timer !== undefined) Timer.clear(this.#timer);
		this.#timer = undefined;
		this.#session = undefined;
		this.#reprovision = undefined;
	}

	#desired(patch: JsonObject, version: number): void {
		const before = this.#intervalSeconds;
		this.#applyInterval(patch);
		this.#trace(`desired ${version} interval ${this.#intervalSeconds}`);
		if (this.#session && this.#intervalSeconds !== before) this.#schedule(this.#intervalSeconds * 1000);
	}

	#applyInterval(desired: JsonObject): void {
		const interval = desired.telemetryInterval;
		if (typeof interval === "number" && Number.isInteger(interval) && interval >= 1 && interval <= MAX_INTERVAL_SECONDS)
			this.#intervalSeconds = interval;
	}

	#method(name: string): MethodResult {
		if (name === "reprovision") {
			// Answer first: the session closes on a later turn, once the answer has left.
			Timer.set(() => this.#reprovision?.(), 200);
			this.#trace("method reprovision 200");
			return { status: 200, payload: { reprovisioning: true } };
		}
		if (name === "reboot") {
			if (!restart) {
				this.#trace("method reboot 501");
				return { status: 501, payload: { error: "rebooting is not supported by this firmware on this platform" } };
			}
			// Answer first, then leave the hub with a DISCONNECT, then restart: the next boot finds
			// the stored assignment and comes back online.
			const reboot = restart;
			Timer.set(() => {
				this.#session?.close();
				Timer.set(() => {
					this.#trace("rebooting");
					reboot();
				}, 300);
			}, 200);
			this.#trace("method reboot 200");
			return { status: 200, payload: { rebooting: true } };
		}
		this.#trace(`method ${name} 404`);
		return { status: 404, payload: { error: `no method ${name}` } };
	}
}
