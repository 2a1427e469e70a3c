// The core's Store on Moddable's Preference (NVS on the ESP32, a JSON file in the simulator).
//
// A Preference.set is not atomic on the ESP32 (Moddable erases the key, then writes it) and
// several sets are never atomic together, so each record is written as a checked unit into the
// one of two slots that does not hold the current record:
//
//   slot "a" or "b", parts 0..n-1, Preference keys "<key>.<slot><part>" (NVS: at most 15 chars)
//   part 0 = header (26 bytes) + the first bytes of the value; parts 1.. = the following bytes
//   header = format (1) | part count (1) | sequence (u32) | value length (u32) | checksum (16)
//   checksum = the first 16 bytes of SHA-256(key, format, part count, sequence, length, value)
//
// A read takes the slot with the highest sequence whose checksum holds. A write that tore (power
// lost midway) leaves a slot that fails its checksum and is ignored, so the previous record is
// read: the old value or the new one, never a mix, as the Store port requires. A record with no
// valid slot at all reads as damaged (the core then provisions again); never as another record.
//
// A value under one of a key's Preference names that this store cannot have written (not bytes,
// or a part 0 that is not a format-1 header: another program's, or a newer firmware's) is never
// overwritten or deleted: set and delete refuse the key with a 'storage' error. A damaged record
// of this store (a torn write, a checksum mismatch) is overwritten as before.

import { sha256 } from "@noble/hashes/sha2.js";
import Preference from "preference";
import { utf8Decode, utf8Encode } from "../../src/bytes.js";
import { ProvisioningError } from "../../src/errors.js";
import type { Store } from "../../src/ports.js";

export const STORE_DOMAIN = "dps-state";
const FORMAT = 1;
/** The largest Preference value on the ESP32 (Moddable's Preference documentation: 4000 bytes). */
export const MAX_PART_BYTES = 4000;
export const MAX_PARTS = 8;
const HEADER_BYTES = 26;
const CHECKSUM_BYTES = 16;
const SLOTS = ["a", "b"] as const;
const NAME = /^[A-Za-z0-9_-]{1,12}$/;

type Slot = (typeof SLOTS)[number];

interface SlotRecord {
	slot: Slot;
	sequence: number;
	value: string;
}

export class PreferenceStore implements Store {
	readonly #domain: string;

	constructor(domain = STORE_DOMAIN) {
		if (domain.length === 0 || domain.length > 15) throw invalid(`The Preference domain "${domain}" must be 1 to 15 characters`);
		this.#domain = domain;
	}

	async get(key: string): Promise<string | undefined> {
		const { current, damaged } = this.#read(key);
		if (current) return current.value;
		if (damaged) throw new ProvisioningError("storage", `The stored "${key}" record is damaged (${damaged}); it is ignored`);
		return undefined;
	}

	async set(key: string, value: string): Promise<void> {
		const { current, highest } = this.#read(key);
		this.#checkOurs(key);
		const slot: Slot = current?.slot === "a" ? "b" : "a";
		const parts = encode(key, value, highest + 1);
		try {
			// Part 0 (the header) last: until it lands, the slot's old header no longer matches anyway.
			for (let i = parts.length - 1; i >= 0; i--) Preference.set(this.#domain, partKey(key, slot, i), parts[i]!);
			for (let i = parts.length; i < MAX_PARTS; i++) this.#remove(partKey(key, slot, i));
		} catch (error) {
			throw storageError(`Could not write "${key}" to Preference`, error);
		}
	}

	async delete(key: string): Promise<void> {
		checkName(key);
		this.#checkOurs(key);
		try {
			for (const slot of SLOTS) for (let i = 0; i < MAX_PARTS; i++) this.#remove(partKey(key, slot, i));
		} catch (error) {
			throw storageError(`Could not delete "${key}" from Preference`, error);
		}
	}

	/** The newest valid record, the highest sequence seen (valid or not), and why a present slot was refused. */
	#read(key: string): { current?: SlotRecord; highest: number; damaged?: string } {
		checkName(key);
		let current: SlotRecord | undefined;
		let highest = 0;
		let damaged: string | undefined;
		for (const slot of SLOTS) {
			let result: SlotRecord | string | undefined;
			try {
				result = this.#readSlot(key, slot);
			} catch (error) {
				throw storageError(`Could not read "${key}" from Preference`, error);
			}
			if (typeof result === "string") {
				damaged ??= result;
				continue;
			}
			if (!result) continue;
			highest = Math.max(highest, result.sequence);
			if (!current || result.sequence > current.sequence) current = result;
		}
		return { ...(current && { current }), highest, ...(damaged && { damaged }) };
	}

	/** The slot's record; undefined when the slot is empty; a reason when it is there but unusable. */
	#readSlot(key: string, slot: Slot): SlotRecord | string | undefined {
		const first = this.#bytes(partKey(key, slot, 0));
		if (first === undefined) return undefined;
		if (first === null || first.length < HEADER_BYTES) return "a part is not a record";
		const view = new DataView(first.buffer, first.byteOffset, first.byteLength);
		const format = first[0]!;
		const count = first[1]!;
		const sequence = view.getUint32(2);
		const length = view.getUint32(6);
		if (format !== FORMAT) return `format ${format}, not ${FORMAT}`;
		if (count < 1 || count > MAX_PARTS || length > count * MAX_PART_BYTES) return "the header is inconsistent";
		const value = new Uint8Array(length);
		let filled = Math.min(length, first.length - HEADER_BYTES);
		value.set(first.subarray(HEADER_BYTES, HEADER_BYTES + filled));
		for (let i = 1; i < count; i++) {
			const part = this.#bytes(partKey(key, slot, i));
			if (!part || filled + part.length > length) return `part ${i} is missing or too long`;
			value.set(part, filled);
			filled += part.length;
		}
		if (filled !== length) return "the value is shorter than its header says";
		const expected = checksum(key, first.subarray(0, 10), value);
		for (let i = 0; i < CHECKSUM_BYTES; i++) if (first[10 + i] !== expected[i]) return "checksum mismatch";
		let text: string;
		try {
			text = utf8Decode(value);
		} catch {
			return "the value is not UTF-8";
		}
		return { slot, sequence, value: text };
	}

	/** Throws when a value under one of `key`'s Preference names is not this store's (see the top). */
	#checkOurs(key: string): void {
		let foreign: string | undefined;
		try {
			for (const slot of SLOTS) {
				for (let i = 0; i < MAX_PARTS && !foreign; i++) {
					const name = partKey(key, slot, i);
					const bytes = this.#bytes(name);
					if (bytes === null) foreign = `${name} is not bytes`;
					else if (i === 0 && bytes && (bytes.length < HEADER_BYTES || bytes[0] !== FORMAT))
						foreign = `${name} is not a format ${FORMAT} record`;
				}
			}
		} catch (error) {
			throw storageError(`Could not read "${key}" from Preference`, error);
		}
		if (foreign)
			throw new ProvisioningError(
				"storage",
				`Preference "${this.#domain}" holds a value this store did not write (${foreign}); it is left untouched`,
			);
	}

	/** undefined: absent; null: present but not bytes. */
	#bytes(name: string): Uint8Array | null | undefined {
		const value = Preference.get(this.#domain, name);
		if (value === undefined) return undefined;
		return value instanceof ArrayBuffer ? new Uint8Array(value) : null;
	}

	#remove(name: string): void {
		if (Preference.get(this.#domain, name) !== undefined) Preference.delete(this.#domain, name);
	}
}

/** The value's parts, part 0 carrying the header. Deterministic: the same input gives the same bytes. */
export function encode(key: string, value: string, sequence: number): ArrayBuffer[] {
	const bytes = utf8Encode(value);
	const count = Math.max(1, Math.ceil((bytes.length + HEADER_BYTES) / MAX_PART_BYTES));
	if (count > MAX_PARTS) {
		throw new ProvisioningError(
			"storage",
			`The "${key}" record is ${bytes.length} bytes; Preference holds at most ${MAX_PARTS * MAX_PART_BYTES - HEADER_BYTES}`,
		);
	}
	const firstLength = Math.min(bytes.length, MAX_PART_BYTES - HEADER_BYTES);
	const first = new Uint8Array(HEADER_BYTES + firstLength);
	const view = new DataView(first.buffer);
	first[0] = FORMAT;
	first[1] = count;
	view.setUint32(2, sequence >>> 0);
	view.setUint32(6, bytes.length);
	first.set(checksum(key, first.subarray(0, 10), bytes), 10);
	first.set(bytes.subarray(0, firstLength), HEADER_BYTES);
	const parts = [first.buffer];
	for (let offset = firstLength; offset < bytes.length; offset += MAX_PART_BYTES) {
		parts.push(bytes.slice(offset, offset + MAX_PART_BYTES).buffer);
	}
	return parts;
}

function checksum(key: string, header: Uint8Array, value: Uint8Array): Uint8Array {
	const name = utf8Encode(key);
	const input = new Uint8Array(name.length + 1 + header.length + value.length);
	input.set(name);
	input.set(header, name.length + 1);
	input.set(value, name.length + 1 + header.length);
	return sha256(input).subarray(0, CHECKSUM_BYTES);
}

function partKey(key: string, slot: Slot, part: number): string {
	return `${key}.${slot}${part}`;
}

function checkName(key: string): void {
	if (!NAME.test(key))
		throw invalid(`The store key "${key}" must be 1 to 12 letters, digits, '-' or '_' (NVS names are at most 15 characters)`);
}

function storageError(what: string, error: unknown): ProvisioningError {
	if (error instanceof ProvisioningError) return error;
	return new ProvisioningError("storage", `${what}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

function invalid(message: string): ProvisioningError {
	return new ProvisioningError("invalid-input", message);
}
