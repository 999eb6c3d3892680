# MPU-6050 accelerometer part (InvenSense PS-MPU-6000A, RM-MPU-6000A): accel ODR up to 1 kHz,
# 1024-byte FIFO of big-endian X/Y/Z words, read through FIFO_R_W with the byte count in
# FIFO_COUNT. An overflow drops the oldest *bytes*, so frames lose alignment: the driver
# counts it and resets the FIFO.
from drivers.bus import as_device
from drivers.errors import SensorError, probe_id

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_ACCEL_CONFIG = const(0x1C)
_FIFO_EN = const(0x23)
_INT_STATUS = const(0x3A)
_USER_CTRL = const(0x6A)
_PWR_MGMT_1 = const(0x6B)
_FIFO_COUNTH = const(0x72)
_FIFO_R_W = const(0x74)
_WHO_AM_I = const(0x75)

CHIP_ID = 0x68
_CHUNK = const(32)  # samples per burst read (192 bytes)
RATES = (1000, 500, 400, 250, 200, 125, 100, 50)  # 8 kHz / (1 + SMPLRT_DIV), DLPF off
RANGES = {2: 0, 4: 1, 8: 2, 16: 3}


class MPU6050:
    name = "MPU6050"
    max_odr_hz = 1000
    fifo_depth = 170

    def __init__(self, bus, addr=0x68, odr_hz=1000, range_g=16):
        dev = as_device(bus, addr)
        self.dev = dev
        self.overruns = 0
        self._b1 = bytearray(1)
        self._b2 = bytearray(2)
        self._buf = bytearray(6 * _CHUNK)
        mv = memoryview(self._buf)
        self._views = [mv[: 6 * k] for k in range(_CHUNK + 1)]
        probe_id(self.name, dev, _WHO_AM_I, "WHO_AM_I", CHIP_ID, self._b1)
        dev.write(_PWR_MGMT_1, 0x01)  # wake, PLL on gyro X
        self.configure(odr_hz, range_g)

    def _read8(self, reg):
        self.dev.read_into(reg, self._b1)
        return self._b1[0]

    def configure(self, odr_hz, range_g):
        if odr_hz not in RATES:
            raise SensorError("MPU6050: ODR %s Hz not one of %s" % (odr_hz, RATES))
        if range_g not in RANGES:
            raise SensorError("MPU6050: range %s g not one of 2, 4, 8, 16" % range_g)
        d = self.dev
        d.write(_CONFIG, 0)  # DLPF off: 8 kHz gyro clock, accel bandwidth 260 Hz
        d.write(_SMPLRT_DIV, 8000 // odr_hz - 1)
        d.write(_ACCEL_CONFIG, RANGES[range_g] << 3)
        d.write(_FIFO_EN, 0x08)  # accelerometer only
        d.write(_USER_CTRL, 0x44)  # FIFO on, FIFO reset
        self.odr_hz = odr_hz
        self.range_g = range_g
        self.scale_g = 1.0 / (16384 >> RANGES[range_g])
        self.full_scale = 32767

    def read_fifo_into(self, x, y, z, start, max_count):
        if self._read8(_INT_STATUS) & 0x10:  # FIFO_OFLOW: frames lost their alignment
            self.overruns += 1
            self.dev.write(_USER_CTRL, 0x44)
            return 0
        self.dev.read_into(_FIFO_COUNTH, self._b2)
        avail = ((self._b2[0] << 8) | self._b2[1]) // 6
        if avail > max_count:
            avail = max_count
        b = self._buf
        done = 0
        while done < avail:
            n = avail - done
            if n > _CHUNK:
                n = _CHUNK
            self.dev.read_into(_FIFO_R_W, self._views[n])
            j = 0
            for k in range(n):
                i = start + done + k
                v = (b[j] << 8) | b[j + 1]
                x[i] = v - 65536 if v & 0x8000 else v
                v = (b[j + 2] << 8) | b[j + 3]
                y[i] = v - 65536 if v & 0x8000 else v
                v = (b[j + 4] << 8) | b[j + 5]
                z[i] = v - 65536 if v & 0x8000 else v
                j += 6
            done += n
        return avail


class MPU6050_I2C(MPU6050):
    def __init__(self, i2c, addr=0x68, **kw):
        MPU6050.__init__(self, i2c, addr=addr, **kw)
