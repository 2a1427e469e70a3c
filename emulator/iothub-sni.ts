// TLS server names on the hub endpoint. One port serves every emulated hub, so the certificate a
// device sees depends on the name it sends in SNI (RFC 6066 §3), as a device talking to the real
// `<hub>.azure-devices.net` sends it:
//   - a name of an emulated hub gets a certificate for that name alone, issued by the emulator's
//     CA the first time it is asked for (hubs are linked at run time) and kept for the process;
//     leaf and CA are sent together, as for the default certificate (Moddable's TLS checks the
//     name only while walking a chain of two or more certificates);
//   - any other name, or none (a device that connects to an IP address sends none), gets the
//     default certificate (localhost, 127.0.0.1, ::1 and the configured names).
// A device whose SNI names one emulated hub and whose username another is refused (CONNACK 5).
import { createSecureContext, type SecureContext } from 'node:tls';
import type { DpsModel } from './model.js';

/** `issue(hostName)`: a PEM chain (leaf, then CA) for the server key, covering that host name. */
export function hubSniCallback(
  model: DpsModel,
  key: string,
  issue: (hostName: string) => string,
): (servername: string, callback: (error: Error | null, context?: SecureContext) => void) => void {
  const contexts = new Map<string, SecureContext>();
  return (servername, callback) => {
    const hub = model.iotHubs.hub(servername)?.hostName.toLowerCase();
    if (hub === undefined) {
      callback(null); // the default certificate
      return;
    }
    try {
      let context = contexts.get(hub);
      if (!context) {
        context = createSecureContext({ cert: issue(hub), key, minVersion: 'TLSv1.2' });
        contexts.set(hub, context);
      }
      callback(null, context);
    } catch (error) {
      callback(error as Error); // the handshake fails; the server goes on
    }
  };
}

/** True when the device's SNI names an emulated hub other than `hub`, the one its username names. */
export function sniContradicts(model: DpsModel, servername: string | false | undefined, hub: string): boolean {
  if (!servername) return false;
  const named = model.iotHubs.hub(servername);
  return named !== undefined && named.hostName.toLowerCase() !== hub.toLowerCase();
}
