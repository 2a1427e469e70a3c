// The address an emulator endpoint listens on, as its options and the emulator command give it.

/** Whether `host` is a wildcard address (every interface: 0.0.0.0, ::, or none given), which no client can dial. */
export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}
