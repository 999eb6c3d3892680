# DS18B20 1-Wire thermometer (Maxim datasheet 19-7487). A 12-bit conversion takes 750 ms, far
# longer than a sampling window may block, so the driver starts a conversion, returns, and
# picks the result up on the next read_c() (which starts the next conversion): the value is
# at most one window old and read_c() never waits, except once at the very first reading.
#
# `ow` is a MicroPython onewire.OneWire (reset, writebyte, write, readinto).
import time

from drivers.errors import SensorError

_SKIP_ROM = 0xCC
_MATCH_ROM = 0x55
_CONVERT_T = 0x44
_READ_SCRATCHPAD = 0xBE
FAMILY = 0x28


def crc8(buf, n):
    """Dallas/Maxim CRC-8 (x^8 + x^5 + x^4 + 1, reflected) of buf[0:n]."""
    crc = 0
    for i in range(n):
        b = buf[i]
        for _ in range(8):
            mix = (crc ^ b) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            b >>= 1
    return crc


class DS18B20:
    name = "DS18B20"

    def __init__(self, ow, rom=None, conv_ms=750, bus_name="1-wire"):
        self.ow = ow
        self.rom = rom
        self.conv_ms = conv_ms
        self.bus_name = bus_name
        self._sp = bytearray(9)
        self._t_start = None
        self.last_c = None
        if rom is not None:
            if len(rom) != 8 or rom[0] != FAMILY or crc8(rom, 7) != rom[7]:
                raise SensorError("DS18B20: ROM %r on %s is not a DS18B20 (family 0x%02X)"
                                  % (bytes(rom), bus_name, rom[0] if rom else 0))
        self._read_scratchpad()  # answers with a valid CRC: the device is there
        self.start()

    def _select(self):
        try:
            present = self.ow.reset()
        except OSError as e:
            raise SensorError("DS18B20: 1-Wire reset failed on %s: %s" % (self.bus_name, e))
        if not present:
            raise SensorError("DS18B20: no presence pulse on %s" % self.bus_name)
        if self.rom is None:
            self.ow.writebyte(_SKIP_ROM)
        else:
            self.ow.writebyte(_MATCH_ROM)
            self.ow.write(self.rom)

    def start(self):
        """Start a temperature conversion; the result is ready conv_ms later."""
        self._select()
        self.ow.writebyte(_CONVERT_T)
        self._t_start = time.ticks_ms()

    def _read_scratchpad(self):
        self._select()
        self.ow.writebyte(_READ_SCRATCHPAD)
        sp = self._sp
        self.ow.readinto(sp)
        if crc8(sp, 8) != sp[8] or sp[4] == 0xFF:
            raise SensorError("DS18B20: bad scratchpad on %s (CRC 0x%02X, read 0x%02X)"
                              % (self.bus_name, crc8(sp, 8), sp[8]))
        raw = sp[0] | (sp[1] << 8)
        if raw & 0x8000:
            raw -= 65536
        return raw / 16.0

    def ready(self):
        return time.ticks_diff(time.ticks_ms(), self._t_start) >= self.conv_ms

    def read_c(self):
        if not self.ready():
            if self.last_c is not None:
                return self.last_c  # still converting: the previous reading stands
            time.sleep_ms(max(0, self.conv_ms - time.ticks_diff(time.ticks_ms(), self._t_start)))
        t = self._read_scratchpad()
        self.last_c = t
        self.start()
        return t
