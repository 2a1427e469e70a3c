// ESP32: the chip restarts (restart.c); the call does not return.
function _restart() @ "xs_moddable_dps_restart";

export const restart = _restart;
