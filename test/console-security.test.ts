// Who may use the web console, and what a page from elsewhere can make it do: off loopback a
// sign-in with the service connection string (its cookie HttpOnly, Secure, SameSite=Strict);
// every POST refused without the session's CSRF token or with another site's Origin; a Host
// that does not name this machine refused; and the bounds of the other HTTPS servers.
import { randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumMissing, launchBrowser, type TestBrowser } from './support/browser.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { rawExchange } from './support/raw-tls.js';

const HUB = `HostName=hub-a.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${randomBytes(32).toString('base64')}`;

describe.skipIf(chromiumMissing !== undefined)('web console off loopback', () => {
  let emulator: TestEmulator;
  let browser: TestBrowser;
  let url: string;

  beforeAll(async () => {
    // Every address, as `--host 0.0.0.0` for an ESP32 on the LAN; the test dials loopback only.
    emulator = await startTestEmulator('console-host-', { idScope: '0ne00C0NS01', host: '0.0.0.0', hostNames: ['localhost'] });
    url = emulator.dps.console!.url;
    browser = await launchBrowser();
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await emulator?.close();
  });

  it('asks for the service connection string, refuses another key, and signs in with a strict cookie', async () => {
    const { page, context } = browser;
    expect(url).toMatch(/^https:\/\/localhost:\d+\/$/);
    await page.goto(url);
    expect(new URL(page.url()).pathname).toBe('/login');
    expect(await page.content()).not.toContain('0ne00C0NS01');
    for (const path of ['/linked-hubs', '/enrollments', '/hubs', '/live', '/ca.pem']) {
      const answer = await page.request.get(new URL(path, url).href, { maxRedirects: 0 });
      expect([answer.status(), answer.headers().location]).toEqual([303, '/login']);
    }
    await browser.screenshot(page, 'login');

    const other = emulator.dps.service.connectionString.replace(
      /SharedAccessKey=.*$/,
      `SharedAccessKey=${randomBytes(32).toString('base64')}`,
    );
    await page.getByLabel('Service connection string').fill(other);
    await page.getByRole('button', { name: 'Sign in' }).click();
    expect(await page.locator('#f-connectionString-error').textContent()).toBe(
      "This is not this emulator's service connection string: its key is refused",
    );
    expect(await page.content()).not.toContain(other.slice(-20));

    await page.getByLabel('Service connection string').fill(emulator.dps.service.connectionString);
    await page.getByRole('button', { name: 'Sign in' }).click();
    expect(new URL(page.url()).pathname).toBe('/');
    expect(await page.locator('#id-scope').textContent()).toBe('0ne00C0NS01');
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: '__Host-dps-console', httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });

    await page.getByRole('button', { name: 'Sign out' }).click();
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.goto(new URL('/enrollments', url).href);
    expect(new URL(page.url()).pathname).toBe('/login');
  });
});

describe.skipIf(chromiumMissing !== undefined)('web console requests', () => {
  let emulator: TestEmulator;
  let browser: TestBrowser;
  let url: string;

  beforeAll(async () => {
    emulator = await startTestEmulator('console-csrf-', {
      idScope: '0ne00C0NS02',
      config: { iotHubs: [{ connectionString: HUB }] },
      serviceLimits: { headersTimeoutMs: 500, requestTimeoutMs: 1000 },
    });
    url = emulator.dps.console!.url;
    browser = await launchBrowser();
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await emulator?.close();
  });

  it("refuses a change without the session's CSRF token, or from another site's page", async () => {
    const { page } = browser;
    await page.goto(new URL('/allocation-policy', url).href);
    const token = (await page.locator('meta[name="csrf-token"]').getAttribute('content'))!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    const post = (form: Record<string, string>, headers: Record<string, string> = {}) =>
      page.request.post(new URL('/allocation-policy', url).href, { form, headers, maxRedirects: 0 });

    const without = await post({ allocationPolicy: 'Static' });
    expect(without.status()).toBe(403);
    expect(await without.text()).toContain('security token');
    const wrong = await post({ allocationPolicy: 'Static', _csrf: token.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) });
    expect(wrong.status()).toBe(403);
    const elsewhere = await post({ allocationPolicy: 'Static', _csrf: token }, { origin: 'https://attacker.example' });
    expect(elsewhere.status()).toBe(403);
    // The secret behind the copy button likewise
    const secret = await page.request.post(new URL('/connection-string', url).href, { maxRedirects: 0 });
    expect(secret.status()).toBe(403);
    expect(await secret.text()).not.toContain(emulator.dps.service.key);
    expect(emulator.dps.model.allocationPolicy).toBe('hashed');

    const allowed = await post({ allocationPolicy: 'Static', _csrf: token });
    expect(allowed.status()).toBe(303);
    expect(emulator.dps.model.allocationPolicy).toBe('static');
  });

  it('answers only to the names of its certificate (no DNS rebinding)', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: emulator.dps.console!.port,
          path: '/',
          ca: emulator.dps.caPem,
          servername: 'localhost',
          headers: { host: 'attacker.example' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(421);
  });

  it('keeps the bounds of the other HTTPS servers: headers that trickle are answered 408', async () => {
    const answer = await rawExchange(emulator.dps.console!.port, emulator.dps.caPem, 'GET / HTTP/1.1\r\nHost: localhost\r\n', {
      trickle: 'x',
      everyMs: 100,
    });
    expect(answer.text).toMatch(/^HTTP\/1\.1 408 /);
  });
});
