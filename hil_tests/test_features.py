"""A window on the device yields plausible features (exact ones on the virtual board's known signal)."""

from __future__ import annotations

import math

from hil_tests.conftest import SIM
from tools.commission import judge


def test_window_yields_plausible_features(running):
    rig = running
    recs = rig.wait_reporting(30)
    r = recs[-1]
    assert judge(r) == [], judge(r)
    v = r.named()
    for a in "xyz":
        assert v[f"crest_{a}"] >= 1.0 or v[f"acc_rms_{a}"] < 0.01
    if rig.dut.virtual:  # 80 Hz, 0.5 g on x; 0.01 g noise; 31 degC
        tone_axis, hz, g = SIM["tones"][0]
        assert abs(v["dom_freq_x"] - hz) <= 3200 / 1024 * 1.01
        assert math.isclose(v["acc_rms_x"], g / math.sqrt(2), rel_tol=0.05)
        vel = g * 9.80665 / (2 * math.pi * hz * math.sqrt(2)) * 1000  # mm/s, analytic
        assert math.isclose(v["vel_rms_x"], vel, rel_tol=0.08), (v["vel_rms_x"], vel)
        assert v["acc_rms_y"] < 0.05 and v["acc_rms_z"] < 0.05
        assert abs(v["temperature"] - SIM["temp_c"]) < 0.5
