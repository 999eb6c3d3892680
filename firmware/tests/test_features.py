# heap: 96K
# Feature fast path on the VM against analytic values of synthetic signals (SimAccel).
import gc
import math
from array import array

from drivers.sim_accel import SimAccel, _sine_table
from vibenode.features import FeatureExtractor, bin_range, iso_limits_for, iso_zone, vel_weight

_sine_table()
N = 1024
ODR = 3200.0
FE = FeatureExtractor(N, ODR)  # big buffers first, while the heap is still unfragmented
OUT = array("f", bytearray(4 * FE.nvalues))
X = array("h", range(N))
Y = array("h", range(N))
Z = array("h", range(N))

import mptest  # noqa: E402

G = 9806.65


def run(tones=(), noise_g=0.0, dc_g=(0.0, 0.0, 1.0), seed=1):
    s = SimAccel(tones=tones, noise_g=noise_g, dc_g=dc_g, seed=seed, realtime=False)
    got = 0
    while got < N:
        got += s.read_fifo_into(X, Y, Z, got, N - got)
    FE.compute(X, Y, Z, s.scale_g, OUT)
    return OUT


def close(a, b, rel, what):
    assert abs(a - b) <= rel * abs(b), "%s: %r vs %r (rel %.4f)" % (what, a, b, rel)


def test_nvalues_and_layout():
    assert FE.nvalues == 29 + 12
    assert FE.backend == "viper"
    # 3200 Hz / 1024: 3.125 Hz bins; 100 Hz is bin 32 exactly, 1000 Hz bin 320
    assert bin_range(100, 500, N, ODR) == (32, 160)
    assert bin_range(1000, 1600, N, ODR) == (320, 513)
    # velocity band 10-1000 Hz: bin 3 (9.375 Hz) holds 0.3 of its width inside the band,
    # bin 320 (1000 Hz, a bin centre) half; bins 4..319 count whole
    assert FE.vel_bins == (3, 321)
    close(vel_weight(3, 10, 1000, N, ODR), 0.3, 1e-6, "w3")
    assert vel_weight(4, 10, 1000, N, ODR) == 1.0 and vel_weight(319, 10, 1000, N, ODR) == 1.0
    close(vel_weight(320, 10, 1000, N, ODR), 0.5, 1e-6, "w320")
    assert vel_weight(2, 10, 1000, N, ODR) == 0.0 and vel_weight(321, 10, 1000, N, ODR) == 0.0
    assert vel_weight(0, 0, 1000, N, ODR) == 0.0  # DC has no velocity


def test_single_tone_x():
    o = run(tones=((0, 100.0, 1.0),))
    close(o[1], 1 / math.sqrt(2), 0.01, "acc_rms_x")
    close(o[4], G / (2 * math.pi * 100 * math.sqrt(2)), 0.01, "vel_rms_x")
    close(o[7], 1.0, 0.01, "peak_x")
    close(o[10], 2.0, 0.01, "p2p_x")
    close(o[13], math.sqrt(2), 0.01, "crest_x")
    close(o[16], 1.5, 0.01, "kurtosis_x")
    assert abs(o[22] - 100.0) <= FE.df, o[22]
    close(o[25], 1.0, 0.01, "dom_amp_x")
    # 100 Hz sits on the lower edge bin of band 100-500: the Hann main lobe puts 1/6 of the
    # power in bin 31 (band 10-100), 5/6 in the band (docs/features.md, band edges)
    close(o[32], math.sqrt(5 / 6) / math.sqrt(2), 0.01, "band 100-500 x")
    close(o[29], math.sqrt(1 / 6) / math.sqrt(2), 0.01, "band 10-100 x")
    assert o[19] < 0.002  # nothing above 1 kHz


def test_tones_across_band_off_bin():
    for f in (40.3, 123.4, 487.0, 777.7, 990.0):
        o = run(tones=((1, f, 0.5),))
        close(o[2], 0.5 / math.sqrt(2), 0.01, "acc_rms_y %s" % f)
        close(o[5], 0.5 * G / (2 * math.pi * f * math.sqrt(2)), 0.01, "vel_rms_y %s" % f)
        assert abs(o[23] - f) <= FE.df, (f, o[23])
        close(o[26], 0.5, 0.01, "dom_amp_y %s" % f)


def test_hf_tone_and_dc_removed():
    o = run(tones=((2, 1300.0, 0.8),), dc_g=(0.5, -0.25, 1.0))
    close(o[3], 0.8 / math.sqrt(2), 0.01, "acc_rms_z")
    close(o[21], 0.8 / math.sqrt(2), 0.01, "hf_rms_z")
    close(o[29 + 9 + 2], 0.8 / math.sqrt(2), 0.01, "band 1000-1600 z")
    assert o[6] < 0.05  # 1.3 kHz is outside the velocity band
    # x and y are constant (DC only): no vibration, undefined ratios are NaN
    assert o[1] == 0.0 and o[7] == 0.0 and o[10] == 0.0
    assert o[13] != o[13] and o[16] != o[16] and o[22] != o[22]
    assert o[25] == 0.0


def test_two_tones_dominant_and_bands():
    o = run(tones=((0, 60.0, 0.2), (0, 400.0, 0.6)))
    assert abs(o[22] - 400.0) <= FE.df
    close(o[29], 0.2 / math.sqrt(2), 0.01, "band 10-100")
    close(o[32], 0.6 / math.sqrt(2), 0.01, "band 100-500")
    vel = math.sqrt((0.2 * G / (2 * math.pi * 60)) ** 2 + (0.6 * G / (2 * math.pi * 400)) ** 2)
    close(o[4], vel / math.sqrt(2), 0.01, "vel two tones")


def test_noise_kurtosis_and_crest():
    o = run(noise_g=0.3, seed=7)
    for a in range(3):
        close(o[1 + a], 0.3, 0.05, "noise rms")  # a 1024-sample estimate of the std
        # the sim's noise is a sum of 4 uniforms: kurtosis 2.7 in theory
        assert 2.4 < o[16 + a] < 3.0, o[16 + a]
        assert 2.5 < o[13 + a] < 5.0, o[13 + a]


def test_iso_zone():
    assert iso_limits_for(2, "rigid") == (1.4, 2.8, 4.5)
    assert iso_limits_for(1, "Flexible") == (3.5, 7.1, 11.0)
    mptest.raises(ValueError, iso_limits_for, 3, "rigid")
    lim = (2.8, 7.1, 18.0)
    assert [iso_zone(v, lim) for v in (0.0, 2.79, 2.8, 7.0, 7.1, 17.9, 18.0, 99.0)] == [
        1, 1, 2, 2, 3, 3, 4, 4]
    # 100 Hz at 0.2 g: 2.2 mm/s -> A;  1 g: 11 mm/s -> C;  3 g: 33 mm/s -> D
    assert run(tones=((0, 100.0, 0.2),))[28] == 1
    assert run(tones=((1, 100.0, 1.0),))[28] == 3
    assert run(tones=((2, 100.0, 3.0),))[28] == 4


def test_compute_allocates_no_buffers():
    run(tones=((0, 100.0, 1.0),), noise_g=0.05)
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        FE.compute(X, Y, Z, 1 / 256, OUT)
        used = gc.mem_alloc() - a0
    finally:
        gc.enable()
    # only float scalars of the ~40 results (boxed on this port); no per-sample storage:
    # one int16 axis alone would be 2 KB
    assert used < 12000, used
    print("compute allocated", used, "bytes (scalars)")


mptest.main(globals())
