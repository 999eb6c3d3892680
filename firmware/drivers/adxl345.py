# ADXL345 3-axis accelerometer (Analog Devices datasheet rev. G): full resolution (3.9 mg/LSB
# at every range), FIFO in stream mode, 32 samples deep, ODR up to 3200 Hz (SPI above 800 Hz).
# ADXL345(bus, addr=0x53, cs=None): bus is machine.I2C / busio.I2C, machine.SPI / busio.SPI
# with a chip-select pin object, or a register device from drivers.bus.
from drivers.bus import as_device
from drivers.errors import SensorError, probe_id

try:
    from micropython import const
except ImportError:  # CPython tools

    def const(x):
        return x


_DEVID = const(0x00)
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_INT_SOURCE = const(0x30)
_DATA_FORMAT = const(0x31)
_DATAX0 = const(0x32)
_FIFO_CTL = const(0x38)
_FIFO_STATUS = const(0x39)

CHIP_ID = 0xE5
_MEASURE = const(0x08)
_FULL_RES = const(0x08)
_STREAM = const(0x80)
_OVERRUN = const(0x01)
WATERMARK = 16

# BW_RATE rate codes (normal power): code -> Hz
RATES = {0x0F: 3200, 0x0E: 1600, 0x0D: 800, 0x0C: 400, 0x0B: 200, 0x0A: 100, 0x09: 50,
         0x08: 25}
RANGES = {2: 0, 4: 1, 8: 2, 16: 3}


class ADXL345:
    name = "ADXL345"
    max_odr_hz = 3200
    fifo_depth = 32

    def __init__(self, bus, addr=0x53, cs=None, odr_hz=3200, range_g=16):
        dev = as_device(bus, addr, cs)
        self.dev = dev
        self.overruns = 0
        self._b1 = bytearray(1)
        self._b6 = bytearray(6)
        probe_id(self.name, dev, _DEVID, "DEVID", CHIP_ID, self._b1)
        self.configure(odr_hz, range_g)

    def _read8(self, reg):
        self.dev.read_into(reg, self._b1)
        return self._b1[0]

    def configure(self, odr_hz, range_g):
        code = None
        for c in RATES:
            if RATES[c] == odr_hz:
                code = c
        if code is None:
            raise SensorError("ADXL345: ODR %s Hz not one of %s" % (odr_hz, sorted(RATES.values())))
        if range_g not in RANGES:
            raise SensorError("ADXL345: range %s g not one of 2, 4, 8, 16" % range_g)
        d = self.dev
        d.write(_POWER_CTL, 0)  # standby while reconfiguring
        d.write(_BW_RATE, code)
        d.write(_DATA_FORMAT, _FULL_RES | RANGES[range_g])
        d.write(_FIFO_CTL, 0)  # bypass clears the FIFO
        d.write(_FIFO_CTL, _STREAM | WATERMARK)
        d.write(_POWER_CTL, _MEASURE)
        self.odr_hz = odr_hz
        self.range_g = range_g
        self.scale_g = 1.0 / 256  # full resolution: 3.9 mg/LSB whatever the range
        self.full_scale = range_g * 256 - 1  # 10 bits at 2 g ... 13 bits at 16 g

    def read_fifo_into(self, x, y, z, start, max_count):
        d = self.dev
        b = self._b6
        if self._read8(_INT_SOURCE) & _OVERRUN:
            self.overruns += 1
        n = self._read8(_FIFO_STATUS) & 0x3F
        if n > max_count:
            n = max_count
        for k in range(n):
            d.read_into(_DATAX0, b)  # one 6-byte burst pops one FIFO entry
            i = start + k
            v = b[0] | (b[1] << 8)
            x[i] = v - 65536 if v & 0x8000 else v
            v = b[2] | (b[3] << 8)
            y[i] = v - 65536 if v & 0x8000 else v
            v = b[4] | (b[5] << 8)
            z[i] = v - 65536 if v & 0x8000 else v
        return n


class ADXL345_I2C(ADXL345):
    def __init__(self, i2c, addr=0x53, **kw):
        ADXL345.__init__(self, i2c, addr=addr, **kw)


class ADXL345_SPI(ADXL345):
    """SPI mode 3 (CPOL=1, CPHA=1), up to 5 MHz; cs is a Pin."""

    def __init__(self, spi, cs, **kw):
        ADXL345.__init__(self, spi, cs=cs, **kw)
