# Plain float reference of the vibration features: the definitions of docs/features.md
# written as directly as possible (mean, moments, periodic Hann, radix-2 FFT, one-sided power
# spectrum). Slow and allocating; kept for tests, the benchmark, and ports without viper.
import math
from array import array

G_MM_S2 = 9806.65


def _fft(re, im, n):
    """In-place iterative radix-2 complex FFT (forward, e^-j)."""
    j = 0
    for i in range(n - 1):
        if i < j:
            re[i], re[j] = re[j], re[i]
            im[i], im[j] = im[j], im[i]
        k = n >> 1
        while k <= j:
            j -= k
            k >>= 1
        j += k
    size = 2
    while size <= n:
        half = size >> 1
        ang = -2.0 * math.pi / size
        for m in range(half):
            wr = math.cos(ang * m)
            wi = math.sin(ang * m)
            for a in range(m, n, size):
                b = a + half
                tr = re[b] * wr - im[b] * wi
                ti = re[b] * wi + im[b] * wr
                re[b] = re[a] - tr
                im[b] = im[a] - ti
                re[a] += tr
                im[a] += ti
        size <<= 1


class ReferenceExtractor:
    def __init__(self, layout):
        self.lay = layout
        n = layout.n
        try:
            self.re = array("d", bytearray(8 * n))
            self.im = array("d", bytearray(8 * n))
        except ValueError:  # no double arrays on this port
            self.re = array("f", bytearray(4 * n))
            self.im = array("f", bytearray(4 * n))
        self.win = [0.5 - 0.5 * math.cos(2 * math.pi * i / n) for i in range(n)]
        self.w2 = sum(w * w for w in self.win)
        from vibenode.features import vel_weight

        self._vel_weight = vel_weight  # held here: a running node drops the module's name (boot only)

    def compute(self, x, y, z, scale_g, out):
        lay = self.lay
        worst = -1.0
        for axis in range(3):
            v = self._axis((x, y, z)[axis], scale_g, out, axis)
            if v > worst:
                worst = v
        from vibenode.features import iso_zone

        out[28] = iso_zone(worst, lay.iso_limits) if worst >= 0 else lay.nan

    def _axis(self, buf, sg, out, axis):
        lay = self.lay
        n = lay.n
        nan = lay.nan
        xs = [buf[i] * sg for i in range(n)]
        mean = sum(xs) / n
        d = [v - mean for v in xs]
        m2 = sum(v * v for v in d) / n
        m4 = sum(v * v * v * v for v in d) / n
        rms = math.sqrt(m2)
        peak = max(abs(v) for v in d)
        out[1 + axis] = rms
        out[7 + axis] = peak
        out[10 + axis] = max(xs) - min(xs)
        out[13 + axis] = peak / rms if rms > 0 else nan
        out[16 + axis] = m4 / (m2 * m2) if m2 > 0 else nan
        re = self.re
        im = self.im
        for i in range(n):
            re[i] = d[i] * self.win[i]
            im[i] = 0.0
        _fft(re, im, n)
        h = n // 2
        norm = n * self.w2
        pw = [0.0] * (h + 1)
        for k in range(h + 1):
            p = (re[k] * re[k] + im[k] * im[k]) / norm
            pw[k] = p if k == 0 or k == h else 2 * p

        def band(k0, k1):
            return math.sqrt(sum(pw[k0:k1]))

        for i in range(len(lay.bands)):
            out[29 + 3 * i + axis] = band(*lay.band_bins[i])
        out[19 + axis] = band(*lay.hf_bins)
        vel_weight = self._vel_weight
        kv0, kv1 = lay.vel_bins
        lo, hi = lay.vel_band
        vs = 0.0
        for k in range(kv0, kv1):
            wk = vel_weight(k, lo, hi, n, lay.odr_hz)  # edge bins count by their share
            vs += wk * pw[k] * (G_MM_S2 / (2 * math.pi * k * lay.df)) ** 2
        vel = math.sqrt(vs)
        out[4 + axis] = vel
        kb = 1
        for k in range(1, h + 1):
            if pw[k] > pw[kb]:
                kb = k
        sp = 0.0
        skp = 0.0
        for j in range(max(kb - 2, 1), min(kb + 2, h) + 1):
            sp += pw[j]
            skp += j * pw[j]
        if sp > 0:
            out[22 + axis] = skp / sp * lay.df
            out[25 + axis] = math.sqrt(2 * sp)
        else:
            out[22 + axis] = nan
            out[25 + axis] = 0.0
        return vel
