// The web console in a real browser (Debian's Chromium through playwright-core), against an
// emulator started with the README's example config: what each page shows, that it shows no key
// until asked, and that a device provisioned with the CLI appears where DPS put it.
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../emulator/config-file.js';
import { chromiumMissing, launchBrowser, type TestBrowser } from './support/browser.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

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
    const run = await runCli([
      'register',
      '--id-scope',
      '0ne00DEMO01',
      '--endpoint',
      `127.0.0.1:${emulator.dps.endpoint.port}`,
      '--ca',
      emulator.dps.caPath,
      '--registration-id',
      'console-device-001',
      '--group-key',
      exampleGroupKey,
      '--json',
      '--quiet',
    ]);
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
});

describe.runIf(chromiumMissing !== undefined)('web console (no browser)', () => {
  it.skip(chromiumMissing ?? '', () => {});
});
