// The roots the device trusts for DPS and IoT Hub, first match wins:
//   1. Preference "dps"/"ca": written at the factory or by an update, so the anchors can change
//      without reflashing. PEM text with one or more certificates, or one DER certificate (bytes).
//      One that cannot be used is reported (a boot warning) and the next source is used.
//   2. mc/config caCertificate (PEM, one or more certificates): a development build trusting,
//      say, the local emulator's CA. A malformed one is a configuration error.
//   3. The two roots Microsoft asks Azure IoT devices to trust, built in as resources and used in
//      place from flash: DigiCert Global Root G2 and Microsoft RSA Root Certificate Authority 2017
//      (the last root migration broke devices that trusted one root only). Provenance and
//      fingerprints: the host README, checked by test/firmware-anchors.test.ts.

import Resource from "Resource";
import config from "mc/config";
import Preference from "preference";
import { certificatesFromPem, checkDerCertificate } from "../../src/certificates.js";
import { ProvisioningError } from "../../src/errors.js";
import { SETTINGS_DOMAIN } from "./settings.js";

export const AZURE_ROOTS = ["DigiCertGlobalRootG2.der", "MicrosoftRSARootCA2017.der"] as const;
/** More would only cost RAM and handshake time: a root and its successor, plus room for a migration. */
export const MAX_ANCHORS = 4;

export interface TrustAnchor {
	/** DER. */
	certificate: ArrayBuffer | HostBuffer;
	/** Where it came from, for the boot trace. */
	source: string;
}

export interface Trust {
	anchors: TrustAnchor[];
	/** Why Preference "dps"/"ca" was passed over. */
	warning?: string;
}

export function trustAnchors(): Trust {
	let warning: string | undefined;
	const stored = Preference.get(SETTINGS_DOMAIN, "ca");
	if (stored !== undefined && stored !== "") {
		try {
			return { anchors: parseAnchors(stored, `Preference "${SETTINGS_DOMAIN}"/"ca"`) };
		} catch (error) {
			const reason = error instanceof Error ? error.message : String(error);
			warning = `${reason}: using the build's anchors`;
		}
	}
	const pem = typeof config.caCertificate === "string" ? config.caCertificate.trim() : "";
	const anchors = pem
		? parseAnchors(pem, "config caCertificate")
		: AZURE_ROOTS.map((name) => ({ certificate: new Resource(name), source: name }));
	return { anchors, ...(warning !== undefined && { warning }) };
}

/** PEM text holding one or more certificates, or the bytes of one DER certificate. */
export function parseAnchors(value: unknown, source: string): TrustAnchor[] {
	if (typeof value === "string") {
		const certificates = certificatesFromPem(value, source, MAX_ANCHORS);
		return certificates.map((der, i) => ({
			certificate: der.slice().buffer,
			source: certificates.length === 1 ? source : `${source} #${i + 1}`,
		}));
	}
	if (value instanceof ArrayBuffer) return [{ certificate: checkDerCertificate(new Uint8Array(value), source).slice().buffer, source }];
	throw new ProvisioningError("invalid-input", `${source} must be PEM text or the bytes of a DER certificate`);
}
