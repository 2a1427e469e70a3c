// Raw bytes to one of the emulator's HTTPS servers over TLS, and what comes back until the server
// closes: for requests no HTTP client sends (garbage, trickles, oversized heads).
import { connect as tlsConnect } from 'node:tls';

/**
 * Write `text` and collect the answer until the server closes (at most `waitMs`, default 5 s).
 * `trickle` is written every `everyMs` (default 100 ms) until then.
 */
export function rawExchange(
  port: number,
  ca: string,
  text: string,
  options: { trickle?: string; everyMs?: number; waitMs?: number } = {},
): Promise<{ text: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca }, () => {
      socket.write(text);
      if (options.trickle !== undefined) {
        const timer = setInterval(() => {
          if (socket.writable) socket.write(options.trickle!);
        }, options.everyMs ?? 100);
        socket.once('close', () => clearInterval(timer));
      }
    });
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('error', () => {
      // a reset after the answer: what was received counts
    });
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not close the connection; received: ${received.slice(0, 200)}`));
    }, options.waitMs ?? 5000);
    socket.on('close', () => {
      clearTimeout(guard);
      resolve({ text: received, ms: Date.now() - started });
    });
  });
}

/** The JSON body of a raw HTTP answer. */
export function rawJson(answer: { text: string }): any {
  return JSON.parse(answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4));
}
