// The child process of test/emulator-state-crash.test.ts (bundled and killed by crash-loop.ts):
// saves the emulator's state through its StateStore, the model alternating between two states,
// until it is killed. Prints 'ready' once the store is open, then 'w' after each save.
//   node state-writer.mjs <state file> <states file: a JSON array of the two model snapshots>
import { readFileSync } from 'node:fs';
import { DpsModel, type ModelSnapshot } from '../../emulator/model.js';
import { removeLeftovers, StateStore } from '../../emulator/state-store.js';

const [statePath, statesPath] = process.argv.slice(2);
if (!statePath || !statesPath) throw new Error('usage: state-writer <state file> <states file>');
const states = JSON.parse(readFileSync(statesPath, 'utf8')) as [ModelSnapshot, ModelSnapshot];
const model = new DpsModel();
const store = new StateStore(statePath, model, { idScope: '0ne00CRASH1', seed: { configFile: null, fingerprint: null } });
// As a start does (openState): temp files of killed writers go.
await removeLeftovers(statePath);
let next = 0;
process.stdout.write('ready\n');
for (;;) {
  model.restore(states[next]!);
  await store.save();
  process.stdout.write('w\n');
  next = 1 - next;
}
