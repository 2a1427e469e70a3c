// Peak memory over a stretch of work, for the boot trace (debug builds: the SDK compiles
// instrumentation out of release builds, where this does nothing).
//
// The SDK's counters are per interval: a debug build's instrumentation timer resets the stack
// peak and the GC count about once a second (xs/platforms/mc/xsHosts.c,
// modInstrumentMachineReset). So the watch samples them often and keeps the maxima and the sum of
// the GC counts; a peak reached in the few ms between a sample and a reset can be missed.
import Instrumentation from "instrumentation";
import Timer from "timer";

export interface MemoryPeaks {
	/** Bytes of slot heap and chunk heap in use now, and the most seen. */
	slotHeap: number;
	slotHeapPeak: number;
	chunkHeap: number;
	chunkHeapPeak: number;
	/** The deepest the XS stack went, in bytes (the manifest's creation.stack is in slots). */
	stackPeak: number;
	/** Garbage collections during the watch. */
	collections: number;
	/** How long the watch ran, in ms. */
	ms: number;
}

const SAMPLE_MS = 10;

/** Starts sampling; stop() returns the peaks, or undefined in a release build. */
export function watchMemory(): { stop(): MemoryPeaks | undefined } {
	const index = (name: Parameters<typeof Instrumentation.map>[0]) => Instrumentation.map(name);
	const stack = index("XS Stack Used");
	if (stack === undefined || Instrumentation.get(stack) === undefined) return { stop: () => undefined };
	const slot = index("XS Slot Heap Used");
	const chunk = index("XS Chunk Heap Used");
	const gc = index("XS Garbage Collection Count");
	const read = (what: number | undefined) => Instrumentation.get(what) ?? 0;
	const started = Date.now();
	let slotHeapPeak = 0;
	let chunkHeapPeak = 0;
	let stackPeak = 0;
	let collections = 0;
	let lastGc = read(gc);
	const sample = () => {
		slotHeapPeak = Math.max(slotHeapPeak, read(slot));
		chunkHeapPeak = Math.max(chunkHeapPeak, read(chunk));
		stackPeak = Math.max(stackPeak, read(stack));
		const count = read(gc);
		collections += count >= lastGc ? count - lastGc : count; // a reset since the last sample
		lastGc = count;
	};
	const timer = Timer.repeat(sample, SAMPLE_MS);
	return {
		stop() {
			sample();
			Timer.clear(timer);
			return {
				slotHeap: read(slot),
				slotHeapPeak,
				chunkHeap: read(chunk),
				chunkHeapPeak,
				stackPeak,
				collections,
				ms: Date.now() - started,
			};
		},
	};
}
