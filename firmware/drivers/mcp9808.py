# MCP9808 I2C thermometer (Microchip DS20005095): 0.0625 C resolution, 13-bit two's
# complement ambient temperature in register 0x05 (big endian, flag bits 15..13).
from drivers.bus import as_device
from drivers.errors import SensorError

_T_AMBIENT = 0x05
_MANUF_ID = 0x06
_DEVICE_ID = 0x07
_RESOLUTION = 0x08
MANUF_ID = 0x0054
DEVICE_ID = 0x04


class MCP9808:
    name = "MCP9808"

    def __init__(self, bus, addr=0x18):
        dev = as_device(bus, addr)
        self.dev = dev
        self._b2 = bytearray(2)
        try:
            dev.read_into(_MANUF_ID, self._b2)
        except (SensorError, OSError) as e:
            raise SensorError("MCP9808: no answer on %s (%s)" % (dev.name, e))
        mid = (self._b2[0] << 8) | self._b2[1]
        dev.read_into(_DEVICE_ID, self._b2)
        if mid != MANUF_ID or self._b2[0] != DEVICE_ID:
            raise SensorError("MCP9808: wrong id on %s: manufacturer 0x%04X device 0x%02X, "
                              "expected 0x%04X 0x%02X" % (dev.name, mid, self._b2[0], MANUF_ID,
                                                          DEVICE_ID))
        dev.write(_RESOLUTION, 0x03)  # 0.0625 C, 250 ms conversion, continuous

    def read_c(self):
        self.dev.read_into(_T_AMBIENT, self._b2)
        raw = ((self._b2[0] & 0x1F) << 8) | self._b2[1]
        if raw & 0x1000:
            raw -= 0x2000
        return raw / 16.0


class MCP9808_I2C(MCP9808):
    def __init__(self, i2c, addr=0x18):
        MCP9808.__init__(self, i2c, addr)
