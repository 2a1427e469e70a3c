// The simulator cannot restart itself: a direct method "reboot" is answered 501.
export const restart: (() => void) | undefined = undefined;
