// What differs between the boards and the simulator: the manifest maps the module
// "hosts/moddable/device" to esp32/device.ts or simulator/device.ts.

/** The platform this firmware was built for, for the boot trace ("esp32", "simulator"). */
export declare const platform: string;

/** The station MAC address ("a1:b2:c3:d4:e5:f6"), or undefined when the platform cannot tell. */
export declare function macAddress(): string | undefined;
