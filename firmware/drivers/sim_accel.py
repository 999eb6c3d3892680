# Simulated 3-axis accelerometer: the virtual board's sensor.
#
# It behaves like an ADXL345 in full-resolution mode as seen by the acquisition code: int16
# counts of 1/256 g (3.9 mg/LSB), a 32-sample FIFO, samples produced at the configured ODR as
# real time passes (time.ticks_us), an overrun counted when the FIFO is not drained in time.
#
# The signal is a pure function of (seed, sample index): sample i is taken at t = i / odr, so a
# test can compute what a feature must be. Everything is integer arithmetic (a direct digital
# synthesis phase per tone, a sine table, an integer hash for noise): producing samples
# allocates nothing on the 64-bit unix port.
import math
import time
from array import array

from drivers.errors import SensorError

from micropython import const

_TAB_BITS = const(10)
_TAB_N = const(1 << _TAB_BITS)
_MASK32 = 0xFFFFFFFF
_FIFO = const(32)
_LSB_PER_G = const(256)  # full resolution: 3.9 mg/LSB at every range
_SIN = None


def _sine_table():
    global _SIN
    if _SIN is None:
        t = array("h", range(_TAB_N + 1))
        for i in range(_TAB_N + 1):
            t[i] = int(round(32767 * math.sin(2 * math.pi * i / _TAB_N)))
        _SIN = t
    return _SIN


def _hash32(v):
    # a 32-bit integer mix (xorshift-multiply): uniform bits from (seed, index, axis)
    v &= _MASK32
    v = ((v >> 16) ^ v) * 0x45D9F3B & _MASK32
    v = ((v >> 16) ^ v) * 0x45D9F3B & _MASK32
    return (v >> 16) ^ v


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
        # tones as integer DDS: phase increment per sample (Q32) and amplitude (counts, Q8)
        # (tuples of small ints: reading them allocates nothing, unlike array('q'))
        self._t_axis = tuple(t[0] for t in self.tones)
        self._t_inc = tuple(int(round(t[1] / odr_hz * 4294967296.0)) & _MASK32 for t in self.tones)
        self._t_amp = tuple(int(round(t[2] * _LSB_PER_G * 256)) for t in self.tones)
        self._dc = tuple(int(round(d * _LSB_PER_G * 256)) for d in self.dc_g)
        # noise: sum of 4 uniform 16-bit values (std 2**16/sqrt(3)), scaled to noise_g
        self._noise_num = int(round(self.noise_g * _LSB_PER_G * 256 * 1024))
        self._noise_den = 37837 * 1024
        self._next = 0  # index of the next sample to hand out
        self._base = 0  # index produced at time _t0
        self._t0 = time.ticks_us()
        self._odr_mhz = int(round(odr_hz * 1000))

    def sample(self, axis, i):
        """Counts of sample i on axis (pure function of seed, configuration, i)."""
        acc = self._dc[axis]
        tab = self._tab
        for k in range(len(self._t_axis)):
            if self._t_axis[k] != axis:
                continue
            ph = (i * self._t_inc[k]) & _MASK32
            ti = ph >> (32 - _TAB_BITS)
            fr = (ph >> (16 - _TAB_BITS)) & 0xFFFF
            s0 = tab[ti]
            s = s0 + (((tab[ti + 1] - s0) * fr) >> 16)
            acc += (s * self._t_amp[k]) >> 15
        if self._noise_num:
            h1 = _hash32(self.seed * 0x9E3779B1 + i * 6 + axis * 2)
            h2 = _hash32(self.seed * 0x9E3779B1 + i * 6 + axis * 2 + 1)
            u = (h1 & 0xFFFF) + (h1 >> 16) + (h2 & 0xFFFF) + (h2 >> 16) - 131070
            acc += u * self._noise_num // self._noise_den
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
