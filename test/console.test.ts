// The web console in a real browser (Debian's Chromium through playwright-core), against an
// emulator started with the README's example config: what each page shows, that it shows no key
// until asked, and that a device provisioned with the CLI appears where DPS put it.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../emulator/config-file.js';
import { chromiumMissing, launchBrowser, SCREENSHOTS, type TestBrowser } from './support/browser.js';
import { registerWithCli, runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { serviceCall } from './support/service-https.js';

const EXAMPLE = new URL('../examples/emulator.json', import.meta.url).pathname;
const exampleGroupKey = (
  JSON.parse(readFileSync(EXAMPLE, 'utf8')) as { enrollmentGroups: Array<{ attestation: { symmetricKey: { primaryKey: string } } }> }
).enrollmentGroups[0]!.attestation.symmetricKey.primaryKey;

describe.skipIf(chromiumMissing !== undefined)('web console', () => {
  let emulator: TestEmulator;
  let browser: TestBrowser;
  let url: string;

  beforeAll(async () => {
    const { config } = await loadConfigFile(EXAMPLE);
    emulator = await startTestEmulator('console-', { idScope: '0ne00DEMO01', config, retryAfterSeconds: 1, assignmentDelayMs: 0 });
    url = emulator.dps.console!.url;
    browser = await launchBrowser();
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await emulator?.close();
  });

  it('is served over TLS with the emulator CA, on loopback, and its URL names this machine', async () => {
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
    const port = emulator.dps.console!.port;
    const authorized = await new Promise<boolean>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, ca: emulator.dps.caPem, servername: 'localhost' }, () => {
        resolve(socket.authorized);
        socket.end();
      });
      socket.on('error', reject);
    });
    expect(authorized).toBe(true);
  });

  it('overview: ID scope, endpoints, the mcconfig line, the CA; the connection string masked until shown', async () => {
    const { page } = browser;
    await page.goto(url);
    await expect(page.title()).resolves.toBe('Overview · DPS emulator');
    expect(await page.locator('#id-scope').textContent()).toBe('0ne00DEMO01');
    expect(await page.locator('#mcconfig').textContent()).toContain(`idScope=0ne00DEMO01 endpoint=127.0.0.1:${emulator.dps.endpoint.port}`);
    expect(await page.locator('#mcconfig').textContent()).toContain(`hubEndpoint=127.0.0.1:${emulator.dps.hubEndpoint.port}`);
    const key = emulator.dps.service.key;
    expect(await page.content()).not.toContain(key);
    expect(await page.locator('#connection-string').textContent()).toMatch(/SharedAccessKey=\*{4}$/);
    await browser.screenshot(page, 'overview');

    // The CA as a file
    const ca = await page.request.get(new URL('/ca.pem', url).href);
    expect(await ca.text()).toBe(emulator.dps.caPem);

    // Show: the whole connection string, as the CLI takes it
    await page.getByRole('button', { name: 'Show' }).click();
    expect(await page.locator('#connection-string').textContent()).toBe(emulator.dps.service.connectionString);
    await page.goto(url);
    expect(await page.content()).not.toContain(key);
  });

  it('hubs: a device provisioned with the CLI is listed in the hub DPS chose, with its twin, and no key', async () => {
    const run = await registerWithCli(emulator.dps, '0ne00DEMO01', 'console-device-001', exampleGroupKey, '--json', '--quiet');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const assignedHub = (JSON.parse(run.stdout) as { assignedHub: string }).assignedHub;

    const { page } = browser;
    await page.goto(new URL('/hubs', url).href);
    const section = page.locator(`section[data-hub="${assignedHub}"]`);
    const row = section.locator('tr[data-device="console-device-001"]');
    await expect(row.count()).resolves.toBe(1);
    expect(await row.textContent()).toContain('offline');
    await row.getByText('Twin').click();
    expect(await row.locator('pre').textContent()).toContain('"environment": "demo"');
    for (const other of emulator.dps.model.linkedHubs().filter((h) => h.hostName !== assignedHub)) {
      await expect(page.locator(`section[data-hub="${other.hostName}"] tr[data-device="console-device-001"]`).count()).resolves.toBe(0);
    }
    const authentication = emulator.dps.model.hubDevice(assignedHub, 'console-device-001')!.authentication;
    expect(authentication.type).toBe('sas');
    if (authentication.type === 'sas') expect(await page.content()).not.toContain(authentication.symmetricKey.primaryKey);
    await browser.screenshot(page, 'hubs');
  });

  it('linked hubs: an "out of date" badge once the key the link holds is renewed in the hub', async () => {
    const { page } = browser;
    await page.goto(new URL('/linked-hubs', url).href);
    expect(await page.locator('.badge', { hasText: 'out of date' }).count()).toBe(0);
    const renewed = await serviceCall(
      emulator.dps,
      'POST',
      '/hubs/demo-hub-2.azure-devices.net/policies/iothubowner/renew-key?key=primary',
    );
    expect(renewed.status).toBe(200);
    await page.reload();
    expect(await page.locator('tr[data-hub="demo-hub-2.azure-devices.net"] .badge').textContent()).toBe('out of date');
    expect(await page.locator('.badge', { hasText: 'out of date' }).count()).toBe(1);
  });
});

describe.skipIf(chromiumMissing !== undefined)("web console: the README's walkthrough", () => {
  let emulator: TestEmulator;
  let browser: TestBrowser;
  let url: string;
  const GROUP_KEY = randomBytes(32).toString('base64');
  const at = (path: string) => new URL(path, url).href;

  beforeAll(async () => {
    const { config } = await loadConfigFile(EXAMPLE);
    emulator = await startTestEmulator('console-walk-', {
      idScope: '0ne00DEMO01',
      config,
      region: 'westeurope',
      retryAfterSeconds: 1,
      assignmentDelayMs: 0,
    });
    url = emulator.dps.console!.url;
    browser = await launchBrowser();
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await emulator?.close();
  });

  const register = (registrationId: string) => registerWithCli(emulator.dps, '0ne00DEMO01', registrationId, GROUP_KEY, '--json', '--quiet');

  it('links a hub, with the errors of a bad weight and a bad connection string next to their fields', async () => {
    const { page } = browser;
    await page.goto(at('/linked-hubs'));
    const form = page.locator('form[action="/linked-hubs"]');
    const hub4 = `HostName=demo-hub-4.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${randomBytes(32).toString('base64')}`;

    // The CLI's own check, before any request
    await form.getByLabel('Connection string').fill(hub4);
    await form.getByLabel('Allocation weight').fill('five');
    await form.getByRole('button', { name: 'Link hub' }).click();
    expect(await page.locator('#f-allocationWeight-error').textContent()).toBe(
      'The allocation weight must be a whole number from 1 to 1000',
    );
    expect(await page.locator('#f-allocationWeight').getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#f-allocationWeight').getAttribute('aria-describedby')).toContain('f-allocationWeight-error');

    // The service API's refusal, next to the field it names
    await form.getByLabel('Connection string').fill(hub4);
    await form.getByLabel('Allocation weight').fill('0');
    await form.getByRole('button', { name: 'Link hub' }).click();
    expect(await page.locator('#f-allocationWeight-error').textContent()).toBe(
      'The allocationWeight of demo-hub-4.azure-devices.net must be a whole number from 1 to 1000, or null for 1; got 0',
    );
    await browser.screenshot(page, 'linked-hubs-error');
    expect(await page.content()).not.toContain(hub4.slice(-44)); // the hub's key is not sent back
    await form.getByLabel('Connection string').fill('HostName=demo-hub-4.azure-devices.net;SharedAccessKeyName=iothubowner');
    await form.getByLabel('Allocation weight').fill('5');
    await form.getByRole('button', { name: 'Link hub' }).click();
    expect(await page.locator('#f-connectionString-error').textContent()).toMatch(/SharedAccessKey/);
    expect(await page.locator('#f-allocationWeight-error').count()).toBe(0);

    await form.getByLabel('Connection string').fill(hub4);
    await form.getByLabel('Location', { exact: true }).fill('westus');
    await form.getByLabel('Allocation weight').fill('5');
    await form.getByRole('button', { name: 'Link hub' }).click();
    expect(await page.getByRole('status').textContent()).toBe('Linked demo-hub-4.azure-devices.net');
    const row = page.locator('tr[data-hub="demo-hub-4.azure-devices.net"]');
    expect(await row.locator('td').allTextContents()).toEqual(expect.arrayContaining(['westus', '5']));
    expect(emulator.dps.model.linkedHub('demo-hub-4.azure-devices.net')?.allocationWeight).toBe(5);
  });

  it('gives demo-hub-1 weight 3 and chooses the lowest-latency policy', async () => {
    const { page } = browser;
    await page.goto(at('/linked-hubs'));
    await page.locator('tr[data-hub="demo-hub-1.azure-devices.net"]').getByRole('link', { name: /Edit/ }).click();
    await page.getByLabel('Allocation weight').fill('3');
    await page.getByRole('button', { name: 'Save' }).click();
    expect(await page.locator('tr[data-hub="demo-hub-1.azure-devices.net"] td.num').first().textContent()).toBe('3');
    await browser.screenshot(page, 'linked-hubs');

    await page.getByRole('link', { name: 'Allocation policy' }).click();
    await page.getByLabel(/Lowest latency/).check();
    await page.getByRole('button', { name: 'Save' }).click();
    expect(await page.getByRole('status').textContent()).toBe('The allocation policy is now GeoLatency');
    expect(emulator.dps.model.allocationPolicy).toBe('geoLatency');
    await browser.screenshot(page, 'allocation-policy');
  });

  it('creates the line-2 group (a twin that is not JSON refused next to its field), its key hidden until shown', async () => {
    const { page } = browser;
    await page.goto(at('/enrollments'));
    await page.getByRole('link', { name: 'Add enrollment group' }).click();
    await page.getByLabel('Enrollment group ID').fill('line-2');
    await page.getByLabel('Primary key (optional)').fill(GROUP_KEY);
    await page.getByLabel('Initial twin (JSON)').fill('{"tags": {"line": 2}');
    await page.getByRole('button', { name: 'Save' }).click();
    expect(await page.locator('#f-initialTwin-error').textContent()).toBe('The initial twin is not valid JSON');
    expect(await page.content()).not.toContain(GROUP_KEY); // a key typed is not sent back
    await page.getByLabel('Primary key (optional)').fill(GROUP_KEY);
    await page.getByLabel('Initial twin (JSON)').fill('{"tags": {"line": 2}}');
    await page.getByRole('button', { name: 'Save' }).click();
    expect(await page.getByRole('status').textContent()).toBe('Created the enrollment group line-2');
    expect(await page.content()).not.toContain(GROUP_KEY);
    await browser.screenshot(page, 'enrollment-group');
    await page.getByRole('button', { name: 'Show keys' }).click();
    expect(await page.locator('[data-key="primary"]').textContent()).toBe(GROUP_KEY);
    await page.goto(at('/enrollments'));
    expect(await page.locator('tr[data-enrollment="line-2"]').count()).toBe(1);
    expect(await page.content()).not.toContain(GROUP_KEY);
    await browser.screenshot(page, 'enrollments');
  });

  it('shows the device the CLI provisions, live: the event, the chart, the hub, the registration record', async () => {
    const live = await browser.context.newPage();
    await live.goto(at('/live'));
    await live.locator('#stream-state', { hasText: 'live' }).waitFor();
    const hub3 = live.locator('#allocation-table tr[data-hub="demo-hub-3.azure-devices.net"] [data-devices]');
    expect(await hub3.textContent()).toBe('0');

    const run = await register('line2-device-001');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).assignedHub).toBe('demo-hub-3.azure-devices.net');
    // No reload: the stream brings the event and the chart
    await live.locator('#events li', { hasText: 'assigned line2-device-001 → demo-hub-3.azure-devices.net' }).waitFor();
    await live.locator('#allocation-table tr[data-hub="demo-hub-3.azure-devices.net"] [data-devices]', { hasText: '1' }).waitFor();
    await live.locator('[data-metric="assignments"]', { hasText: /^1$/ }).waitFor();
    await live.locator('[data-metric="registrations"]', { hasText: /^1$/ }).waitFor();

    // Back to hashed: a fleet of the group spreads over the hubs while the page watches
    const { page } = browser;
    await page.goto(at('/allocation-policy'));
    await page.getByLabel(/Evenly weighted/).check();
    await page.getByRole('button', { name: 'Save' }).click();
    const fleet = await runCli([
      'fleet',
      '--id-scope',
      '0ne00DEMO01',
      '--group-key',
      GROUP_KEY,
      '--count',
      '40',
      '--concurrency',
      '8',
      '--prefix',
      'line2-fleet-',
      '--endpoint',
      `127.0.0.1:${emulator.dps.endpoint.port}`,
      '--ca',
      emulator.dps.caPath,
      '--json',
    ]);
    expect(fleet.code).toBe(0);
    const counts = await Promise.all(emulator.dps.model.linkedHubs().map((h) => emulator.dps.model.hubDevices(h.hostName).length));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(41);
    for (const [i, hub] of emulator.dps.model.linkedHubs().entries()) {
      await live
        .locator(`#allocation-table tr[data-hub="${hub.hostName}"] [data-devices]`, { hasText: new RegExp(`^${counts[i]}$`) })
        .waitFor();
    }
    await browser.screenshot(live, 'live');
    await live
      .locator('#charts section')
      .first()
      .screenshot({ path: join(SCREENSHOTS, 'live-allocation.png') });
    await live.close();

    await page.goto(at('/hubs'));
    const device = page.locator('section[data-hub="demo-hub-3.azure-devices.net"] tr[data-device="line2-device-001"]');
    await device.getByText('Twin').click();
    expect(await device.locator('pre').textContent()).toContain('"line": 2');

    await page.goto(at('/enrollments/group/line-2'));
    const record = page.locator('tr[data-registration="line2-device-001"]');
    expect(await record.textContent()).toContain('demo-hub-3.azure-devices.net');
    page.once('dialog', (dialog) => void dialog.accept());
    await record.getByRole('button', { name: 'Delete record' }).click();
    expect(await page.getByRole('status').textContent()).toBe('Deleted the registration record of line2-device-001');
    expect(await page.locator('tr[data-registration="line2-device-001"]').count()).toBe(0);
    expect(emulator.dps.model.registration('line2-device-001')).toBeUndefined();
  });
});

describe.runIf(chromiumMissing !== undefined)('web console (no browser)', () => {
  it.skip(chromiumMissing ?? '', () => {});
});
