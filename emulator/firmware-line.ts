// The mcconfig line of a development firmware for this emulator, as the emulator's banner and
// the web console's overview print it: a whole line that works as printed once the key
// placeholder is filled in (no key is ever printed). The simulator line builds only (-t build,
// debug: its trace goes to xsbug-log), with the host's clock (sntp= : no SNTP) and a serial
// number for its registration ID; an ESP32 line builds a release firmware, flashes it and asks
// for the Wi-Fi.

export interface FirmwareLineSource {
  idScope: string;
  /** The CA certificate's file, which the firmware is built to trust. */
  caPath: string;
  enrollmentGroups: ReadonlyArray<{ enrollmentGroupId: string; provisioningStatus?: string }>;
  individualEnrollments: ReadonlyArray<{ registrationId: string }>;
}

export interface FirmwareTarget {
  /** 'lin' (the simulator) or 'esp32/<board>'. */
  platform: string;
  /** host:port of the DPS device endpoint and of the hubs' endpoint, as the device dials them. */
  endpoint: string;
  hubEndpoint: string;
}

export function mcconfigLine(source: FirmwareLineSource, target: FirmwareTarget): string {
  const simulator = target.platform === 'lin';
  const group = source.enrollmentGroups.find((g) => g.provisioningStatus !== 'disabled') ?? source.enrollmentGroups[0];
  const individual = source.individualEnrollments[0];
  const identity = group
    ? ['serial=SN-0001', `"groupKey=<primary key of enrollment group ${group.enrollmentGroupId}>"`]
    : individual
      ? [`registrationId=${individual.registrationId}`, `"deviceKey=<primary key of enrollment ${individual.registrationId}>"`]
      : ['serial=SN-0001', '"groupKey=<primary key of an enrollment group>"'];
  return [
    ...(simulator ? ['mcconfig -d -m -p lin -t build'] : [`mcconfig -m -p ${target.platform}`]),
    'manifest.json',
    `idScope=${source.idScope}`,
    `endpoint=${target.endpoint}`,
    `hubEndpoint=${target.hubEndpoint}`,
    ...(simulator ? ['sntp='] : ['ssid=<wifi> password=<wifi password>']),
    ...identity,
    `"caCertificate=$(cat ${source.caPath})"`,
  ].join(' ');
}
