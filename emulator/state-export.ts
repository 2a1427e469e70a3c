// A stored state as a config file (infrastructure as code, config-file.ts): the ID scope, the
// instance's allocation policy, the linked hubs with their connection strings as they are now
// (after a key renewal too), the latency table and the enrollments with their keys, in the order
// the emulator holds them. Starting an emulator from the result gives the same configuration, and
// exporting that again gives the same file. The CA certificates go with their verified flag (one
// awaiting its proof of possession goes unverified: its code is asked again). What a config file
// cannot say is left out: the
// registration records, the hubs' registries and twins, their other policies' keys, and the
// read-only fields (etag and dates, which the service assigns afresh).
import type { ModelConfig } from './model-types.js';
import type { StoredState } from './state-store.js';

export type ExportedConfig = { idScope: string } & Required<Pick<ModelConfig, 'allocationPolicy' | 'iotHubs' | 'latency'>> & {
    enrollmentGroups: Record<string, unknown>[];
    individualEnrollments: Record<string, unknown>[];
    certificates?: Array<{ name: string; certificate: string; isVerified: boolean }>;
  };

export function stateAsConfig(state: StoredState): ExportedConfig {
  const { model } = state;
  const enrollment = (e: object): Record<string, unknown> => {
    const { etag: _etag, createdDateTimeUtc: _created, lastUpdatedDateTimeUtc: _updated, ...rest } = e as Record<string, unknown>;
    return rest;
  };
  return {
    idScope: state.idScope,
    allocationPolicy: model.allocationPolicy,
    iotHubs: model.linkedHubs.map((hub) => ({
      connectionString: hub.connectionString,
      ...(hub.location !== '' && { location: hub.location }),
      allocationWeight: hub.allocationWeight,
      applyAllocationPolicy: hub.applyAllocationPolicy,
    })),
    enrollmentGroups: model.enrollmentGroups.map(enrollment),
    individualEnrollments: model.individualEnrollments.map(enrollment),
    latency: model.latency,
    ...(model.certificates?.length && {
      certificates: model.certificates.map((c) => ({ name: c.name, certificate: c.certificate, isVerified: c.isVerified })),
    }),
  };
}
