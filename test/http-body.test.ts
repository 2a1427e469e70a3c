// The bounded body reader shared by the service API, the HTTPS device API, the custom allocation
// webhook's answers and the CLI's service client.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BodyTooLargeError, readBoundedBody } from '../emulator/http-body.js';

/** A body in the given chunks, counting how many of them were read. */
function body(chunks: Uint8Array[]): { stream: AsyncIterable<Uint8Array>; read: () => number } {
  let read = 0;
  async function* gen() {
    for (const chunk of chunks) {
      read++;
      yield chunk;
    }
  }
  return { stream: gen(), read: () => read };
}

const bytes = (n: number, fill = 0x61) => new Uint8Array(n).fill(fill);

describe('readBoundedBody', () => {
  it('returns the whole body up to the limit, in order', async () => {
    const { stream } = body([bytes(3, 0x61), bytes(2, 0x62)]);
    expect((await readBoundedBody(stream, 5)).toString('utf8')).toBe('aaabb');
    expect((await readBoundedBody(body([]).stream, 0)).length).toBe(0);
  });

  it('refuses a body one byte past the limit, and stops reading there without drainBytes', async () => {
    const b = body([bytes(5), bytes(1), bytes(100), bytes(100)]);
    const error = await readBoundedBody(b.stream, 5).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BodyTooLargeError);
    expect((error as BodyTooLargeError).maxBytes).toBe(5);
    expect(b.read()).toBe(2);
  });

  it('with drainBytes, reads and drops the rest up to that bound before refusing, then stops', async () => {
    const within = body([bytes(5), bytes(10), bytes(4)]);
    await expect(readBoundedBody(within.stream, 5, { drainBytes: 20 })).rejects.toBeInstanceOf(BodyTooLargeError);
    expect(within.read()).toBe(3); // all of it: 19 bytes ≤ 20
    const past = body([bytes(5), bytes(10), bytes(10), bytes(10)]);
    await expect(readBoundedBody(past.stream, 5, { drainBytes: 20 })).rejects.toBeInstanceOf(BodyTooLargeError);
    expect(past.read()).toBe(3); // 25 > 20: no further chunk is read
  });

  it("passes on the stream's own error", async () => {
    const broken = new Readable({ read() {} });
    const reading = readBoundedBody(broken, 100);
    broken.push(bytes(3));
    broken.destroy(new Error('connection reset'));
    await expect(reading).rejects.toThrow('connection reset');
  });
});
