// Letting Microsoft's service SDK (azure-iot-provisioning-service) reach the emulator.
//
// The SDK takes HostName from the connection string and hands it to https.request as `host`
// (azure-iot-http-base/dist/http.js, buildRequest), with no port: Node does not split
// '127.0.0.1:8443' into host and port, so the request fails with ENOTFOUND. Real DPS listens on
// 443, so the SDK never needed a port. This agent connects to the host and port named in `host`
// (IPv6 in brackets), checks the certificate against that host, and trusts the emulator's CA in
// addition to Node's roots. Hand it to the client's HTTP layer:
//
//   const client = ProvisioningServiceClient.fromConnectionString(dps.service.connectionString);
//   (client as any)._restApiClient.setOptions({ http: { agent: serviceClientAgent({ ca: dps.caPem }) } });
//
// `_restApiClient` is the SDK's private field; RestApiClient.setOptions passes `http.agent` to
// every request (azure-iot-http-base/dist/rest_api_client.js, http.js). The agent keeps no idle
// connections, so nothing is left open after a request.
import { Agent, type AgentOptions } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { type ConnectionOptions, connect, rootCertificates } from 'node:tls';

export interface ServiceClientAgentOptions {
  /** The emulator's CA certificate (PEM), trusted in addition to Node's root certificates. */
  ca?: string;
}

export function serviceClientAgent(options: ServiceClientAgentOptions = {}): Agent {
  return new HostPortAgent({ keepAlive: false, ...(options.ca ? { ca: [...rootCertificates, options.ca] } : {}) });
}

/** Split 'host:port' or '[v6]:port'; a plain host keeps `fallbackPort`. */
export function splitHostPort(text: string, fallbackPort: number): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] ? Number(bracketed[2]) : fallbackPort };
  const colon = text.lastIndexOf(':');
  if (colon > 0 && text.indexOf(':') === colon && /^\d{1,5}$/.test(text.slice(colon + 1))) {
    return { host: text.slice(0, colon), port: Number(text.slice(colon + 1)) };
  }
  return { host: text, port: fallbackPort };
}

class HostPortAgent extends Agent {
  constructor(options: AgentOptions) {
    super(options);
  }

  /** Node's Agent takes the returned socket (the callback is for agents that connect asynchronously). */
  override createConnection(options: ConnectionOptions & { host?: string; port?: number }): Socket {
    const { host, port } = splitHostPort(options.host ?? 'localhost', options.port ?? 443);
    return connect({ ...options, host, port, servername: isIP(host) ? '' : host });
  }
}
