# LIS3DH 3-axis accelerometer (ST DocID17530): FIFO 32 deep in stream mode, burst-read in
# one transfer (with the FIFO on, the read address rolls over from OUT_Z_H back to OUT_X_L).
# Samples stay the chip's left-justified int16; scale_g accounts for the resolution:
# high-resolution 12 bit up to 1344 Hz, low-power 8 bit at 1600 and 5376 Hz.
from drivers.bus import as_device
from drivers.errors import SensorError, probe_id

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_WHO_AM_I = const(0x0F)
_CTRL_REG1 = const(0x20)
_CTRL_REG4 = const(0x23)
_CTRL_REG5 = const(0x24)
_OUT_X_L = const(0x28)
_FIFO_CTRL = const(0x2E)
_FIFO_SRC = const(0x2F)

CHIP_ID = 0x33
WATERMARK = 16
# ODR Hz -> (CTRL_REG1 ODR code, low-power mode)
RATES = {1: (1, 0), 10: (2, 0), 25: (3, 0), 50: (4, 0), 100: (5, 0), 200: (6, 0), 400: (7, 0),
         1344: (9, 0), 1600: (8, 1), 5376: (9, 1)}
RANGES = {2: 0, 4: 1, 8: 2, 16: 3}
# mg per digit: high resolution (12 bit) and low power (8 bit), per range
_SENS_HR = {2: 1, 4: 2, 8: 4, 16: 12}
_SENS_LP = {2: 16, 4: 32, 8: 64, 16: 192}


class LIS3DH:
    name = "LIS3DH"
    max_odr_hz = 5376
    fifo_depth = 32

    def __init__(self, bus, addr=0x18, cs=None, odr_hz=1344, range_g=16):
        # I2C auto-increment: register MSB; SPI: read 0x80, multi-byte 0x40
        dev = as_device(bus, addr, cs, auto_inc=0x80)
        self.dev = dev
        self.overruns = 0
        self._b1 = bytearray(1)
        self._buf = bytearray(6 * 32)
        mv = memoryview(self._buf)
        self._views = [mv[: 6 * k] for k in range(33)]  # made once: no slicing per read
        probe_id(self.name, dev, _WHO_AM_I, "WHO_AM_I", CHIP_ID, self._b1)
        self.configure(odr_hz, range_g)

    def _read8(self, reg):
        self.dev.read_into(reg, self._b1)
        return self._b1[0]

    def configure(self, odr_hz, range_g):
        if odr_hz not in RATES:
            raise SensorError("LIS3DH: ODR %s Hz not one of %s" % (odr_hz, sorted(RATES)))
        if range_g not in RANGES:
            raise SensorError("LIS3DH: range %s g not one of 2, 4, 8, 16" % range_g)
        code, lp = RATES[odr_hz]
        d = self.dev
        d.write(_CTRL_REG1, (code << 4) | (0x08 if lp else 0) | 0x07)
        # BDU, full scale, HR unless low power
        d.write(_CTRL_REG4, 0x80 | (RANGES[range_g] << 4) | (0 if lp else 0x08))
        d.write(_CTRL_REG5, 0x40)  # FIFO_EN
        d.write(_FIFO_CTRL, 0)  # bypass clears the FIFO
        d.write(_FIFO_CTRL, 0x80 | WATERMARK)  # stream mode
        bits = 8 if lp else 12
        mg = _SENS_LP[range_g] if lp else _SENS_HR[range_g]
        self.odr_hz = odr_hz
        self.range_g = range_g
        self.scale_g = mg / 1000.0 / (1 << (16 - bits))
        self.full_scale = ((1 << (bits - 1)) - 1) << (16 - bits)

    def read_fifo_into(self, x, y, z, start, max_count):
        src = self._read8(_FIFO_SRC)
        if src & 0x40:  # OVRN_FIFO: 32 unread, the next sample overwrites the oldest
            self.overruns += 1
            n = 32
        else:
            n = src & 0x1F
        if n > max_count:
            n = max_count
        if n == 0:
            return 0
        b = self._buf
        self.dev.read_into(_OUT_X_L, self._views[n])
        j = 0
        for k in range(n):
            i = start + k
            v = b[j] | (b[j + 1] << 8)
            x[i] = v - 65536 if v & 0x8000 else v
            v = b[j + 2] | (b[j + 3] << 8)
            y[i] = v - 65536 if v & 0x8000 else v
            v = b[j + 4] | (b[j + 5] << 8)
            z[i] = v - 65536 if v & 0x8000 else v
            j += 6
        return n


class LIS3DH_I2C(LIS3DH):
    def __init__(self, i2c, addr=0x18, **kw):
        LIS3DH.__init__(self, i2c, addr=addr, **kw)


class LIS3DH_SPI(LIS3DH):
    def __init__(self, spi, cs, **kw):
        LIS3DH.__init__(self, spi, cs=cs, **kw)
