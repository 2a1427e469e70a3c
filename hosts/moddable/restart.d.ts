// Restarting the device: the manifest maps the module "hosts/moddable/restart" to
// esp32/restart.js (+ restart.c, esp_restart) or simulator/restart.ts (none).

/** Restart now (it does not return), or undefined where the platform cannot. */
export declare const restart: (() => void) | undefined;
