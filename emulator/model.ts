// The emulator's state in one place: linked hubs, the instance's allocation policy, enrollment
// groups, individual enrollments, registration records and each hub's device registry.
// Every change is validated here, so the device endpoint and the REST API share the rules.
// IDs (registration, enrollment group, hub host name) are case-insensitive, as in DPS.

import { CaCertificateStore } from './ca-certificates.js';
import type { ConnectionStringFields } from './connection-string.js';
import { DpsError, ErrorCodes, InvalidField, invalidConfiguration, notFound } from './dps-errors.js';
import { type EmulatedHub, IotHubRegistry } from './hubs.js';
import type {
  AllocationPolicy,
  CaCertificate,
  DeviceRegistrationState,
  EnrollmentGroup,
  EnrollmentGroupInput,
  EnrollmentRef,
  HubDevice,
  IndividualEnrollment,
  IndividualEnrollmentInput,
  LatencyTable,
  LinkedHub,
  LinkedHubConfig,
  ModelConfig,
} from './model-types.js';
import {
  checkEtag,
  newEtag,
  parseConnectionString,
  validateEnrollmentFields,
  validateEnrollmentGroupId,
  validateEnrollmentRegistrationId,
  validateInstancePolicy,
  validateLatency,
  validateLinkedHub,
} from './validation.js';

export interface RegistrationRecord {
  state: DeviceRegistrationState;
  enrollment: EnrollmentRef;
}

/**
 * Everything the model holds, as plain JSON data (state-store.ts persists it): the records as
 * they are, so a new field of an enrollment or a hub device is kept without more code.
 */
export interface ModelSnapshot {
  allocationPolicy: AllocationPolicy;
  latency: LatencyTable;
  linkedHubs: LinkedHub[];
  enrollmentGroups: EnrollmentGroup[];
  individualEnrollments: IndividualEnrollment[];
  registrations: RegistrationRecord[];
  /** Every emulated hub (linked or not): its shared access policies and its device registry (identities and twins). */
  hubs: Array<EmulatedHub & { devices: HubDevice[] }>;
  /** The CA certificates that X.509 groups' caReferences name (absent in older snapshots: none). */
  certificates?: CaCertificate[];
}

export class DpsModel {
  #allocationPolicy: AllocationPolicy = 'hashed';
  #hubs = new Map<string, LinkedHub>();
  /** Each link's parsed connection string (a link object is replaced, never changed, when its string changes). */
  readonly #links = new WeakMap<LinkedHub, ConnectionStringFields>();
  #groups = new Map<string, EnrollmentGroup>();
  #individuals = new Map<string, IndividualEnrollment>();
  #registrations = new Map<string, RegistrationRecord>();
  #devices = new Map<string, Map<string, HubDevice>>();
  #latency: LatencyTable = Object.create(null);
  readonly #now: () => Date;
  readonly #listeners = new Set<() => void>();
  /** The emulated IoT hubs behind the links, with their shared access policies (hubs.ts). */
  readonly iotHubs = new IotHubRegistry(() => this.#changed());
  /** The CA certificates X.509 enrollment groups refer to by name (ca-certificates.ts). */
  readonly certificates: CaCertificateStore;

  constructor(config: ModelConfig = {}, now: () => Date = () => new Date()) {
    this.#now = now;
    this.certificates = new CaCertificateStore(() => this.#changed(), now);
    for (const c of config.certificates ?? []) this.certificates.put(c?.name, c?.certificate, c?.isVerified);
    if (config.allocationPolicy !== undefined) this.setAllocationPolicy(config.allocationPolicy);
    for (const hub of config.iotHubs ?? []) this.linkHub(hub);
    if (config.latency !== undefined) this.setLatency(config.latency);
    for (const group of config.enrollmentGroups ?? []) this.putEnrollmentGroup(group);
    for (const enrollment of config.individualEnrollments ?? []) this.putIndividualEnrollment(enrollment);
  }

  // ---- changes and snapshots (state-store.ts) ----

  /** `listener` is called after every change of the model's state; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }

  /**
   * The model's own objects, not copies: serialize at once, change nothing. A stored record is
   * never changed in place (every write stores a new object), so a record in two snapshots is the
   * same object exactly when it did not change: the state journal (state-journal.ts) relies on it.
   */
  snapshot(): ModelSnapshot {
    const registries = new Map(this.#devices);
    const hubs: ModelSnapshot['hubs'] = this.iotHubs.list().map((hub) => {
      const devices = registries.get(hub.hostName.toLowerCase());
      registries.delete(hub.hostName.toLowerCase());
      return { ...hub, devices: [...(devices?.values() ?? [])] };
    });
    return {
      allocationPolicy: this.#allocationPolicy,
      latency: this.#latency,
      linkedHubs: [...this.#hubs.values()],
      enrollmentGroups: [...this.#groups.values()],
      individualEnrollments: [...this.#individuals.values()],
      registrations: [...this.#registrations.values()],
      hubs,
      certificates: this.certificates.list(),
    };
  }

  /** Replace the whole state with a snapshot's (its shape checked by the caller); no change is notified. */
  restore(snapshot: ModelSnapshot): void {
    this.#allocationPolicy = validateInstancePolicy(snapshot.allocationPolicy);
    this.#latency = validateLatency(snapshot.latency);
    this.iotHubs.restore(snapshot.hubs.map(({ devices: _devices, ...hub }) => hub));
    this.#hubs = new Map(snapshot.linkedHubs.map((hub) => [hub.hostName.toLowerCase(), { ...hub }]));
    this.#groups = new Map(snapshot.enrollmentGroups.map((g) => [g.enrollmentGroupId.toLowerCase(), structuredClone(g)]));
    this.#individuals = new Map(snapshot.individualEnrollments.map((e) => [e.registrationId.toLowerCase(), structuredClone(e)]));
    this.#registrations = new Map(snapshot.registrations.map((r) => [r.state.registrationId.toLowerCase(), structuredClone(r)]));
    this.#devices = new Map(
      snapshot.hubs.map((hub) => [hub.hostName.toLowerCase(), new Map(hub.devices.map((d) => [d.deviceId, structuredClone(d)]))]),
    );
    for (const hostName of this.#hubs.keys()) if (!this.#devices.has(hostName)) this.#devices.set(hostName, new Map());
    this.certificates.restore(snapshot.certificates ?? []);
  }

  // ---- the instance ----

  get allocationPolicy(): AllocationPolicy {
    return this.#allocationPolicy;
  }

  setAllocationPolicy(policy: AllocationPolicy): void {
    this.#allocationPolicy = validateInstancePolicy(policy);
    this.#changed();
  }

  /** A copy, of null-prototype objects (region names are user text: no lookup may reach Object.prototype). */
  get latency(): LatencyTable {
    return copyLatency(this.#latency);
  }

  setLatency(table: LatencyTable): void {
    this.#latency = validateLatency(table);
    this.#changed();
  }

  // ---- linked hubs ----

  linkedHubs(): LinkedHub[] {
    return [...this.#hubs.values()].map((hub) => ({ ...hub }));
  }

  linkedHub(hostName: string): LinkedHub | undefined {
    const hub = this.#hubs.get(hostName.toLowerCase());
    return hub && { ...hub };
  }

  /**
   * Link a hub (`az iot dps linked-hub create`). Refuses a hub that is linked already, and a
   * connection string the emulated hub would refuse (hubs.ts); an unknown hub is created.
   */
  linkHub(config: LinkedHubConfig): LinkedHub {
    const hub = validateLinkedHub(config);
    if (this.#hubs.has(hub.hostName)) {
      throw new DpsError(409, ErrorCodes.conflict, `The IoT hub ${hub.hostName} is already linked`);
    }
    this.iotHubs.admitLink(parseConnectionString(hub.connectionString));
    this.#hubs.set(hub.hostName, hub);
    this.#devices.set(hub.hostName, this.#devices.get(hub.hostName) ?? new Map());
    this.#changed();
    return { ...hub };
  }

  /** Change a linked hub (`az iot dps linked-hub update`): weight, apply flag, location, connection string. */
  updateHub(hostName: string, changes: Partial<LinkedHubConfig>): LinkedHub {
    const current = this.#requireHub(hostName);
    const next = validateLinkedHub({
      connectionString: changes.connectionString ?? current.connectionString,
      location: changes.location ?? current.location,
      allocationWeight: 'allocationWeight' in changes ? changes.allocationWeight : current.allocationWeight,
      applyAllocationPolicy: 'applyAllocationPolicy' in changes ? changes.applyAllocationPolicy : current.applyAllocationPolicy,
    });
    if (next.hostName !== current.hostName) {
      throw invalidConfiguration(`The new connection string is for ${next.hostName}, not ${current.hostName}`);
    }
    if (next.connectionString !== current.connectionString) this.iotHubs.admitLink(parseConnectionString(next.connectionString));
    this.#hubs.set(current.hostName, next);
    this.#changed();
    return { ...next };
  }

  /** Unlink a hub. Enrollments that list it explicitly then fail to register, with a clear error. */
  unlinkHub(hostName: string): void {
    this.#requireHub(hostName);
    this.#hubs.delete(hostName.toLowerCase());
    this.#changed();
  }

  /**
   * Replace the whole set of linked hubs at once (ARM's PUT of properties.iotHubs): every entry is
   * checked before anything changes; hubs not yet known are then created. A link whose connection
   * string is unchanged is not checked against its hub again, so a link left out of date by a key
   * renewal does not block other changes (its registrations keep failing until it is updated).
   */
  replaceLinkedHubs(configs: readonly LinkedHubConfig[]): LinkedHub[] {
    if (!Array.isArray(configs)) throw invalidConfiguration('iotHubs must be a list of linked hubs');
    const next = new Map<string, LinkedHub>();
    configs.forEach((config, index) => {
      let hub: LinkedHub;
      try {
        hub = validateLinkedHub(config);
        if (this.#hubs.get(hub.hostName)?.connectionString !== hub.connectionString) {
          this.iotHubs.checkLink(parseConnectionString(hub.connectionString));
        }
      } catch (error) {
        if (error instanceof InvalidField)
          throw new InvalidField(`/${index}${error.pointer}`, error.reason, `iotHubs[${index}]: ${error.message}`);
        if (error instanceof DpsError) throw new DpsError(error.status, error.errorCode, `iotHubs[${index}]: ${error.message}`);
        throw error;
      }
      if (next.has(hub.hostName)) throw invalidConfiguration(`iotHubs[${index}]: the IoT hub ${hub.hostName} is listed twice`);
      next.set(hub.hostName, hub);
    });
    for (const hub of next.values()) {
      if (this.#hubs.get(hub.hostName)?.connectionString !== hub.connectionString) {
        this.iotHubs.admitLink(parseConnectionString(hub.connectionString));
      }
      if (!this.#devices.has(hub.hostName)) this.#devices.set(hub.hostName, new Map());
    }
    this.#hubs = next;
    this.#changed();
    return this.linkedHubs();
  }

  /** Why registrations cannot be sent to a linked hub now (its link holds a renewed key), or undefined. */
  linkProblem(hostName: string): string | undefined {
    const hub = this.#hubs.get(hostName.toLowerCase());
    if (!hub) return undefined;
    let link = this.#links.get(hub);
    if (!link) {
      link = parseConnectionString(hub.connectionString);
      this.#links.set(hub, link);
    }
    return this.iotHubs.linkProblem(link);
  }

  #requireHub(hostName: string): LinkedHub {
    const hub = this.#hubs.get(String(hostName).toLowerCase());
    if (!hub) throw notFound(`The IoT hub ${hostName} is not linked`);
    return hub;
  }

  // ---- enrollments ----

  enrollmentGroups(): EnrollmentGroup[] {
    return [...this.#groups.values()].map((g) => structuredClone(g));
  }

  /** The enrollment groups themselves, not copies, for reading only: the CONNECT check reads them per device. */
  readEnrollmentGroups(): Iterable<Readonly<EnrollmentGroup>> {
    return this.#groups.values();
  }

  /** The enrollment group itself, not a copy, for reading only: a registration reads it per device. */
  readEnrollmentGroup(id: string): Readonly<EnrollmentGroup> | undefined {
    return this.#groups.get(id.toLowerCase());
  }

  enrollmentGroup(id: string): EnrollmentGroup | undefined {
    const group = this.#groups.get(id.toLowerCase());
    return group && structuredClone(group);
  }

  /** Create or replace an enrollment group. `ifMatch` (an etag or '*') guards a replacement. */
  putEnrollmentGroup(input: EnrollmentGroupInput, ifMatch?: string): EnrollmentGroup {
    const id = validateEnrollmentGroupId(input?.enrollmentGroupId);
    const previous = this.#groups.get(id.toLowerCase());
    checkEtag(previous?.etag, ifMatch, `enrollment group ${id}`);
    const fields = validateEnrollmentFields(input, new Set(this.#hubs.keys()), `enrollment group ${id}`, previous?.attestation);
    const now = this.#now().toISOString();
    const group: EnrollmentGroup = {
      enrollmentGroupId: id,
      ...fields,
      etag: newEtag(),
      createdDateTimeUtc: previous?.createdDateTimeUtc ?? now,
      lastUpdatedDateTimeUtc: now,
    };
    this.#groups.set(id.toLowerCase(), group);
    this.#changed();
    return structuredClone(group);
  }

  deleteEnrollmentGroup(id: string, ifMatch?: string): void {
    const group = this.#groups.get(String(id).toLowerCase());
    if (!group) throw notFound(`The enrollment group ${id} does not exist`);
    checkEtag(group.etag, ifMatch, `enrollment group ${id}`);
    this.#groups.delete(group.enrollmentGroupId.toLowerCase());
    this.#changed();
  }

  individualEnrollments(): IndividualEnrollment[] {
    return [...this.#individuals.values()].map((e) => structuredClone(e));
  }

  individualEnrollment(registrationId: string): IndividualEnrollment | undefined {
    const enrollment = this.#individuals.get(registrationId.toLowerCase());
    return enrollment && structuredClone(enrollment);
  }

  /** The individual enrollment itself, not a copy, for reading only: the CONNECT check and a registration read it per device. */
  readIndividualEnrollment(registrationId: string): Readonly<IndividualEnrollment> | undefined {
    return this.#individuals.get(registrationId.toLowerCase());
  }

  putIndividualEnrollment(input: IndividualEnrollmentInput, ifMatch?: string): IndividualEnrollment {
    const registrationId = validateEnrollmentRegistrationId(input?.registrationId);
    const previous = this.#individuals.get(registrationId.toLowerCase());
    checkEtag(previous?.etag, ifMatch, `enrollment ${registrationId}`);
    const what = `enrollment ${registrationId}`;
    const fields = validateEnrollmentFields(input, new Set(this.#hubs.keys()), what, previous?.attestation, 'individual');
    if (
      input.deviceId !== undefined &&
      (typeof input.deviceId !== 'string' || !/^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/.test(input.deviceId))
    ) {
      throw invalidConfiguration(`The deviceId of ${what} is not a valid IoT Hub device ID`);
    }
    const now = this.#now().toISOString();
    const enrollment: IndividualEnrollment = {
      registrationId,
      ...(input.deviceId !== undefined ? { deviceId: input.deviceId } : {}),
      ...fields,
      etag: newEtag(),
      createdDateTimeUtc: previous?.createdDateTimeUtc ?? now,
      lastUpdatedDateTimeUtc: now,
    };
    this.#individuals.set(registrationId.toLowerCase(), enrollment);
    this.#changed();
    return structuredClone(enrollment);
  }

  deleteIndividualEnrollment(registrationId: string, ifMatch?: string): void {
    const enrollment = this.#individuals.get(String(registrationId).toLowerCase());
    if (!enrollment) throw notFound(`The enrollment ${registrationId} does not exist`);
    checkEtag(enrollment.etag, ifMatch, `enrollment ${registrationId}`);
    this.#individuals.delete(enrollment.registrationId.toLowerCase());
    this.#changed();
  }

  // ---- registrations ----

  registration(registrationId: string): RegistrationRecord | undefined {
    const record = this.#registrations.get(registrationId.toLowerCase());
    return record && structuredClone(record);
  }

  /** The record itself, not a copy, for reading only: the event log reads one per answered device. */
  readRegistration(registrationId: string): Readonly<RegistrationRecord> | undefined {
    return this.#registrations.get(registrationId.toLowerCase());
  }

  registrations(): RegistrationRecord[] {
    return [...this.#registrations.values()].map((r) => structuredClone(r));
  }

  /** Registrations that came through one enrollment group (the service API's registration query). */
  registrationsOfGroup(enrollmentGroupId: string): DeviceRegistrationState[] {
    const id = enrollmentGroupId.toLowerCase();
    return [...this.#registrations.values()]
      .filter((r) => r.enrollment.kind === 'group' && r.enrollment.enrollmentGroupId.toLowerCase() === id)
      .map((r) => structuredClone(r.state));
  }

  saveRegistration(record: RegistrationRecord): void {
    this.#registrations.set(record.state.registrationId.toLowerCase(), structuredClone(record));
    this.#changed();
  }

  deleteRegistration(registrationId: string, ifMatch?: string): void {
    const record = this.#registrations.get(String(registrationId).toLowerCase());
    if (!record) throw notFound(`The registration ${registrationId} does not exist`);
    checkEtag(record.state.etag, ifMatch, `registration ${registrationId}`);
    this.#registrations.delete(record.state.registrationId.toLowerCase());
    this.#changed();
  }

  // ---- hub device registries ----

  hubDevices(hostName: string): HubDevice[] {
    return [...(this.#devices.get(hostName.toLowerCase())?.values() ?? [])].map((d) => structuredClone(d));
  }

  /** How many device identities a hub's registry holds (without copying them). */
  hubDeviceCount(hostName: string): number {
    return this.#devices.get(hostName.toLowerCase())?.size ?? 0;
  }

  hubDevice(hostName: string, deviceId: string): HubDevice | undefined {
    const device = this.#devices.get(hostName.toLowerCase())?.get(deviceId);
    return device && structuredClone(device);
  }

  /** Create or replace a device identity in a linked hub's registry, as DPS does when it assigns. */
  upsertHubDevice(hostName: string, device: HubDevice): void {
    const hub = this.#requireHub(hostName);
    const registry = this.#devices.get(hub.hostName) ?? new Map<string, HubDevice>();
    this.#devices.set(hub.hostName, registry);
    registry.set(device.deviceId, structuredClone(device));
    this.#changed();
  }

  /**
   * Create a device identity through a hub's own registry API (IoT Hub's Create Or Update
   * Identity), in any hub the emulator knows, linked or not. 404 for an unknown hub, 409 when the
   * device exists.
   */
  addHubDevice(hostName: string, device: HubDevice): void {
    const hub = this.iotHubs.hub(String(hostName));
    if (!hub) throw notFound(`The IoT hub ${hostName} is not known to the emulator`);
    const registry = this.#devices.get(hub.hostName.toLowerCase()) ?? new Map<string, HubDevice>();
    if (registry.has(device.deviceId))
      throw new DpsError(409, ErrorCodes.conflict, `The device ${device.deviceId} exists in ${hub.hostName}`);
    this.#devices.set(hub.hostName.toLowerCase(), registry);
    registry.set(device.deviceId, structuredClone(device));
    this.#changed();
  }

  /** Replace an existing device identity (its twin or status), linked hub or not; false when there is none. */
  replaceHubDevice(hostName: string, device: HubDevice): boolean {
    const registry = this.#devices.get(hostName.toLowerCase());
    if (!registry?.has(device.deviceId)) return false;
    registry.set(device.deviceId, structuredClone(device));
    this.#changed();
    return true;
  }

  removeHubDevice(hostName: string, deviceId: string): void {
    if (this.#devices.get(hostName.toLowerCase())?.delete(deviceId)) this.#changed();
  }
}

function copyLatency(table: LatencyTable): LatencyTable {
  const out: LatencyTable = Object.create(null);
  for (const [from, row] of Object.entries(table)) out[from] = Object.assign(Object.create(null) as Record<string, number>, row);
  return out;
}
