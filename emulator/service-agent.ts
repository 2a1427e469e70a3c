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
//
// Microsoft's IoT Hub service client (azure-iothub) takes the hub's own connection string,
// HostName=<hub>.azure-devices.net, a name that resolves nowhere here. `connectTo` sends every
// connection to the emulator's service endpoint instead, while the request still names the hub
// (TLS server name, certificate check, Host header), which is how the endpoint knows the hub:
//
//   const registry = Registry.fromConnectionString(hubConnectionString);
//   (registry as any)._restApiClient.setOptions({
//     http: { agent: serviceClientAgent({ ca: dps.caPem, connectTo: dps.service.endpoint }) },
//   });
import { Agent, type AgentOptions } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { type ConnectionOptions, connect, rootCertificates } from 'node:tls';

export interface ServiceClientAgentOptions {
  /** The emulator's CA certificate (PEM), trusted in addition to Node's root certificates. */
  ca?: string;
  /** Connect here whatever host a request names (an emulated hub's); the request still names its host. */
  connectTo?: { host: string; port: number };
}

export function serviceClientAgent(options: ServiceClientAgentOptions = {}): Agent {
  const { connectTo } = options;
  if (
    connectTo !== undefined &&
    (typeof connectTo.host !== 'string' || !Number.isInteger(connectTo.port) || connectTo.port < 1 || connectTo.port > 65535)
  ) {
    throw new TypeError(
      'connectTo must be {host, port}: the emulator service endpoint (a host name or address and a port from 1 to 65535)',
    );
  }
  return new HostPortAgent({ keepAlive: false, ...(options.ca ? { ca: [...rootCertificates, options.ca] } : {}) }, connectTo);
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
  constructor(
    options: AgentOptions,
    private readonly connectTo?: { host: string; port: number },
  ) {
    super(options);
  }

  /** Node's Agent takes the returned socket (the callback is for agents that connect asynchronously). */
  override createConnection(options: ConnectionOptions & { host?: string; port?: number }): Socket {
    const { host, port } = splitHostPort(options.host ?? 'localhost', options.port ?? 443);
    const servername = isIP(host) ? '' : host;
    if (this.connectTo) return connect({ ...options, host: this.connectTo.host, port: this.connectTo.port, servername });
    return connect({ ...options, host, port, servername });
  }
}
