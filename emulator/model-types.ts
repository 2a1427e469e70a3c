// The emulator's state, in the JSON shapes of the DPS service API (api-version 2021-10-01) and of
// the provisioningServices ARM resource's properties, so that the REST API and a config file can
// hand them through unchanged.

/** REST names of the allocation policies. */
export type AllocationPolicy = 'hashed' | 'geoLatency' | 'static' | 'custom';
export const ALLOCATION_POLICIES: readonly AllocationPolicy[] = ['hashed', 'geoLatency', 'static', 'custom'];

export type ProvisioningStatus = 'enabled' | 'disabled';

/** A linked hub as configured (ARM `properties.iotHubs[]`). */
export interface LinkedHubConfig {
  /** `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` */
  connectionString: string;
  /** An Azure region name, e.g. 'westus'; used by geoLatency. */
  location?: string;
  /** 1..1000; null or absent means 1. */
  allocationWeight?: number | null;
  /** null or absent means true. False: never chosen by a policy, still selectable on an enrollment. */
  applyAllocationPolicy?: boolean | null;
}

/** A linked hub after validation. */
export interface LinkedHub {
  /** The host name, as DPS reports it in `name`. */
  name: string;
  hostName: string;
  connectionString: string;
  sharedAccessKeyName: string;
  location: string;
  allocationWeight: number;
  applyAllocationPolicy: boolean;
}

export interface InitialTwin {
  tags?: Record<string, unknown>;
  properties?: { desired?: Record<string, unknown> };
}

export interface ReprovisionPolicy {
  /** True (default): a device that registers again is allocated afresh; false: it keeps its hub. */
  updateHubAssignment: boolean;
  /** True (default): the device's data moves with it to a new hub. */
  migrateDeviceData: boolean;
}

export interface CustomAllocationDefinition {
  webhookUrl: string;
  apiVersion: string;
}

export interface SymmetricKeyAttestation {
  type: 'symmetricKey';
  symmetricKey: { primaryKey: string; secondaryKey: string };
}

/** A certificate as the service API holds it: `certificate` as given (PEM), `info` filled in by DPS. */
export interface X509CertificateWithInfo {
  certificate?: string;
  info?: X509CertificateInfo;
}

/** What DPS reports about a certificate it holds (azure-iot-provisioning-service X509CertificateInfo). */
export interface X509CertificateInfo {
  subjectName: string;
  sha1Thumbprint: string;
  sha256Thumbprint: string;
  issuerName: string;
  notBeforeUtc: string;
  notAfterUtc: string;
  serialNumber: string;
  version: number;
}

/**
 * X.509 attestation, in azure-iot-provisioning-service's X509Attestation shape: an individual
 * enrollment has `clientCertificates` (the device's own, primary and optional secondary; matched
 * by thumbprint); a group has `signingCertificates` (a root or intermediate CA, uploaded as PEM:
 * trusted as given, DPS's "upload as verified" for development) or `caReferences` (names of CA
 * certificates in the certificate store, which must be verified by proof of possession).
 */
export interface X509Attestation {
  type: 'x509';
  x509: {
    clientCertificates?: { primary: X509CertificateWithInfo; secondary?: X509CertificateWithInfo };
    signingCertificates?: { primary: X509CertificateWithInfo; secondary?: X509CertificateWithInfo };
    caReferences?: { primary: string; secondary?: string };
  };
}

export type Attestation = SymmetricKeyAttestation | X509Attestation;

/**
 * A CA certificate in the instance's certificate store (DPS's Certificates: the portal's "Certificates"
 * blade, `az iot dps certificate`), referred to by name from a group's caReferences.
 */
export interface CaCertificate {
  name: string;
  /** PEM. */
  certificate: string;
  isVerified: boolean;
  /** The proof-of-possession challenge: a certificate with this CN, signed by this CA's key, verifies it. */
  verificationCode?: string;
  etag: string;
  created: string;
  updated: string;
}

interface EnrollmentFields {
  attestation: Attestation;
  provisioningStatus: ProvisioningStatus;
  /** Absent: the instance's policy applies. */
  allocationPolicy?: AllocationPolicy;
  /** Host names; absent or empty: every linked hub (so a newly linked hub joins at once). */
  iotHubs?: string[];
  initialTwin?: InitialTwin;
  reprovisionPolicy: ReprovisionPolicy;
  customAllocationDefinition?: CustomAllocationDefinition;
  capabilities?: { iotEdge: boolean };
  etag: string;
  createdDateTimeUtc: string;
  lastUpdatedDateTimeUtc: string;
}

export interface EnrollmentGroup extends EnrollmentFields {
  enrollmentGroupId: string;
}

export interface IndividualEnrollment extends EnrollmentFields {
  registrationId: string;
  /** The device ID to create in the hub; absent: the registration ID. */
  deviceId?: string;
}

/** What a caller may send: keys may be omitted (generated, as DPS does), defaults are filled in. */
export type EnrollmentInput<T> = Omit<
  T,
  'attestation' | 'provisioningStatus' | 'reprovisionPolicy' | 'etag' | 'createdDateTimeUtc' | 'lastUpdatedDateTimeUtc'
> & {
  attestation?:
    | { type: 'symmetricKey'; symmetricKey?: { primaryKey?: string; secondaryKey?: string } }
    | { type: 'x509'; x509?: X509Attestation['x509'] };
  provisioningStatus?: ProvisioningStatus;
  reprovisionPolicy?: Partial<ReprovisionPolicy>;
  etag?: string;
};
export type EnrollmentGroupInput = EnrollmentInput<EnrollmentGroup>;
export type IndividualEnrollmentInput = EnrollmentInput<IndividualEnrollment>;

export type RegistrationStatus = 'unassigned' | 'assigning' | 'assigned' | 'failed' | 'disabled';
export type RegistrationSubstatus = 'initialAssignment' | 'deviceDataMigrated' | 'deviceDataReset' | 'reprovisionedToInitialAssignment';

/** A registration record (the service API's DeviceRegistrationState, and the device's registrationState). */
export interface DeviceRegistrationState {
  registrationId: string;
  createdDateTimeUtc: string;
  assignedHub?: string;
  deviceId?: string;
  status: RegistrationStatus;
  substatus?: RegistrationSubstatus;
  errorCode?: number;
  errorMessage?: string;
  lastUpdatedDateTimeUtc: string;
  etag: string;
  /** The custom allocation webhook's payload for the device, when it returned one. */
  payload?: unknown;
}

/** Which enrollment a registration came through. */
export type EnrollmentRef = { kind: 'individual'; registrationId: string } | { kind: 'group'; enrollmentGroupId: string };

/** A device identity in an emulated hub's registry, as DPS creates it. */
export interface HubDevice {
  deviceId: string;
  /** The registration it came from; absent for an identity created through the hub's registry API (Registry.create). */
  registrationId?: string;
  /**
   * IoT Hub's authentication mechanism: a SAS key pair; selfSigned, the device certificate's
   * thumbprints (an individual X.509 enrollment's certificates); certificateAuthority, any
   * certificate with the device ID as CN chaining to a CA the hub trusts (an X.509 group's).
   */
  authentication:
    | { type: 'sas'; symmetricKey: { primaryKey: string; secondaryKey: string } }
    | { type: 'selfSigned'; x509Thumbprint: { primaryThumbprint: string; secondaryThumbprint?: string } }
    | { type: 'certificateAuthority' };
  tags: Record<string, unknown>;
  /** The twin's properties; `reported` is absent until the device reports. */
  properties: { desired: Record<string, unknown>; reported?: Record<string, unknown> };
  /** The twin's desired and reported `$version`; absent: 1 and 1 (the twin as DPS created it). */
  twinVersions?: { desired: number; reported: number };
  /** Absent: enabled. A disabled device cannot connect to its hub. */
  status?: 'enabled' | 'disabled';
  createdDateTimeUtc: string;
  lastUpdatedDateTimeUtc: string;
}

/** Milliseconds between regions, for geoLatency: latency[from][to]. Same region: 0 unless given. */
export type LatencyTable = Record<string, Record<string, number>>;

/** The model's seed: the provisioningServices resource's properties plus enrollments (infrastructure as code). */
export interface ModelConfig {
  iotHubs?: LinkedHubConfig[];
  /** The instance's default policy: hashed unless given; custom is refused. */
  allocationPolicy?: AllocationPolicy;
  enrollmentGroups?: EnrollmentGroupInput[];
  individualEnrollments?: IndividualEnrollmentInput[];
  latency?: LatencyTable;
  /** CA certificates for groups' caReferences: `isVerified: true` uploads one as verified (development). */
  certificates?: Array<{ name: string; certificate: string; isVerified?: boolean }>;
}

/** The symmetric keys of an enrollment's attestation or a hub identity's authentication; undefined for X.509. */
export function symmetricKeys(
  attestation: Attestation | HubDevice['authentication'] | undefined,
): { primaryKey: string; secondaryKey: string } | undefined {
  return attestation && 'symmetricKey' in attestation ? attestation.symmetricKey : undefined;
}
