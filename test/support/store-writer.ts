// The child process of test/file-store-crash.test.ts (bundled and killed by crash-loop.ts):
// rewrites one record through the Node file store, alternating between two values, until it is
// killed. Prints 'ready' once the store is open, then 'w' after each completed set.
//   node store-writer.mjs <store file> <records file: a JSON array of the two values>
import { readFileSync } from 'node:fs';
import { createFileStore } from '../../hosts/node/file-store.js';

const [storePath, recordsPath] = process.argv.slice(2);
if (!storePath || !recordsPath) throw new Error('usage: store-writer <store file> <records file>');
const records = JSON.parse(readFileSync(recordsPath, 'utf8')) as [string, string];
const store = createFileStore(storePath);
// Start with the value the file does not hold, so the first write already changes it.
let next = (await store.get('assignment')) === records[0] ? 1 : 0;
process.stdout.write('ready\n');
for (;;) {
  await store.set('assignment', records[next]!);
  process.stdout.write('w\n');
  next = 1 - next;
}
