# Vibration features of one window (3 axes x n samples), per docs/features.md and the kind-0
# value table of docs/protocol.md.
#
# Fast path: integer kernels (vibenode.kernels, viper) do every per-sample and per-bin loop on
# preallocated arrays; only ~30 scalar results per axis become floats. The plain float
# reference (vibenode.features_ref) implements the same definitions and is what the tests and
# the benchmark hold the fast path against. Ports without the viper emitter (most
# CircuitPython builds) fall back to the reference automatically (`backend` tells which).
import math
from array import array

from micropython import const

try:
    from vibenode import kernels as _k
except Exception:  # no viper emitter (CircuitPython) or native code for another arch
    _k = None

_G_MM_S2 = const(9806.65)  # 1 g in mm/s**2

# ISO 10816-3 zone boundaries A/B, B/C, C/D in mm/s RMS, by machine group and foundation
ISO_10816_3 = {
    (1, "rigid"): (2.3, 4.5, 7.1),
    (1, "flexible"): (3.5, 7.1, 11.0),
    (2, "rigid"): (1.4, 2.8, 4.5),
    (2, "flexible"): (2.3, 4.5, 7.1),
}

_EPS = const(1e-6)  # bin edges: a bin exactly on an edge counts as on it despite float rounding
_TWO29 = const(536870912.0)


def iso_limits_for(group, foundation):
    """Zone limits (A/B, B/C, C/D) for machine group 1 (>300 kW) or 2 (15-300 kW) on a
    'rigid' or 'flexible' foundation."""
    key = (int(group), str(foundation).lower())
    if key not in ISO_10816_3:
        raise ValueError("ISO 10816-3: group must be 1 or 2, foundation rigid or flexible")
    return ISO_10816_3[key]


def iso_zone(v, limits):
    """1..4 for zone A..D; a value on a boundary belongs to the worse zone; NaN stays NaN."""
    if v != v:
        return v
    if v < limits[0]:
        return 1
    if v < limits[1]:
        return 2
    if v < limits[2]:
        return 3
    return 4


def bin_range(lo_hz, hi_hz, n, odr_hz):
    """Bins k (frequency k * odr / n) with lo <= f < hi; a band reaching Nyquist includes the
    Nyquist bin. Returns (k0, k1), k1 exclusive."""
    h = n // 2
    k0 = int(math.ceil(lo_hz * n / odr_hz - _EPS))
    if hi_hz >= odr_hz / 2:
        k1 = h + 1
    else:
        k1 = int(math.ceil(hi_hz * n / odr_hz - _EPS))
    if k0 < 0:
        k0 = 0
    if k1 > h + 1:
        k1 = h + 1
    if k1 < k0:
        k1 = k0
    return k0, k1


def vel_weight(k, lo_hz, hi_hz, n, odr_hz):
    """Share of bin k in the velocity band: the overlap of the bin's own interval
    [f_k - df/2, f_k + df/2] with [lo, hi], in bins (0..1). Interior bins weigh 1, the bins
    that straddle an edge the fraction inside it; DC never counts (it has no velocity)."""
    if k < 1:
        return 0.0
    a = lo_hz * n / odr_hz
    b = hi_hz * n / odr_hz
    w = min(k + 0.5, b) - max(k - 0.5, a)
    if w < _EPS:
        return 0.0
    return 1.0 if w > 1.0 else w


def vel_bin_range(lo_hz, hi_hz, n, odr_hz):
    """(k0, k1), k1 exclusive: the bins with a non-zero velocity-band weight."""
    h = n // 2
    k0 = 1
    while k0 <= h and vel_weight(k0, lo_hz, hi_hz, n, odr_hz) == 0.0:
        k0 += 1
    k1 = k0
    while k1 <= h and vel_weight(k1, lo_hz, hi_hz, n, odr_hz) > 0.0:
        k1 += 1
    return k0, k1


class FeatureLayout:
    """Indices, bin ranges and constants shared by the fast path and the reference."""

    def __init__(self, n, odr_hz, bands, vel_band, hf_edge_hz, iso_limits):
        if n < 16 or n & (n - 1):
            raise ValueError("window length must be a power of two >= 16")
        self.n = n
        self.odr_hz = odr_hz
        self.bands = tuple(tuple(b) for b in bands)
        self.vel_band = tuple(vel_band)
        self.hf_edge_hz = hf_edge_hz
        self.iso_limits = tuple(iso_limits)
        self.nvalues = 29 + 3 * len(self.bands)
        self.band_bins = tuple(bin_range(b[0], b[1], n, odr_hz) for b in self.bands)
        self.vel_bins = vel_bin_range(vel_band[0], vel_band[1], n, odr_hz)
        self.hf_bins = bin_range(hf_edge_hz, odr_hz, n, odr_hz)
        self.df = odr_hz / n
        self.nan = float("nan")


class FeatureExtractor(FeatureLayout):
    """compute(x, y, z, scale_g, out) fills out[1..nvalues-1]; out[0] is the caller's.

    in_place: the FFT of each axis runs in the axis's own buffer, which must be followed by 4
    spare bytes (the n/2 + 1 powers take 2n + 4 bytes): no work buffer of its own, but
    compute() leaves the samples overwritten. Acquisition lays its buffers out so.
    """

    def __init__(self, n=1024, odr_hz=3200.0,
                 bands=((10, 100), (100, 500), (500, 1000), (1000, 1600)),
                 vel_band=(10.0, 1000.0), hf_edge_hz=1000.0, iso_limits=(2.8, 7.1, 18.0),
                 backend=None, in_place=False):
        FeatureLayout.__init__(self, n, odr_hz, bands, vel_band, hf_edge_hz, iso_limits)
        if backend is None:
            backend = "viper" if _k is not None else "reference"
        self.backend = backend
        if backend == "reference":
            from vibenode.features_ref import ReferenceExtractor

            self._ref = ReferenceExtractor(self)
            return
        if _k is None:
            raise ValueError("viper kernels unavailable on this port")
        q = n // 4
        # big buffer first, as a raw bytearray (through viper pointers): no temporary copy at
        # construction, so it fits a fragmented heap. A real n-point FFT runs as an n/2-point
        # complex one (even samples real, odd imaginary) on int16 (re, im) pairs, and the
        # n/2 + 1 one-sided powers (int32) then take their place: one buffer of 2n + 4 bytes
        # (scratch: nothing in it survives a compute()), none when in place.
        self.work = None if in_place else bytearray(4 * (n // 2 + 1))
        self.qcos = array("H", bytearray(2 * (q + 1)))  # Q15 cosines 0..32768
        for i in range(q + 1):
            self.qcos[i] = int(math.floor(32768 * math.cos(2 * math.pi * i / n) + 0.5))
        self.res = array("i", range(16))
        # the exact window energy of the Q15 Hann the kernel applies: sum (w / 2**15)**2
        w2 = 0.0
        h = n // 2
        for i in range(n):
            k = i if i <= h else n - i
            c = self.qcos[k] if k <= q else -self.qcos[h - k]
            w = ((32768 - c) >> 1) / 32768.0
            w2 += w * w
        self.w2 = w2
        # velocity weights (kv0 / k)**2 as Q14 mantissa in [2**13, 2**14] and exponent: the
        # kernel computes them for whole bins; the band's first and last bin (partly inside
        # it) are weighed by their share too, (mantissa, exponent) of each here
        kv0, kv1 = self.vel_bins
        self.kv0sq = kv0 * kv0
        self.vw_ends = array("H", bytearray(8))
        lo, hi = self.vel_band
        for i, k in ((0, kv0), (2, kv1 - 1)):
            # 1/f**2 relative to the first bin, times the bin's share of the band (edges)
            v = (kv0 / k) ** 2 * vel_weight(k, lo, hi, n, odr_hz) if k > 0 else 0.0
            e = 0
            while v < 0.5 and e < 24:
                v *= 2
                e += 1
            self.vw_ends[i] = int(v * 16384 + 0.5)
            self.vw_ends[i + 1] = e
        self.vel_gain = (_G_MM_S2 * n / (2 * math.pi * odr_hz * kv0)) ** 2 if kv0 else 0.0

    def compute(self, x, y, z, scale_g, out):
        if self.backend == "reference":
            self._ref.compute(x, y, z, scale_g, out)
            return
        worst = -1.0
        for axis in range(3):
            buf = x if axis == 0 else (y if axis == 1 else z)
            v = self._axis(buf, scale_g, out, axis)
            if v > worst:
                worst = v
        out[28] = iso_zone(worst, self.iso_limits) if worst >= 0 else self.nan

    def _axis(self, buf, sg, out, axis):
        n = self.n
        res = self.res
        k = _k
        k.sum_min_max16(buf, n, res)
        s = res[0]
        mn = res[1]
        mx = res[2]
        m0 = s // n
        rem = s - m0 * n
        pk0 = max(mx - m0, m0 - mn) + 1
        lsh = 0
        rsh = 0
        frac = 0
        while (pk0 >> rsh) >= 16384:
            rsh += 1
        if not rsh:
            while (pk0 << (lsh + 1)) < 16384:
                lsh += 1
            frac = ((rem << lsh) + n // 2) // n
        wk = buf if self.work is None else self.work  # in place: the powers end 4 bytes past the samples
        wmax = k.moments_window(buf, n, m0, lsh, rsh, frac, self.qcos, wk, res)
        # time domain, in d units (counts * 2**(lsh - rsh))
        u = res[0] / n
        e2 = (res[1] * _TWO29 + res[2]) / n
        e3 = ((res[3] * _TWO29 + res[4]) * 16384.0 + res[5] * _TWO29 + res[6]) / n
        e4 = ((res[7] * _TWO29 + res[8]) * 268435456.0 + (res[9] * _TWO29 + res[10]) * 32768.0
              + res[11] * _TWO29 + res[12]) / n
        m2 = e2 - u * u
        m4 = e4 - 4 * u * e3 + 6 * u * u * e2 - 3 * u * u * u * u
        gd = sg * (2.0 ** (rsh - lsh))  # g per d unit
        mean = m0 + rem / n
        rms = math.sqrt(m2) * gd if m2 > 0 else 0.0
        peak = max(mx - mean, mean - mn) * sg
        out[1 + axis] = rms
        out[7 + axis] = peak
        out[10 + axis] = (mx - mn) * sg
        out[13 + axis] = peak / rms if rms > 0 else self.nan
        out[16 + axis] = m4 / (m2 * m2) if m2 > 0 else self.nan
        # spectrum: one-sided power per bin = K * p[k] in g**2
        e = k.fft_bfp(wk, n // 2, self.qcos, n, wmax)
        kb = k.real_power(wk, n // 2, self.qcos)
        pw = wk  # now the int32 powers
        # p[k] = |X[k] / 2**(e+1)|**2 / 4, one-sided power 2 |X|**2 / (n sum w**2)
        kk = (2.0 ** (2 * e + 5)) * gd * gd / (n * self.w2)
        nb = len(self.bands)
        for i in range(nb):
            b = self.band_bins[i]
            k.band_sum(pw, b[0], b[1], res, 0)
            out[29 + 3 * i + axis] = math.sqrt(kk * (res[0] * _TWO29 + res[1]))
        b = self.hf_bins
        k.band_sum(pw, b[0], b[1], res, 0)
        out[19 + axis] = math.sqrt(kk * (res[0] * _TWO29 + res[1]))
        b = self.vel_bins
        k.vel_sum(pw, b[0], b[1], self.kv0sq, self.vw_ends, res, 0)
        vel = math.sqrt(kk * self.vel_gain * (res[0] * _TWO29 + res[1]))
        out[4 + axis] = vel
        # dominant line: power centroid and energy of the peak bin +-2 (the Hann main lobe),
        # summed in integers (one kernel call instead of ~15 boxed floats per axis)
        h = n // 2
        k.line_sums(pw, kb - 2 if kb > 2 else 1, kb + 3 if kb + 3 <= h + 1 else h + 1, res)
        if res[0] or res[1]:
            sp = res[0] * _TWO29 + res[1]
            out[22 + axis] = (res[2] * _TWO29 + res[3]) / sp * self.df
            out[25 + axis] = math.sqrt(2.0 * kk * sp)
        else:
            out[22 + axis] = self.nan
            out[25 + axis] = 0.0
        return vel


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
# (the reference backend keeps its own reference to vel_weight, which it runs per window)
_BOOT_ONLY = ("ISO_10816_3", "iso_limits_for", "bin_range", "vel_weight", "vel_bin_range",
              ("FeatureLayout", "__init__"), ("FeatureExtractor", "__init__"))
