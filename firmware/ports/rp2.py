# RP2040 / Pico W port: the shared MCU code (buses in ports/_board.py) plus ADC channel 4 (the
# die temperature) and the watchdog's hardware limit.
import machine

from ports._board import BoardPort

WDT_MAX_MS = 8388  # RP2040: machine.WDT(timeout=) above this raises ValueError


class Port(BoardPort):
    name = "rp2"

    def mcu_temp_c(self):
        v = machine.ADC(4).read_u16() * 3.3 / 65535
        return 27 - (v - 0.706) / 0.001721  # RP2040 datasheet 4.9.5

    def watchdog(self, timeout_s):
        if timeout_s:
            ms = int(timeout_s * 1000)
            if ms > WDT_MAX_MS:
                print("watchdog: %d ms capped to the RP2040's %d ms" % (ms, WDT_MAX_MS))
                ms = WDT_MAX_MS
            self._wdt = machine.WDT(timeout=ms)
