// The child process of test/emulator-state-crash.test.ts (bundled and killed by crash-loop.ts):
// saves the emulator's state through its StateStore, the model alternating between two states,
// until it is killed. Prints 'ready' once the store is open, then 'w' after each save. The model
// moves from one state to the other as the emulator's would (every device's registration record
// saved again, its identity removed from one hub and created in the other), so that saves are
// journal lines, and the whole state written afresh whenever the journal outgrows it.
//   node state-writer.mjs <state file> <states file: a JSON array of the two model snapshots>
import { readFileSync } from 'node:fs';
import { DpsModel, type ModelSnapshot } from '../../emulator/model.js';
import { journalPath, removeLeftovers, StateStore } from '../../emulator/state-store.js';

const [statePath, statesPath] = process.argv.slice(2);
if (!statePath || !statesPath) throw new Error('usage: state-writer <state file> <states file>');
const states = JSON.parse(readFileSync(statesPath, 'utf8')) as [ModelSnapshot, ModelSnapshot];
const model = new DpsModel();
const store = new StateStore(statePath, model, { idScope: '0ne00CRASH1', seed: { configFile: null, fingerprint: null } });
// As a start does (openState): temp files of killed writers go.
await removeLeftovers(statePath);
await removeLeftovers(journalPath(statePath));
model.restore(states[0]!);
await store.save();
let next = 1;
process.stdout.write('ready\n');
for (;;) {
  const state = states[next]!;
  for (const record of state.registrations) model.saveRegistration(record);
  for (const hub of state.hubs) {
    const wanted = new Set(hub.devices.map((device) => device.deviceId));
    for (const device of model.hubDevices(hub.hostName))
      if (!wanted.has(device.deviceId)) model.removeHubDevice(hub.hostName, device.deviceId);
  }
  for (const hub of state.hubs) for (const device of hub.devices) model.upsertHubDevice(hub.hostName, device);
  await store.flush();
  process.stdout.write('w\n');
  next = 1 - next;
}
