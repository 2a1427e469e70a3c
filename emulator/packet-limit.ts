// A guard between a TLS socket and an MQTT parser: it reads each MQTT packet's fixed header as
// the bytes pass and closes the connection as soon as a packet declares more than
// `maxPacketBytes` (or its remaining-length field is malformed), before the body is buffered.
// A parser would otherwise buffer any declared length (up to 256 MB) per client. The DPS
// endpoint's session (mqtt-session.ts) feeds the scanner itself; BoundedMqttStream puts it in
// front of the hubs' broker (aedes).
import { Duplex } from 'node:stream';

/** Incremental reader of MQTT fixed headers (MQTT 3.1.1 §2.2) over an arbitrary split of the stream. */
export class PacketSizeScanner {
  readonly #max: number;
  /** Bytes of the current packet's body still to skip. */
  #skip = 0;
  /** 0: expecting a packet type byte; 1..4: reading remaining length byte n. */
  #headerByte = 0;
  #length = 0;
  #multiplier = 1;

  constructor(maxPacketBytes: number) {
    this.#max = maxPacketBytes;
  }

  /** Returns an error message when the stream breaks the limit, otherwise undefined. */
  feed(chunk: Uint8Array): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        this.#skip -= n;
        i += n;
        continue;
      }
      const byte = chunk[i++]!;
      if (this.#headerByte === 0) {
        this.#headerByte = 1;
        this.#length = 0;
        this.#multiplier = 1;
        continue;
      }
      this.#length += (byte & 0x7f) * this.#multiplier;
      this.#multiplier *= 128;
      if (byte & 0x80) {
        this.#headerByte += 1;
        if (this.#headerByte > 4) return 'malformed remaining length';
        continue;
      }
      const total = 1 + this.#headerByte + this.#length;
      if (total > this.#max) return `a packet of ${total} bytes exceeds the limit of ${this.#max}`;
      this.#skip = this.#length;
      this.#headerByte = 0;
    }
    return undefined;
  }
}

/** The socket, seen through the scanner. Writes pass straight through. */
export class BoundedMqttStream extends Duplex {
  readonly #socket: Duplex;
  readonly #scanner: PacketSizeScanner;

  constructor(socket: Duplex, maxPacketBytes: number) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    this.#scanner = new PacketSizeScanner(maxPacketBytes);
    socket.on('data', (chunk: Buffer) => {
      const problem = this.#scanner.feed(chunk);
      if (problem) {
        this.destroy(new Error(`MQTT packet refused: ${problem}`));
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (error) => this.destroy(error));
    socket.on('close', () => this.destroy());
  }

  #flushScheduled = false;
  readonly #deferFlush = (): void => {
    setImmediate(this.#flush);
  };
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    this.uncork();
  };

  // What one turn of the event loop writes (a CONNACK; a SUBACK, a PUBACK and the answer
  // computed in a setImmediate) leaves as one TLS record, flushed in the loop's check phase.
  override write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    if (!this.#flushScheduled && !this.writableEnded && !this.destroyed) {
      this.#flushScheduled = true;
      this.cork();
      setImmediate(this.#deferFlush);
    }
    return (super.write as (...args: unknown[]) => boolean)(chunk, encoding, callback);
  }

  // aedes destroys the connection right after a refusing CONNACK (and after a DISCONNECT): what
  // waits for the flush leaves first, as it would have without it.
  override destroy(error?: Error): this {
    if (this.#flushScheduled && !this.destroyed) this.#flush();
    return super.destroy(error);
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this._writev([{ chunk }], callback);
  }

  // mqtt-packet corks this stream while it writes a packet in pieces (header, topic, payload):
  // on uncork they arrive here together and leave as one TLS record instead of two to four.
  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    if (this.#socket.destroyed) {
      callback();
      return;
    }
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map(({ chunk }) => chunk));
    this.#socket.write(data, (error) => callback(error ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#socket.destroy();
    callback(error);
  }
}
