// ESP32: the Wi-Fi station's MAC address, burnt into eFuse at the factory, so it is unique and
// stable per chip. setup/network (manifest_net.json) has started Wi-Fi before main runs.
import Net from "net";

export const platform = "esp32";

export function macAddress(): string | undefined {
	return Net.get("MAC", "station") || undefined;
}
