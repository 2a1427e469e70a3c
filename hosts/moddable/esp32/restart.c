/*
 * ESP32: restart the chip (a direct method "reboot"), as the SDK's modules/io/system does
 * without needing the ECMA-419 provider that module imports.
 */
#include "xsmc.h"
#include "esp_system.h"

void xs_moddable_dps_restart(xsMachine *the)
{
	esp_restart();
}
