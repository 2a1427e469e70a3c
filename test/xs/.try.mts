import { runXs } from './harness.js';
const big = '/*' + 'x'.repeat(100000) + '*/ 1';
for (const lockdown of [false, true]) {
  const r = await runXs({ lockdown, scripts: ['1', big, 'issueCommand(new TextEncoder().encode(JSON.stringify(String(eval).slice(0,80))).buffer)'] });
  console.log(lockdown, r.scripts.map((s) => s.meterUsage.compute), JSON.stringify(r.messages));
}
