// Reading an HTTP body of bounded size, for every side of the emulator and its clients that reads
// one: the service API's requests (service-http.ts), DPS's HTTPS device API (device-https.ts),
// the web console's forms (console/server.ts), the custom allocation webhook's answers
// (custom-allocation.ts) and the CLI's service client. A Node IncomingMessage and a fetch
// Response's body are both async iterables of bytes.

/** A body longer than its limit. */
export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  constructor(readonly maxBytes: number) {
    super(`the body exceeds ${maxBytes} bytes`);
  }
}

/**
 * The body, at most `maxBytes` of it; a longer one throws BodyTooLargeError. With
 * `drainBytes`, the rest is read and dropped up to that many bytes in all before throwing, so a
 * server can still answer (413) a client that is sending it; past it the reading stops (the
 * stream is destroyed). An error of the stream (a reset, an abort) is thrown as it is.
 */
export async function readBoundedBody(
  body: AsyncIterable<Uint8Array>,
  maxBytes: number,
  options: { drainBytes?: number } = {},
): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size <= maxBytes) chunks.push(chunk);
    else if (size > (options.drainBytes ?? 0)) break;
  }
  if (size > maxBytes) throw new BodyTooLargeError(maxBytes);
  return Buffer.concat(chunks);
}
