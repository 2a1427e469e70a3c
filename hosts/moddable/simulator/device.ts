// The simulator has no MAC address of its own (Net.get("MAC") is not implemented on Linux), so
// it takes one from the build: config "mac" in the manifest, or mac=... on the mcconfig command line.
import config from "mc/config";

export const platform = "simulator";

export function macAddress(): string | undefined {
	return typeof config.mac === "string" && config.mac !== "" ? config.mac : undefined;
}
