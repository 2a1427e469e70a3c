// The DPS resource (the emulator's GET/PUT /resource, shaped like ARM's provisioningServices):
// its shape, how it is printed, and `--set <path>=<value>` as `az iot dps update` applies it.
import { ProvisioningError } from '../../src/errors.js';
import { type Io, printJson, safe } from '../service/flags.js';

export interface LinkedHubEntry {
  connectionString: string;
  name?: string;
  location?: string;
  allocationWeight?: number | null;
  applyAllocationPolicy?: boolean | null;
}

export interface Resource {
  name: string;
  etag: string;
  properties: {
    idScope: string;
    allocationPolicy: string;
    iotHubs: LinkedHubEntry[];
    serviceOperationsHostName: string;
    deviceProvisioningHostName: string;
  };
}

export function printResource(io: Io, resource: Resource, json: boolean): void {
  if (json) return printJson(io, resource);
  const p = resource.properties;
  io.stdout(
    `name: ${resource.name}\nidScope: ${p.idScope}\nallocationPolicy: ${p.allocationPolicy}\n` +
      `serviceOperationsHostName: ${p.serviceOperationsHostName}\ndeviceProvisioningHostName: ${p.deviceProvisioningHostName}\n` +
      `linked hubs:${p.iotHubs.length === 0 ? ' none' : ''}\n${hubLines(p.iotHubs)}`,
  );
}

export function hubLines(hubs: LinkedHubEntry[]): string {
  return hubs
    .map(
      (h, i) =>
        `  [${i}] ${h.name}  location ${h.location || '-'}  weight ${h.allocationWeight ?? 1}  applyAllocationPolicy ${h.applyAllocationPolicy ?? true}\n`,
    )
    .join('');
}

const SETTABLE = new Set(['connectionString', 'location', 'allocationWeight', 'applyAllocationPolicy']);

/** Apply one `--set <path>=<value>` (az's syntax); values true/false/null/numbers are typed, the rest are strings. */
export function setPath(resource: Resource, assignment: string): void {
  const eq = assignment.indexOf('=');
  const path = eq > 0 ? assignment.slice(0, eq).trim() : '';
  const raw = assignment.slice(eq + 1);
  if (path === 'properties.allocationPolicy') {
    resource.properties.allocationPolicy = raw;
    return;
  }
  const match = /^properties\.iotHubs\[(\d{1,4})\]\.([A-Za-z]+)$/.exec(path);
  if (!match || !SETTABLE.has(match[2]!)) {
    throw new ProvisioningError(
      'invalid-input',
      `--set ${safe(path) === '?' ? '' : `${path} `}is not supported: use properties.allocationPolicy=... or properties.iotHubs[<i>].<connectionString|location|allocationWeight|applyAllocationPolicy>=...`,
    );
  }
  const hub = resource.properties.iotHubs[Number(match[1])];
  if (!hub)
    throw new ProvisioningError(
      'invalid-input',
      `--set: there is no properties.iotHubs[${match[1]}] (${resource.properties.iotHubs.length} linked hubs)`,
    );
  const field = match[2] as keyof LinkedHubEntry;
  (hub as unknown as Record<string, unknown>)[field] = field === 'connectionString' || field === 'location' ? raw : typed(raw);
}

function typed(raw: string): unknown {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  if (raw === 'null') return null;
  if (/^-?\d+$/.test(raw)) return Number(raw);
  return raw;
}
