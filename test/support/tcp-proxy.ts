// A loopback TCP proxy for faults below MQTT: it sits between a device and a TLS server and
// passes the (encrypted) bytes through, except where a plan tells it to cut the connection,
// stall it, or corrupt a TLS record. Each accepted connection gets its own plan, by index.
//
//   const proxy = await startTcpProxy(emulator.endpoint, (n) => (n === 0 ? { cutToDeviceAfter: 100 } : {}));
//   // the device connects to proxy.endpoint; its first connection dies mid-handshake
//
// Bytes are counted per direction from the start of the connection. A cut forwards exactly the
// given number of bytes (truncating the chunk that crosses it) and then destroys both sockets.
// A stall forwards nothing more in either direction and leaves the device's socket open and
// silent (the server side is closed): what a device sees when a NAT entry or a middlebox dies.
import net from 'node:net';

export interface ProxyPlan {
  /** Forward this many bytes server → device, then cut both sides (0: cut at once). */
  cutToDeviceAfter?: number;
  /** Forward this many bytes device → server, then cut both sides (0: cut before anything). */
  cutToServerAfter?: number;
  /** Forward this many bytes server → device, then stall (0: a server that never answers). */
  stallToDeviceAfter?: number;
  /**
   * Flip a bit in the first TLS application-data record (content type 23) the server sends after
   * the device has sent this many application-data records. With TLS 1.3: 0 is the server's
   * encrypted handshake; 2 the record after the device's Finished and its MQTT CONNECT (a session
   * ticket or CONNACK).
   */
  corruptAfterDeviceRecords?: number;
}

export interface TcpProxy {
  endpoint: { host: string; port: number };
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Stall every open connection now. */
  stallOpen(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(
  target: { host: string; port: number },
  planFor: (index: number) => ProxyPlan = () => ({}),
): Promise<TcpProxy> {
  const open = new Set<Link>();
  let accepted = 0;
  const server = net.createServer((device) => {
    const link = new Link(device, target, planFor(accepted++));
    open.add(link);
    device.once('close', () => open.delete(link));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    endpoint: { host: '127.0.0.1', port },
    get accepted() {
      return accepted;
    },
    stallOpen() {
      for (const link of open) link.stall();
    },
    close() {
      for (const link of open) link.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

class Link {
  #toDevice = 0;
  #toServer = 0;
  #stalled = false;
  #deviceRecords = new RecordCounter();
  #serverRecords = new RecordCounter();
  #corrupted = false;
  readonly #upstream: net.Socket;

  constructor(
    readonly device: net.Socket,
    target: { host: string; port: number },
    readonly plan: ProxyPlan,
  ) {
    device.on('error', () => {});
    this.#upstream = net.connect(target.port, target.host);
    this.#upstream.on('error', () => {});
    this.#upstream.on('close', () => {
      if (!this.#stalled) device.destroy();
    });
    device.on('close', () => this.#upstream.destroy());
    if (plan.cutToServerAfter === 0 || plan.cutToDeviceAfter === 0) {
      this.destroy();
      return;
    }
    if (plan.stallToDeviceAfter === 0) this.stall();
    device.on('data', (chunk: Buffer) => this.#fromDevice(chunk));
    this.#upstream.on('data', (chunk: Buffer) => this.#fromServer(chunk));
  }

  stall(): void {
    this.#stalled = true;
    this.#upstream.destroy();
  }

  destroy(): void {
    this.#upstream.destroy();
    this.device.destroy();
  }

  #fromDevice(chunk: Buffer): void {
    if (this.#stalled) return;
    this.#deviceRecords.feed(chunk);
    const limit = this.plan.cutToServerAfter;
    if (limit !== undefined && this.#toServer + chunk.length >= limit) {
      this.#upstream.write(chunk.subarray(0, limit - this.#toServer), () => this.destroy());
      this.#toServer = limit;
      return;
    }
    this.#toServer += chunk.length;
    this.#upstream.write(chunk);
  }

  #fromServer(chunk: Buffer): void {
    if (this.#stalled) return;
    const corruptAfter = this.plan.corruptAfterDeviceRecords;
    if (corruptAfter !== undefined && !this.#corrupted && this.#deviceRecords.applicationData >= corruptAfter) {
      const at = this.#serverRecords.nextApplicationDataByte(chunk);
      if (at !== undefined) {
        chunk = Buffer.from(chunk);
        chunk[at] = chunk[at]! ^ 0x01;
        this.#corrupted = true;
      }
    }
    this.#serverRecords.feed(chunk);
    const cut = this.plan.cutToDeviceAfter;
    const stall = this.plan.stallToDeviceAfter;
    const limit = Math.min(cut ?? Infinity, stall ?? Infinity);
    if (this.#toDevice + chunk.length >= limit) {
      const part = chunk.subarray(0, limit - this.#toDevice);
      this.#toDevice = limit;
      if (limit === cut) {
        this.device.write(part, () => this.destroy());
      } else {
        this.device.write(part);
        this.stall();
      }
      return;
    }
    this.#toDevice += chunk.length;
    this.device.write(chunk);
  }
}

/** Follows TLS record framing (5-byte header: type, version, length) across chunks. */
class RecordCounter {
  applicationData = 0;
  #header: number[] = [];
  #bodyLeft = 0;

  feed(chunk: Uint8Array): void {
    this.#walk(chunk, () => {});
  }

  /** Index in `chunk` of a body byte of the first application-data record starting in it, if any. */
  nextApplicationDataByte(chunk: Uint8Array): number | undefined {
    const copy = new RecordCounter();
    copy.applicationData = this.applicationData;
    copy.#header = [...this.#header];
    copy.#bodyLeft = this.#bodyLeft;
    let found: number | undefined;
    copy.#walk(chunk, (type, bodyStart) => {
      if (found === undefined && type === 23 && bodyStart < chunk.length) found = bodyStart;
    });
    return found;
  }

  #walk(chunk: Uint8Array, onRecord: (type: number, bodyStart: number) => void): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#bodyLeft > 0) {
        const n = Math.min(this.#bodyLeft, chunk.length - i);
        this.#bodyLeft -= n;
        i += n;
        continue;
      }
      this.#header.push(chunk[i++]!);
      if (this.#header.length < 5) continue;
      const [type, , , high, low] = this.#header as [number, number, number, number, number];
      this.#header = [];
      this.#bodyLeft = (high << 8) | low;
      if (type === 23) this.applicationData++;
      onRecord(type, i);
    }
  }
}
