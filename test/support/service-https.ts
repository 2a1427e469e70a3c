// Raw HTTPS calls to the emulator's service endpoint, signed like Microsoft's service SDK signs
// them (sr = the connection string's HostName, skn = provisioningserviceowner). `auth: null`
// sends no Authorization header; a string sends that header instead.
import { request } from 'node:https';
import type { DpsEmulator } from '../../emulator/index.js';
import { buildSasToken } from '../../src/sas.js';

export interface RawReply {
  status: number;
  headers: Record<string, unknown>;
  json: any;
}

export function serviceToken(emulator: DpsEmulator, ttlSeconds = 600): string {
  return buildSasToken({
    resource: `${emulator.service.endpoint.host}:${emulator.service.endpoint.port}`,
    key: emulator.service.key,
    keyName: 'provisioningserviceowner',
    expiry: Math.floor(Date.now() / 1000) + ttlSeconds,
  });
}

export function serviceCall(
  emulator: DpsEmulator,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; auth?: string | null } = {},
): Promise<RawReply> {
  const auth = options.auth === undefined ? serviceToken(emulator) : options.auth;
  const body = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: emulator.service.endpoint.host,
        port: emulator.service.endpoint.port,
        method,
        path,
        ca: emulator.caPem,
        agent: false,
        headers: {
          ...(auth !== null && { authorization: auth }),
          ...(body !== undefined && { 'content-type': 'application/json' }),
          ...options.headers,
        },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
