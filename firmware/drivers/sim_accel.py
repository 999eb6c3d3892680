# Simulated 3-axis accelerometer: the virtual board's sensor.
#
# It behaves like an ADXL345 in full-resolution mode as seen by the acquisition code: int16
# counts of 1/256 g (3.9 mg/LSB), a 32-sample FIFO, samples produced at the configured ODR as
# real time passes (time.ticks_us), an overrun counted when the FIFO is not drained in time.
#
# The signal is a pure function of (seed, sample index): sample i is taken at t = i / odr, so a
# test can compute what a feature must be. Everything is integer arithmetic (a direct digital
# synthesis phase per tone, a quarter-wave sine table, an integer hash for noise) that stays
# below 2**30: every intermediate is a small int even on a 32-bit port, so producing samples
# allocates nothing there either (a 32-bit product would be a heap-allocated long int).
import math
import time
from array import array

from drivers.errors import SensorError

from micropython import const

_QUARTER = const(64)  # quarter-wave table: a full turn is 256 steps of 2 pi / 256
_M15 = const(0x7FFF)
_M30 = const(0x3FFFFFFF)  # phases are Q30 turns; hash values 30 bits
_FIFO = const(32)
_LSB_PER_G = const(256)  # full resolution: 3.9 mg/LSB at every range
_SIN = None


def _sine_table():
    """sin over a quarter turn, Q15, 65 entries (sin(2 pi i / 256) for i = 0..64): linear
    interpolation between them is off by at most 7.5e-5 of the amplitude (0.02 counts at 1 g)."""
    global _SIN
    if _SIN is None:
        t = array("h", bytearray(2 * (_QUARTER + 1)))
        for i in range(_QUARTER + 1):
            t[i] = int(round(32767 * math.sin(2 * math.pi * i / (4 * _QUARTER))))
        _SIN = t
    return _SIN


def _mul30(a, b):
    """(a * b) mod 2**30 for 0 <= a, b < 2**30, as 15-bit halves (each product < 2**30)."""
    al = a & _M15
    bl = b & _M15
    lo = al * bl
    mid = (((a >> 15) * bl) & _M15) + ((al * (b >> 15)) & _M15) + (lo >> 15)
    return ((mid & _M15) << 15) | (lo & _M15)


def _hash30(v):
    # a 30-bit integer mix (xorshift-multiply rounds): uniform bits from (seed, index, axis)
    v = _mul30(v ^ (v >> 15), 0x2C1B3C6D)
    v = _mul30(v ^ (v >> 13), 0x297A2D39)
    return v ^ (v >> 16)


class SimAccel:
    max_odr_hz = 3200
    fifo_depth = _FIFO
    name = "SimAccel"

    def __init__(self, tones=(), noise_g=0.0, dc_g=(0.0, 0.0, 1.0), seed=1, realtime=True,
                 range_g=16, odr_hz=3200):
        for t in tones:
            if t[0] not in (0, 1, 2) or t[1] < 0:
                raise ValueError("tone needs (axis 0..2, freq_hz >= 0, amp_g)")
        self.tones = tuple(tones)
        self.noise_g = noise_g
        self.dc_g = tuple(dc_g)
        self.seed = seed
        self.realtime = realtime
        self.overruns = 0
        self.fail = False  # tests: True makes every read raise SensorError (a dead sensor)
        self._tab = _sine_table()
        self.configure(odr_hz, range_g)

    def configure(self, odr_hz, range_g):
        if not 0 < odr_hz <= self.max_odr_hz:
            raise SensorError("SimAccel: ODR %s Hz outside 0..%d" % (odr_hz, self.max_odr_hz))
        if range_g not in (2, 4, 8, 16):
            raise SensorError("SimAccel: range %s g not one of 2, 4, 8, 16" % range_g)
        self.odr_hz = odr_hz
        self.range_g = range_g
        self.scale_g = 1.0 / _LSB_PER_G
        self.full_scale = range_g * _LSB_PER_G - 1  # like the chip's 10..13-bit range
        # tones as integer DDS: phase increment per sample (Q30 turns) and amplitude (Q8
        # counts, applied as s * hi + (s * lo) >> 15 for a Q15 sine s: no product over 2**30)
        # (tuples of small ints: reading them allocates nothing, unlike array('q'))
        self._t_axis = tuple(t[0] for t in self.tones)
        self._t_inc = tuple(int(round(t[1] / odr_hz * 1073741824.0)) & _M30 for t in self.tones)
        amp = tuple(int(round(t[2] * _LSB_PER_G * 256)) for t in self.tones)
        self._t_amp = tuple((a >> 15, a & _M15) for a in amp)
        self._dc = tuple(int(round(d * _LSB_PER_G * 256)) for d in self.dc_g)
        # noise: sum of 4 uniform 15-bit values (std 2**15/sqrt(3)), scaled to noise_g (Q8
        # counts) as (u * mul) >> shift, mul < 2**14 so that |u * mul| < 2**30
        std = self.noise_g * _LSB_PER_G * 256 / 18918.6
        sh = 0
        while sh < 24 and std * (1 << (sh + 1)) < 16384:
            sh += 1
        self._noise = (min(16383, int(round(std * (1 << sh)))), sh)  # (mul, shift)
        self._seed_key = _hash30(_mul30(self.seed & _M30, 0x19E3779B))
        self._next = 0  # index of the next sample to hand out
        self._base = 0  # index produced at time _t0
        self._t0 = time.ticks_us()
        self._odr_mhz = int(round(odr_hz * 1000))

    def sample(self, axis, i):
        """Counts of sample i on axis (pure function of seed, configuration, i)."""
        acc = self._dc[axis]
        tab = self._tab
        i30 = i & _M30
        for k in range(len(self._t_axis)):
            if self._t_axis[k] != axis:
                continue
            ph = _mul30(i30, self._t_inc[k])
            ti = ph >> 22  # 0..255: sin(2 pi ti / 256) and the next step, interpolated
            fr = (ph >> 6) & 0xFFFF
            r = ti & (_QUARTER - 1)
            if ti & _QUARTER:  # 2nd and 4th quarter: back down the table
                s0 = tab[_QUARTER - r]
                s1 = tab[_QUARTER - 1 - r]
            else:
                s0 = tab[r]
                s1 = tab[r + 1]
            if ti & (2 * _QUARTER):  # the negative half turn
                s0 = -s0
                s1 = -s1
            s = s0 + (((s1 - s0) * fr) >> 16)
            hi, lo = self._t_amp[k]
            acc += s * hi + ((s * lo) >> 15)
        mul, sh = self._noise
        if mul:
            # the noise repeats after 2**27 samples (11.6 h at 3200 Hz)
            key = ((i & 0x7FFFFFF) * 6 + axis * 2) ^ self._seed_key
            h1 = _hash30(key)
            h2 = _hash30(key ^ 1)
            u = (h1 & _M15) + (h1 >> 15) + (h2 & _M15) + (h2 >> 15) - 65534
            acc += (u * mul) >> sh
        v = (acc + 128) >> 8
        fs = self.full_scale
        if v > fs:
            v = fs
        elif v < -fs - 1:
            v = -fs - 1
        return v

    def _produced(self):
        el = time.ticks_diff(time.ticks_us(), self._t0)
        if el >= 40000000:  # rebase every 40 s so ticks never wrap under us
            self._t0 = time.ticks_add(self._t0, 40000000)
            self._base += 40 * self._odr_mhz // 1000
            el -= 40000000
        return self._base + el * self._odr_mhz // 1000000000

    def available(self):
        if not self.realtime:
            return _FIFO
        prod = self._produced()
        if prod - self._next > _FIFO:  # the FIFO overflowed: the oldest samples are gone
            self.overruns += 1
            self._next = prod - _FIFO
        return prod - self._next

    def read_fifo_into(self, x, y, z, start, max_count):
        if self.fail:
            raise SensorError("SimAccel: simulated sensor failure")
        n = self.available()
        if n > max_count:
            n = max_count
        i = self._next
        for k in range(n):
            x[start + k] = self.sample(0, i + k)
            y[start + k] = self.sample(1, i + k)
            z[start + k] = self.sample(2, i + k)
        self._next = i + n
        return n


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = ("_sine_table", ("SimAccel", "__init__", "configure"))
