// The enrollment form of the console: its fields (as `dps enrollment-group` and `dps enrollment`
// flag them), the checks the CLI makes before a request, the enrollment built from what was
// posted, and which field a service API refusal is about, so it is shown next to that field.
import { isNestedDeeper, MAX_JSON_DEPTH } from '../../../src/dps/messages.js';
import { field, type Html, html, json, select } from '../html.js';

export type Kind = 'group' | 'individual';

export interface Enrollment {
  enrollmentGroupId?: string;
  registrationId?: string;
  deviceId?: string;
  attestation?: { type: string; symmetricKey?: { primaryKey?: string; secondaryKey?: string } };
  provisioningStatus?: string;
  allocationPolicy?: string;
  iotHubs?: string[];
  initialTwin?: { tags?: unknown; properties?: { desired?: unknown } };
  reprovisionPolicy?: { updateHubAssignment: boolean; migrateDeviceData: boolean };
  customAllocationDefinition?: { webhookUrl?: string; apiVersion?: string };
  etag?: string;
  [field: string]: unknown;
}

export type FieldName =
  | 'id'
  | 'deviceId'
  | 'provisioningStatus'
  | 'allocationPolicy'
  | 'iotHubs'
  | 'initialTwin'
  | 'reprovisionPolicy'
  | 'webhookUrl'
  | 'apiVersion'
  | 'primaryKey'
  | 'secondaryKey'
  | 'form';
export type FormErrors = Partial<Record<FieldName, string>>;

const REPROVISION = {
  reprovisionandmigratedata: { updateHubAssignment: true, migrateDeviceData: true },
  reprovisionandresetdata: { updateHubAssignment: true, migrateDeviceData: false },
  never: { updateHubAssignment: false, migrateDeviceData: true },
} as const;
const DEFAULT_API_VERSION = '2021-10-01';

export function reprovisionName(policy: Enrollment['reprovisionPolicy']): keyof typeof REPROVISION {
  if (!policy) return 'reprovisionandmigratedata';
  if (!policy.updateHubAssignment) return 'never';
  return policy.migrateDeviceData ? 'reprovisionandmigratedata' : 'reprovisionandresetdata';
}

/** The form's values for an enrollment as read (never its keys). */
export function formValues(enrollment: Enrollment): URLSearchParams {
  const values = new URLSearchParams({
    provisioningStatus: enrollment.provisioningStatus ?? 'enabled',
    allocationPolicy: enrollment.allocationPolicy ?? '',
    initialTwin: enrollment.initialTwin ? json(enrollment.initialTwin) : '',
    reprovisionPolicy: reprovisionName(enrollment.reprovisionPolicy),
    webhookUrl: enrollment.customAllocationDefinition?.webhookUrl ?? '',
    apiVersion: enrollment.customAllocationDefinition?.apiVersion ?? '',
    deviceId: enrollment.deviceId ?? '',
    etag: enrollment.etag ?? '',
  });
  for (const hub of enrollment.iotHubs ?? []) values.append('iotHubs', hub);
  return values;
}

export function enrollmentFields(options: {
  kind: Kind;
  creating: boolean;
  values: URLSearchParams;
  errors: FormErrors;
  linkedHubs: string[];
}): Html {
  const { kind, creating, values, errors } = options;
  const chosen = new Set(values.getAll('iotHubs').map((h) => h.toLowerCase()));
  const idField = creating
    ? field({
        name: 'id',
        label: kind === 'group' ? 'Enrollment group ID' : 'Registration ID',
        value: values.get('id') ?? '',
        error: errors.id,
        required: true,
        hint: kind === 'group' ? 'e.g. line-2' : 'the device’s registration ID, e.g. sn-0001-a1b2c3d4e5f6',
      })
    : '';
  const deviceIdField =
    kind === 'individual'
      ? field({
          name: 'deviceId',
          label: 'Device ID',
          value: values.get('deviceId') ?? '',
          error: errors.deviceId,
          hint: 'in the hub; empty: the registration ID',
        })
      : '';
  const hubsId = 'f-iotHubs';
  return html`${errors.form ? html`<p class="error" role="alert">${errors.form}</p>` : ''}${idField}${deviceIdField}${select({
    name: 'provisioningStatus',
    label: 'Provisioning status',
    value: values.get('provisioningStatus') ?? 'enabled',
    choices: [
      ['enabled', 'Enabled'],
      ['disabled', 'Disabled'],
    ],
    error: errors.provisioningStatus,
  })}${select({
    name: 'allocationPolicy',
    label: 'Allocation policy',
    value: values.get('allocationPolicy') ?? '',
    choices: [
      ['', 'The instance’s policy'],
      ['hashed', 'Evenly weighted distribution (hashed)'],
      ['geoLatency', 'Lowest latency (geoLatency)'],
      ['static', 'Static configuration (static: list one hub)'],
      ['custom', 'Custom (a webhook)'],
    ],
    error: errors.allocationPolicy,
  })}<fieldset id="${hubsId}"${errors.iotHubs ? html` aria-describedby="${hubsId}-error"` : ''}><legend>IoT hubs this enrollment may use</legend>${
    options.linkedHubs.length === 0
      ? html`<p class="hint">No hub is linked yet.</p>`
      : options.linkedHubs.map(
          (hub, i) =>
            html`<div class="choice"><input type="checkbox" name="iotHubs" id="hub-${i}" value="${hub}"${
              chosen.has(hub.toLowerCase()) ? html` checked` : ''
            }><label for="hub-${i}">${hub}</label></div>`,
        )
  }<p class="hint">None checked: every linked hub, including hubs linked later.</p>${
    errors.iotHubs ? html`<p class="error" id="${hubsId}-error">${errors.iotHubs}</p>` : ''
  }</fieldset>${field({
    name: 'initialTwin',
    label: 'Initial twin (JSON)',
    rows: 6,
    value: values.get('initialTwin') ?? '',
    error: errors.initialTwin,
    hint: '{"tags": {...}, "properties": {"desired": {...}}}; empty: none',
  })}${select({
    name: 'reprovisionPolicy',
    label: 'When a device registers again',
    value: values.get('reprovisionPolicy') ?? 'reprovisionandmigratedata',
    choices: [
      ['reprovisionandmigratedata', 'Re-provision and migrate its data'],
      ['reprovisionandresetdata', 'Re-provision and reset to the initial twin'],
      ['never', 'Never re-provision: keep its hub'],
    ],
    error: errors.reprovisionPolicy,
  })}${field({
    name: 'webhookUrl',
    label: 'Custom allocation webhook URL',
    type: 'url',
    value: values.get('webhookUrl') ?? '',
    error: errors.webhookUrl,
    hint: 'for the custom policy only',
  })}${field({
    name: 'apiVersion',
    label: 'Webhook API version',
    value: values.get('apiVersion') ?? '',
    error: errors.apiVersion,
    hint: `empty: ${DEFAULT_API_VERSION}`,
  })}${field({
    name: 'primaryKey',
    label: creating ? 'Primary key (optional)' : 'New primary key (optional)',
    type: 'password',
    autocomplete: 'off',
    value: '',
    error: errors.primaryKey,
    hint: creating ? 'base64, 16 to 64 bytes; empty: DPS generates one' : 'empty: keep the current key',
  })}${field({
    name: 'secondaryKey',
    label: creating ? 'Secondary key (optional)' : 'New secondary key (optional)',
    type: 'password',
    autocomplete: 'off',
    value: '',
    error: errors.secondaryKey,
  })}`;
}

/** The posted form applied to `base` (the enrollment as read, or a new one), after the CLI's checks. */
export function applyForm(base: Enrollment, values: URLSearchParams, errors: FormErrors): Enrollment {
  const enrollment: Enrollment = structuredClone(base);
  const status = values.get('provisioningStatus') ?? 'enabled';
  if (status !== 'enabled' && status !== 'disabled') errors.provisioningStatus = 'The provisioning status must be enabled or disabled';
  else enrollment.provisioningStatus = status;
  const policy = values.get('allocationPolicy') ?? '';
  if (policy === '') delete enrollment.allocationPolicy;
  else enrollment.allocationPolicy = policy;
  enrollment.iotHubs = values.getAll('iotHubs');
  const twinText = (values.get('initialTwin') ?? '').trim();
  if (twinText === '') delete enrollment.initialTwin;
  else if (isNestedDeeper(twinText, MAX_JSON_DEPTH)) {
    errors.initialTwin = `The initial twin nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels, the limit`;
  } else {
    try {
      enrollment.initialTwin = JSON.parse(twinText);
    } catch {
      errors.initialTwin = 'The initial twin is not valid JSON';
    }
  }
  const reprovision = values.get('reprovisionPolicy') ?? 'reprovisionandmigratedata';
  if (!Object.hasOwn(REPROVISION, reprovision)) {
    errors.reprovisionPolicy = 'The reprovision policy must be reprovisionandmigratedata, reprovisionandresetdata or never';
  } else enrollment.reprovisionPolicy = { ...REPROVISION[reprovision as keyof typeof REPROVISION] };
  const webhookUrl = (values.get('webhookUrl') ?? '').trim();
  const apiVersion = (values.get('apiVersion') ?? '').trim();
  if (webhookUrl !== '') enrollment.customAllocationDefinition = { webhookUrl, apiVersion: apiVersion || DEFAULT_API_VERSION };
  else if (apiVersion !== '') errors.apiVersion = 'The API version goes with a webhook URL (the custom allocation webhook)';
  else delete enrollment.customAllocationDefinition;
  const deviceId = (values.get('deviceId') ?? '').trim();
  if (base.registrationId !== undefined) {
    if (deviceId === '') delete enrollment.deviceId;
    else enrollment.deviceId = deviceId;
  }
  const primaryKey = (values.get('primaryKey') ?? '').trim();
  const secondaryKey = (values.get('secondaryKey') ?? '').trim();
  if (primaryKey !== '' || secondaryKey !== '') {
    if (enrollment.attestation && enrollment.attestation.type !== 'symmetricKey') {
      errors.primaryKey = 'This enrollment uses X.509 attestation: it has no symmetric keys';
    } else {
      const keys = enrollment.attestation?.symmetricKey ?? {};
      enrollment.attestation = {
        type: 'symmetricKey',
        symmetricKey: { ...keys, ...(primaryKey && { primaryKey }), ...(secondaryKey && { secondaryKey }) },
      };
    }
  }
  return enrollment;
}

/** Which field a service API message is about ('form' when none). */
export function fieldOf(message: string): FieldName {
  const rules: Array<[RegExp, FieldName]> = [
    [/initialTwin|initial twin/i, 'initialTwin'],
    [/customAllocationDefinition|webhook/i, 'webhookUrl'],
    [/static allocation policy|iotHubs|not linked/i, 'iotHubs'],
    [/reprovisionPolicy/, 'reprovisionPolicy'],
    [/allocationPolicy|custom allocation policy/, 'allocationPolicy'],
    [/provisioningStatus/, 'provisioningStatus'],
    [/symmetric key|primaryKey/i, 'primaryKey'],
    [/secondaryKey/, 'secondaryKey'],
    [/deviceId/, 'deviceId'],
    [/enrollmentGroupId|registrationId|registration ID|reserved name/i, 'id'],
  ];
  return rules.find(([pattern]) => pattern.test(message))?.[1] ?? 'form';
}
