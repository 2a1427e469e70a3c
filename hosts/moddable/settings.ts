// The device's provisioning settings: Preference first (written at the factory, one device at a
// time), mc/config second (the build's defaults, overridable as mcconfig key=value arguments).
//
//   Preference "dps"/<key>   mc/config <key>              meaning
//   idScope                  idScope                      the DPS instance's ID scope
//   regId                    registrationId               a registration ID given outright
//   template                 registrationIdTemplate       else: build one, e.g. "{serial}-{mac}"
//   serial                   serial                       the serial number a template may name
//   deviceKey                deviceKey                    individual enrollment: the device's key
//   groupKey                 groupKey                     enrollment group: the group's key
//   endpoint                 endpoint                     DPS host[:port] (port: 8883, or 443 with mqtt-ws)
//   transport                transport                    mqtt (MQTT over TLS, 8883) or mqtt-ws (over secure WebSockets, 443)
//   ca                       caCertificate                the roots to trust instead of the built-in pair (anchors.ts)
//   cert                     certificate                  X.509: the device's certificate chain (PEM; CN = registration ID)
//   certKey                  certificateKey               X.509: its private key (PKCS#8 PEM, RSA: Moddable's TLS signs with RSA only)
//
// NVS (the ESP32's Preference) allows names of at most 15 characters: the keys above fit.
// The keys are taken together: when the factory wrote any of deviceKey, groupKey and cert, the
// build's are ignored. A certificate (X.509 attestation) replaces the symmetric keys.

import config from "mc/config";
import Preference from "preference";
import { certificatesFromPem, privateKeyFromPem } from "../../src/certificates.js";
import { ProvisioningError } from "../../src/errors.js";
import type { Endpoint } from "../../src/ports.js";

export const SETTINGS_DOMAIN = "dps";
/** A device certificate and the intermediates the factory appended. */
const MAX_CHAIN = 4;

export type Transport = "mqtt" | "mqtt-ws";
/** The port a host without one means: DPS's and IoT Hub's MQTT port, or their HTTPS port for MQTT over WebSockets. */
export const DEFAULT_PORTS: Record<Transport, number> = { mqtt: 8883, "mqtt-ws": 443 };

export type Source = "preference" | "config" | "default";

export interface Settings {
	idScope: string;
	registrationId?: string;
	/** Used when there is no registration ID; default "{serial}-{mac}", or "{mac}" without a serial. */
	registrationIdTemplate: string;
	serial?: string;
	deviceKey?: string;
	groupKey?: string;
	/** X.509 attestation: the device's certificate chain (DER, the device's first) and its PKCS#8 key (DER). */
	x509?: { certificates: Uint8Array[]; key: Uint8Array };
	endpoint: Endpoint;
	/** How the device reaches DPS and its hub. */
	transport: Transport;
	/** Where each value came from, for the boot trace (never the values of the keys). */
	sources: { idScope: Source; key: Source; endpoint: Source; transport: Source };
}

export function readSettings(): Settings {
	const idScope = setting("idScope", "idScope");
	if (!idScope) throw invalid('No ID scope: write Preference "dps"/"idScope" or build with idScope=<scope>');
	const registrationId = setting("regId", "registrationId");
	const serial = setting("serial", "serial");
	const template = setting("template", "registrationIdTemplate");
	const factoryKeys = ["deviceKey", "groupKey", "cert", "certKey"].some((key) => factoryValue(key) !== undefined);
	const keySource: Source = factoryKeys ? "preference" : "config";
	const keyValue = (preferenceKey: string, configKey: string) => (factoryKeys ? factoryValue(preferenceKey) : configValue(configKey));
	const deviceKey = keyValue("deviceKey", "deviceKey");
	const groupKey = keyValue("groupKey", "groupKey");
	const certificate = keyValue("cert", "certificate");
	const certificateKey = keyValue("certKey", "certificateKey");
	const where = (preferenceKey: string, configKey: string) =>
		factoryKeys ? `Preference "${SETTINGS_DOMAIN}"/"${preferenceKey}"` : `config ${configKey}`;
	if (!certificate !== !certificateKey) {
		throw invalid(`X.509 needs both ${where("cert", "certificate")} and ${where("certKey", "certificateKey")}`);
	}
	const x509 = certificate
		? {
				certificates: certificatesFromPem(certificate, where("cert", "certificate"), MAX_CHAIN),
				key: privateKeyFromPem(certificateKey!, where("certKey", "certificateKey")),
			}
		: undefined;
	if ([deviceKey, groupKey, x509].filter(Boolean).length !== 1) {
		throw invalid(
			x509 || (deviceKey && groupKey)
				? "Give one way to attest: deviceKey, groupKey, or cert with certKey (X.509), not several"
				: 'No key: write Preference "dps"/"deviceKey" (individual enrollment), "dps"/"groupKey" (enrollment group) or "dps"/"cert" and "dps"/"certKey" (X.509)',
		);
	}
	const endpoint = setting("endpoint", "endpoint");
	const transportSetting = setting("transport", "transport");
	const transport = (transportSetting?.value ?? "mqtt") as Transport;
	if (transport !== "mqtt" && transport !== "mqtt-ws") throw invalid(`The transport "${transport}" is not mqtt or mqtt-ws`);
	return {
		idScope: idScope.value,
		...(registrationId && { registrationId: registrationId.value }),
		registrationIdTemplate: template?.value ?? (serial ? "{serial}-{mac}" : "{mac}"),
		...(serial && { serial: serial.value }),
		...(deviceKey && { deviceKey }),
		...(groupKey && { groupKey }),
		...(x509 && { x509 }),
		endpoint: endpoint
			? parseEndpoint(endpoint.value, DEFAULT_PORTS[transport])
			: { host: "global.azure-devices-provisioning.net", port: DEFAULT_PORTS[transport] },
		transport,
		sources: {
			idScope: idScope.source,
			key: keySource,
			endpoint: endpoint?.source ?? "default",
			transport: transportSetting?.source ?? "default",
		},
	};
}

/** "host", "host:port" or "[ipv6]:port". */
export function parseEndpoint(text: string, defaultPort: number): Endpoint {
	const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(text.trim());
	const port = match?.[3] === undefined ? defaultPort : Number(match[3]);
	if (!match || port < 1 || port > 65535) {
		throw invalid(`The DPS endpoint "${text}" is not host[:port] (e.g. global.azure-devices-provisioning.net:8883)`);
	}
	return { host: (match[1] ?? match[2])!, port };
}

function setting(preferenceKey: string, configKey: string): { value: string; source: Source } | undefined {
	const factory = factoryValue(preferenceKey);
	if (factory !== undefined) return { value: factory, source: "preference" };
	const built = configValue(configKey);
	return built === undefined ? undefined : { value: built, source: "config" };
}

/** A non-empty string (or, for a serial number, an integer) from Preference. */
function factoryValue(key: string): string | undefined {
	const value = Preference.get(SETTINGS_DOMAIN, key);
	if (value === undefined || value === "") return undefined;
	if (typeof value === "string") return value;
	if (typeof value === "number" && Number.isSafeInteger(value)) return String(value);
	throw invalid(`Preference "${SETTINGS_DOMAIN}"/"${key}" must be a string`);
}

/** mcconfig key=value arguments arrive as strings; manifest values may be numbers. */
function configValue(key: string): string | undefined {
	const value = (config as Record<string, unknown>)[key];
	if (value === undefined || value === null || value === "") return undefined;
	return String(value);
}

export function configNumber(key: string, fallback: number): number {
	const value = Number((config as Record<string, unknown>)[key]);
	return Number.isFinite(value) && value > 0 ? value : fallback;
}

function invalid(message: string): ProvisioningError {
	return new ProvisioningError("invalid-input", message);
}
