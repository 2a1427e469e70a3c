// The emulated IoT hubs behind the links: each hub has shared access policies (a key name,
// rights, a primary and a secondary key), like `az iot hub policy list` shows. DPS links a hub
// through one policy's connection string, so:
//   - a link whose policy lacks RegistryWrite or ServiceConnect is refused (DPS needs both to
//     create device identities);
//   - a link whose key matches neither of the policy's keys is refused;
//   - a connection string for a hub the emulator does not know yet creates that hub. The hub
//     exists only here, so the emulator believes the connection string: the named policy gets
//     every right (RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect) and the given key
//     as its primary key. The hub also gets IoT Hub's other default policies (iothubowner,
//     service, device, registryRead, registryReadWrite, with their default rights and fresh keys)
//     so that a refusal can be tried with one of them.
//   - after a key is renewed (`az iot hub policy renew-key`), a link still holding the old key
//     is out of date: registrations allocated to that hub fail until the link's connection
//     string is updated. linkProblem() says why.
// Hubs outlive their links: unlinking a hub leaves it (its policies and its device registry).
// Host names and key names are case-insensitive.

import type { ConnectionStringFields } from './connection-string.js';
import { DpsError, ErrorCodes, invalidConfiguration, notFound } from './dps-errors.js';
import { generateKey } from './validation.js';

export type HubRight = 'RegistryRead' | 'RegistryWrite' | 'ServiceConnect' | 'DeviceConnect';
export const HUB_RIGHTS: readonly HubRight[] = ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'];

export interface HubPolicy {
  keyName: string;
  rights: HubRight[];
  primaryKey: string;
  secondaryKey: string;
}

export interface EmulatedHub {
  hostName: string;
  policies: HubPolicy[];
}

export type RenewKey = 'primary' | 'secondary' | 'swap';

/** IoT Hub's default policies and their rights (RegistryWrite includes RegistryRead in IoT Hub). */
const DEFAULT_POLICIES: ReadonlyArray<[string, HubRight[]]> = [
  ['iothubowner', ['RegistryWrite', 'ServiceConnect', 'DeviceConnect']],
  ['service', ['ServiceConnect']],
  ['device', ['DeviceConnect']],
  ['registryRead', ['RegistryRead']],
  ['registryReadWrite', ['RegistryWrite']],
];

/** The errorCode of a registration that failed because its hub's link holds a renewed key (the emulator's choice, <status>000 + n). */
export const HUB_LINK_OUTDATED = 400006;

export class IotHubRegistry {
  readonly #hubs = new Map<string, Map<string, HubPolicy>>();
  readonly #names = new Map<string, string>();
  readonly #changed: () => void;

  /** `changed` is called after each change (a hub created, a key renewed). */
  constructor(changed: () => void = () => {}) {
    this.#changed = changed;
  }

  /** Replace every hub with those of a snapshot (DpsModel.restore). */
  restore(hubs: readonly EmulatedHub[]): void {
    this.#hubs.clear();
    this.#names.clear();
    for (const hub of hubs) {
      this.#hubs.set(hub.hostName.toLowerCase(), new Map(hub.policies.map((p) => [p.keyName.toLowerCase(), copy(p)])));
      this.#names.set(hub.hostName.toLowerCase(), hub.hostName);
    }
  }

  list(): EmulatedHub[] {
    return [...this.#hubs.keys()].map((host) => this.hub(host)!);
  }

  hub(hostName: string): EmulatedHub | undefined {
    const policies = this.#hubs.get(hostName.toLowerCase());
    if (!policies) return undefined;
    return { hostName: this.#names.get(hostName.toLowerCase())!, policies: [...policies.values()].map(copy) };
  }

  /** Whether `link` may be used as a linked hub's connection string; throws a clear 400 otherwise. Changes nothing. */
  checkLink(link: ConnectionStringFields): void {
    const policies = this.#hubs.get(link.hostName);
    if (!policies) return; // a new hub: created by admitLink
    const policy = policies.get(link.sharedAccessKeyName.toLowerCase());
    if (!policy) {
      throw invalidConfiguration(
        `The IoT hub ${link.hostName} has no shared access policy named '${link.sharedAccessKeyName}' ` +
          `(it has ${[...policies.values()].map((p) => p.keyName).join(', ')})`,
      );
    }
    const missing = (['RegistryWrite', 'ServiceConnect'] as const).filter((right) => !policy.rights.includes(right));
    if (missing.length > 0) {
      throw invalidConfiguration(
        `The shared access policy '${policy.keyName}' of ${link.hostName} lacks ${missing.join(' and ')}: ` +
          'DPS needs RegistryWrite and ServiceConnect to create device identities (use iothubowner, for example)',
      );
    }
    if (link.sharedAccessKey !== policy.primaryKey && link.sharedAccessKey !== policy.secondaryKey) {
      throw invalidConfiguration(
        `The SharedAccessKey in the connection string for ${link.hostName} matches neither key of its policy ` +
          `'${policy.keyName}' (was the key renewed? copy the current connection string of the hub)`,
      );
    }
  }

  /** checkLink, then create the hub when it is new. */
  admitLink(link: ConnectionStringFields): void {
    this.checkLink(link);
    if (this.#hubs.has(link.hostName)) return;
    const policies = new Map<string, HubPolicy>();
    for (const [keyName, rights] of DEFAULT_POLICIES) {
      policies.set(keyName.toLowerCase(), { keyName, rights: [...rights], primaryKey: generateKey(), secondaryKey: generateKey() });
    }
    policies.set(link.sharedAccessKeyName.toLowerCase(), {
      keyName: link.sharedAccessKeyName,
      rights: [...HUB_RIGHTS],
      primaryKey: link.sharedAccessKey,
      secondaryKey: generateKey(),
    });
    this.#hubs.set(link.hostName, policies);
    this.#names.set(link.hostName, link.hostName);
    this.#changed();
  }

  /** Why DPS could not use `link` now (its key was renewed, or its policy lost a right), or undefined when it can. */
  linkProblem(link: ConnectionStringFields): string | undefined {
    try {
      this.checkLink(link);
      return undefined;
    } catch (error) {
      return (
        `The connection string of the linked IoT hub ${link.hostName} is out of date: ${(error as Error).message}. ` +
        "Update the link with the hub's current connection string (az iot dps update --set " +
        'properties.iotHubs[<i>].connectionString=..., or moddable-dps dps update --set ...)'
      );
    }
  }

  /** `az iot hub policy renew-key`: a fresh primary or secondary key, or the two swapped. */
  renewKey(hostName: string, keyName: string, which: RenewKey): HubPolicy {
    const policies = this.#hubs.get(String(hostName).toLowerCase());
    if (!policies) throw notFound(`The IoT hub ${hostName} is not known to the emulator`);
    const policy = policies.get(String(keyName).toLowerCase());
    if (!policy) throw notFound(`The IoT hub ${hostName} has no shared access policy named '${keyName}'`);
    if (which === 'primary') policy.primaryKey = generateKey();
    else if (which === 'secondary') policy.secondaryKey = generateKey();
    else if (which === 'swap') [policy.primaryKey, policy.secondaryKey] = [policy.secondaryKey, policy.primaryKey];
    else throw new DpsError(400, ErrorCodes.invalidConfiguration, "The key to renew must be 'primary', 'secondary' or 'swap'");
    this.#changed();
    return copy(policy);
  }
}

/** IoT Hub writes rights as one string: 'RegistryWrite, ServiceConnect, DeviceConnect'. */
export function rightsText(rights: readonly HubRight[]): string {
  return rights.join(', ');
}

function copy(policy: HubPolicy): HubPolicy {
  return { ...policy, rights: [...policy.rights] };
}
