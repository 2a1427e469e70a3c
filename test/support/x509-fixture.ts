// The X.509 tests' emulator: a root CA, an intermediate it signs (a production line's), an
// unrelated root and a self-signed device certificate, made fresh; the emulator with one hub, that
// device enrolled individually by its certificate and an X.509 group of the line. Its events are
// kept, to tell why a device was refused.
import { createCa, type IssuedCertificate, type SigningCa, selfSignedDeviceCertificate } from '../../cli/shared/certificates.js';
import type { EndpointEvent } from '../../emulator/index.js';
import { startTestEmulator, type TestEmulator } from './emulator-fixture.js';

export interface X509Emulator extends TestEmulator {
  root: SigningCa;
  intermediate: SigningCa;
  otherRoot: SigningCa;
  /** The individual enrollment's own certificate. */
  individual: IssuedCertificate;
  events: EndpointEvent[];
  /** The reason of the emulator's last refusal of `clientId`. */
  lastRefusal(clientId: string): string | undefined;
}

export interface X509EmulatorOptions {
  /** Names the temporary folder and the CAs. */
  name: string;
  idScope: string;
  hub: string;
  /** The registration ID of the individual enrollment (the CN of `individual`). */
  individualId: string;
  groupId: string;
  /** The group trusts the intermediate (a signing certificate) or the root (a verified CA certificate it names); default the intermediate. */
  groupTrusts?: 'intermediate' | 'verified root';
  assignmentDelayMs?: number;
}

export async function startX509Emulator(options: X509EmulatorOptions): Promise<X509Emulator> {
  const { name, hub } = options;
  const root = createCa(`${name} root`);
  const intermediate = createCa(`${name} line intermediate`, { issuer: root });
  const otherRoot = createCa(`${name} unrelated root`);
  const individual = selfSignedDeviceCertificate(options.individualId);
  const rootName = `${name}-root`;
  const x509 =
    options.groupTrusts === 'verified root'
      ? { caReferences: { primary: rootName } }
      : { signingCertificates: { primary: { certificate: intermediate.cert } } };
  const events: EndpointEvent[] = [];
  const fixture = await startTestEmulator(`dps-${name}-`, {
    idScope: options.idScope,
    retryAfterSeconds: 1,
    assignmentDelayMs: options.assignmentDelayMs ?? 0,
    inMemory: true,
    onEvent: (event) => events.push(event),
    config: {
      iotHubs: [
        { connectionString: `HostName=${hub};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.from(hub).toString('base64')}` },
      ],
      ...(options.groupTrusts === 'verified root' && { certificates: [{ name: rootName, certificate: root.cert, isVerified: true }] }),
      individualEnrollments: [
        {
          registrationId: options.individualId,
          attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: individual.cert } } } },
        },
      ],
      enrollmentGroups: [{ enrollmentGroupId: options.groupId, attestation: { type: 'x509', x509 } }],
    },
  });
  return {
    ...fixture,
    root,
    intermediate,
    otherRoot,
    individual,
    events,
    lastRefusal: (clientId) =>
      events
        .filter((e) => e.type === 'refused' && e.clientId === clientId)
        .map((e) => (e as { reason: string }).reason)
        .pop(),
  };
}
