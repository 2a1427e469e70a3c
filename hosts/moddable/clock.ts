// Time for the core: wall-clock milliseconds from Date.now() and one-shot timers from the timer
// module, plus the SNTP sync that must come before anything is signed (a SAS token's expiry is
// the device clock plus its lifetime; an ESP32 boots at 1970 until SNTP sets the clock).
import SNTP from "sntp";
import Time from "time";
import Timer from "timer";
import { ProvisioningError } from "../../src/errors.js";
import type { Clock } from "../../src/ports.js";

/** A clock that reads earlier than this has never been set (this code did not exist before). */
export const CLOCK_FLOOR = Date.UTC(2026, 0, 1);

export const clock: Clock = Object.freeze({
	now: () => Date.now(),
	setTimer(callback, ms) {
		let pending = true;
		const timer = Timer.set(
			() => {
				pending = false;
				callback();
			},
			Math.max(0, ms),
		);
		return () => {
			if (pending) Timer.clear(timer);
			pending = false;
		};
	},
});

export function sleep(ms: number): Promise<void> {
	return new Promise((resolve) => clock.setTimer(resolve, ms));
}

export interface ClockSync {
	/** The server that answered, or undefined when the device clock was kept. */
	server?: string;
	/** Why SNTP did not answer, when it did not (the device clock was plausible, so it was kept). */
	failure?: string;
}

/**
 * Ask the SNTP servers (in order) for the time and set the clock. When none answers, a clock
 * that reads a plausible time is kept (an RTC that survived a reset); one that does not is a
 * `network` error, since every token signed with it would be refused.
 */
export async function syncClock(servers: string[]): Promise<ClockSync> {
	let failure = "no SNTP server is configured";
	if (servers.length) {
		try {
			return { server: await askSntp(servers) };
		} catch (error) {
			failure = error instanceof Error ? error.message : String(error);
		}
	}
	if (Date.now() >= CLOCK_FLOOR) return { failure };
	throw new ProvisioningError(
		"network",
		`The clock is not set (it reads ${new Date().toISOString()}) and SNTP failed: ${failure}. Signing needs the correct time`,
	);
}

function askSntp(servers: string[]): Promise<string> {
	const queue = servers.slice();
	let server = queue.shift()!;
	const failures: string[] = [];
	return new Promise((resolve, reject) => {
		new SNTP({ host: server }, (message: number, value?: unknown) => {
			if (message === SNTP.time) {
				Time.set(value as number);
				resolve(server);
			} else if (message === SNTP.error) {
				failures.push(`${server}: ${String(value)}`);
				const next = queue.shift();
				if (next === undefined) {
					reject(new Error(failures.join("; ")));
					return;
				}
				server = next;
				return next as unknown as undefined; // the SNTP module tries the host its callback returns
			}
		});
	});
}
