import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_DPS_PORT, jsonFlag, looksLikeSecret, parseEndpoint, readCaFile, readSecret } from '../cli/shared/args.js';
import { MAX_JSON_DEPTH } from '../src/dps/messages.js';
import { errorOf } from './support/errors.js';

const invalid = (run: () => unknown) => errorOf(run, 'invalid-input');

describe('parseEndpoint', () => {
  it.each([
    ['global.azure-devices-provisioning.net', 'global.azure-devices-provisioning.net', 8883],
    ['global.azure-devices-provisioning.net:8883', 'global.azure-devices-provisioning.net', 8883],
    ['localhost:18883', 'localhost', 18883],
    ['127.0.0.1:1', '127.0.0.1', 1],
    ['[::1]:65535', '::1', 65535],
    ['[::1]', '::1', 8883],
    ['::1', '::1', 8883],
    ['[2001:db8::7]:8884', '2001:db8::7', 8884],
    ['  dps.example.com  ', 'dps.example.com', 8883],
  ])('%s → %s port %d', (text, host, port) => {
    expect(parseEndpoint(text)).toEqual({ host, port });
  });

  it('uses the given default port', () => {
    expect(DEFAULT_DPS_PORT).toBe(8883);
    expect(parseEndpoint('emulator', 443)).toEqual({ host: 'emulator', port: 443 });
  });

  it.each([
    ['', /empty/],
    ['mqtts://global.azure-devices-provisioning.net', /scheme/],
    ['host:0', /port/],
    ['host:65536', /port/],
    ['host:88a', /port/],
    ['host:', /port/],
    ['host:+1', /port/],
    ['2001:db8::7:8883:x', /brackets/],
    ['[not-v6]:8883', /IPv6/],
    ['[::1]8883', /IPv6/],
    ['dps.example.com/path', /path/],
    ['bad_host!', /host name/],
    ['-leading.example', /host name/],
  ])('rejects %j', (text, why) => {
    expect(invalid(() => parseEndpoint(text)).message).toMatch(why);
  });

  it('never echoes something that may be a pasted connection string', () => {
    const secret = 'c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5MDE=';
    const error = invalid(() => parseEndpoint(`HostName=hub.azure-devices.net;SharedAccessKeyName=x;SharedAccessKey=${secret}`));
    expect(error.message).not.toContain(secret);
    expect(error.message).not.toContain('SharedAccessKey');
    expect(error.message).toMatch(/connection string/);
    const slash = invalid(() => parseEndpoint('abc/def+ghi'));
    expect(slash.message).not.toContain('abc/def');
  });
});

describe('readSecret', () => {
  const dir = mkdtempSync(join(tmpdir(), 'moddable-dps-args-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const key = 'Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=';

  it('returns the inline value, or undefined when neither is given', () => {
    expect(readSecret(key, undefined, '--key')).toBe(key);
    expect(readSecret(undefined, undefined, '--key')).toBeUndefined();
  });

  it('reads the key from a file, without the trailing newline, CRLF or BOM', () => {
    const plain = join(dir, 'plain.key');
    writeFileSync(plain, `${key}\n`);
    expect(readSecret(undefined, plain, '--key')).toBe(key);
    const windows = join(dir, 'windows.key');
    writeFileSync(windows, `\uFEFF${key}\r\n`);
    expect(readSecret(undefined, windows, '--key')).toBe(key);
  });

  it('reads only a regular file of bounded size: a FIFO nobody writes to, a device or a huge file is refused at once', () => {
    const fifo = join(dir, 'key.fifo');
    execFileSync('mkfifo', [fifo]);
    expect(invalid(() => readSecret(undefined, fifo, '--key')).message).toBe(
      'cannot read --key-file: not a regular file (a pipe, a socket or a device is not read)',
    );
    expect(invalid(() => readCaFile(fifo)).message).toMatch(/not a regular file/);
    expect(invalid(() => readSecret(undefined, '/dev/zero', '--key')).message).toMatch(/not a regular file/);
    const huge = join(dir, 'huge.key');
    writeFileSync(huge, 'A'.repeat(64 * 1024 + 1));
    expect(invalid(() => readSecret(undefined, huge, '--key')).message).toBe('cannot read --key-file: larger than 65536 bytes');
    expect(invalid(() => readSecret(undefined, dir, '--key')).message).toBe('cannot read --key-file: it is a directory');
  });

  it('refuses both forms at once', () => {
    const file = join(dir, 'both.key');
    writeFileSync(file, key);
    const error = invalid(() => readSecret(key, file, '--group-key'));
    expect(error.message).toMatch(/--group-key or --group-key-file, not both/);
    expect(error.message).not.toContain(key);
  });

  it('says why a file is unusable, naming the flag but never the path nor the content', () => {
    const missing = join(dir, 'missing.key');
    expect(invalid(() => readSecret(undefined, missing, '--key')).message).toBe('cannot read --key-file: no such file');

    const empty = join(dir, 'empty.key');
    writeFileSync(empty, ' \n');
    expect(invalid(() => readSecret(undefined, empty, '--key')).message).toBe('the --key-file file is empty');

    const twoLines = join(dir, 'two.key');
    writeFileSync(twoLines, `${key}\n${key}\n`);
    const error = invalid(() => readSecret(undefined, twoLines, '--key'));
    expect(error.message).toMatch(/more than one line/);
    expect(error.message).not.toContain(key);

    expect(invalid(() => readSecret(undefined, dir, '--key')).message).toMatch(/directory/);
    expect(invalid(() => readSecret(undefined, '', '--key')).message).toMatch(/needs a file name/);
  });

  it.each([
    ['a key', '--key', 'bXktZ3JvdXAta2V5LWJhc2U2NC0wMTIzNDU2Nzg5YWJjZGVm'],
    [
      'a connection string',
      '--service',
      'HostName=dps.example;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=c2VjcmV0LWtleS0wMTIzNDU2Nzg5YWJjZGVm',
    ],
    ['a SAS token', '--key', 'SharedAccessSignature sr=x&sig=c2VjcmV0&se=1'],
    ['a PEM block', '--key', '-----BEGIN PRIVATE KEY-----\nMIIB...\n-----END PRIVATE KEY-----'],
  ])('a secret typed where its file belongs is named as %s and never echoed', (looks, flag, secret) => {
    const error = invalid(() => readSecret(undefined, secret, flag));
    expect(error.message).toContain(`looks like ${looks}`);
    expect(error.message).toContain(`give it with ${flag}`);
    expect(error.message).not.toContain(secret);
    for (const part of secret.split(/[;&=\n ]/).filter((p) => p.length >= 8)) expect(error.message).not.toContain(part);
  });

  it('takes an ordinary path for what it is', () => {
    for (const path of ['device.key', './keys/dev-1.key', '/etc/moddable/group.key', 'C:\\keys\\dev.key', 'aaaaaaaaaaaaaaaaaaaaaaaa']) {
      expect(looksLikeSecret(path), path).toBeUndefined();
    }
  });
});

describe('readCaFile', () => {
  it('names an ordinary path, but not a secret pasted in its place', () => {
    const dir = mkdtempSync(join(tmpdir(), 'moddable-dps-ca-'));
    const missing = join(dir, 'missing-ca.pem');
    expect(invalid(() => readCaFile(missing)).message).toBe(`cannot read the CA certificate --ca ${missing}: no such file`);
    const token = 'SharedAccessSignature sr=x&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D&se=1';
    const error = invalid(() => readCaFile(token));
    expect(error.message).toMatch(/looks like a SAS token, not a path/);
    expect(error.message).not.toContain('c2VjcmV0');
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    expect(invalid(() => readCaFile(notPem)).message).toMatch(/holds no PEM certificate/);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('jsonFlag', () => {
  it('parses the value, undefined when not given', () => {
    expect(jsonFlag(undefined, '--payload')).toBeUndefined();
    expect(jsonFlag('{"interval": 5, "tags": [1, null]}', '--payload')).toEqual({ interval: 5, tags: [1, null] });
  });

  it('refuses what is not JSON, and JSON nested deeper than the core accepts', () => {
    expect(invalid(() => jsonFlag('{interval: 5}', '--payload')).message).toBe('--payload is not valid JSON');
    const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
    expect(jsonFlag(nested(MAX_JSON_DEPTH), '--payload')).toBeDefined();
    expect(invalid(() => jsonFlag(nested(MAX_JSON_DEPTH + 1), '--payload')).message).toBe(
      `--payload nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels, the limit`,
    );
  });
});
