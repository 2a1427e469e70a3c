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

// These need no browser: plain HTTPS requests, as a page would send them.
describe('web console requests', () => {
  let emulator: TestEmulator;

  beforeAll(async () => {
    emulator = await startTestEmulator('console-csrf-', {
      idScope: '0ne00C0NS02',
      config: { iotHubs: [{ connectionString: HUB }] },
      serviceLimits: { headersTimeoutMs: 500, requestTimeoutMs: 1000 },
    });
  });

  afterAll(async () => {
    await emulator?.close();
  });

  /** One request to the console on 127.0.0.1 (a name of its certificate, so its Host too unless `headers` says otherwise). */
  const send = (method: string, path: string, options: { headers?: Record<string, string>; form?: Record<string, string> } = {}) => {
    const body = options.form && new URLSearchParams(options.form).toString();
    return new Promise<{ status: number; cookie: string | undefined; text: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: emulator.dps.console!.port,
          method,
          path,
          ca: emulator.dps.caPem,
          servername: 'localhost',
          agent: false,
          headers: { ...(body !== undefined && { 'content-type': 'application/x-www-form-urlencoded' }), ...options.headers },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, cookie: res.headers['set-cookie']?.[0]?.split(';')[0], text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  };

  it("refuses a change without the session's CSRF token, or from another site's page", async () => {
    const form = await send('GET', '/allocation-policy');
    const cookie = form.cookie!;
    const token = /<meta name="csrf-token" content="([^"]*)">/.exec(form.text)![1]!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    const post = (fields: Record<string, string>, headers: Record<string, string> = {}) =>
      send('POST', '/allocation-policy', { form: fields, headers: { cookie, ...headers } });

    const without = await post({ allocationPolicy: 'Static' });
    expect(without.status).toBe(403);
    expect(without.text).toContain('security token');
    const wrong = await post({ allocationPolicy: 'Static', _csrf: token.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) });
    expect(wrong.status).toBe(403);
    const elsewhere = await post({ allocationPolicy: 'Static', _csrf: token }, { origin: 'https://attacker.example' });
    expect(elsewhere.status).toBe(403);
    // The secret behind the copy button likewise
    const secret = await send('POST', '/connection-string', { headers: { cookie } });
    expect(secret.status).toBe(403);
    expect(secret.text).not.toContain(emulator.dps.service.key);
    expect(emulator.dps.model.allocationPolicy).toBe('hashed');

    const allowed = await post({ allocationPolicy: 'Static', _csrf: token });
    expect(allowed.status).toBe(303);
    expect(emulator.dps.model.allocationPolicy).toBe('static');
  });

  it('answers only to the names of its certificate (no DNS rebinding)', async () => {
    expect((await send('GET', '/', { headers: { host: 'attacker.example' } })).status).toBe(421);
  });

  it('keeps the bounds of the other HTTPS servers: headers that trickle are answered 408', async () => {
    const answer = await rawExchange(emulator.dps.console!.port, emulator.dps.caPem, 'GET / HTTP/1.1\r\nHost: localhost\r\n', {
      trickle: 'x',
      everyMs: 100,
    });
    expect(answer.text).toMatch(/^HTTP\/1\.1 408 /);
  });
});
