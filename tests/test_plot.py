"""`host-bridge plot` on real historian data: the PNG exists, has the size asked for, is not
blank, and its velocity panel carries the ISO zone colours."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from host_bridge.plot import ZONE_COLORS, resolve_features
from host_bridge.store import SqliteHistorian
from tests.opsdata import severity_ramp

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[bridge]
data_dir = "var"
[web]
enabled = false
[[nodes]]
id = "pump-1"
site = "plant1"
area = "hall2"
asset = "P-101"
iso_limits = [1.4, 2.8, 4.5]
"""


def host_bridge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host_bridge.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@pytest.fixture
def site(tmp_path):
    (tmp_path / "bridge.toml").write_text(CONFIG)
    h = SqliteHistorian(tmp_path / "var" / "historian.sqlite3")
    recs = severity_ramp("pump-1", 720, time.time() - 60, step_s=10, limits=(1.4, 2.8, 4.5))
    h.insert([r for r in recs if not 300 <= r.seq < 330])  # an outage: the line must break
    h.close()
    return tmp_path


def _hex_rgb(h: str) -> np.ndarray:
    return np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)])


def test_plot_png_from_the_historian(site):
    out = site / "trend.png"
    r = host_bridge("plot", "-c", str(site / "bridge.toml"), "--node", "pump-1", "--from", "3h", "-o", str(out),
                    "--size", "1000x700")
    assert r.returncode == 0, r.stderr
    assert "690 records of pump-1" in r.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(out).convert("RGB")
    assert img.size == (1000, 700)
    px = np.asarray(img).reshape(-1, 3).astype(int)
    colours = np.unique(px, axis=0)
    assert len(colours) > 50, "image looks blank"
    assert (px != 255).any(axis=1).mean() > 0.10, "less than 10 % of the pixels are drawn"
    # zone bands are drawn with alpha 0.8 over white: look for each tint
    for zc in ZONE_COLORS:
        tint = np.round(_hex_rgb(zc) * 0.8 + 255 * 0.2)
        assert (np.abs(px - tint).max(axis=1) <= 3).sum() > 500, f"zone band {zc} missing"
    if os.environ.get("VIBEKIT_DOC_IMAGES"):
        r = host_bridge("plot", "-c", str(site / "bridge.toml"), "--node", "pump-1", "--from", "3h",
                        "-o", str(ROOT / "docs" / "img" / "trend-plot.png"), "--size", "1100x700")
        assert r.returncode == 0, r.stderr


def test_plot_errors_are_clear(site):
    r = host_bridge("plot", "-c", str(site / "bridge.toml"), "--node", "nope", "-o", str(site / "x.png"))
    assert r.returncode == 1 and "node 'nope'" in r.stderr
    r = host_bridge("plot", "-c", str(site / "bridge.toml"), "--node", "pump-1", "--features", "bogus")
    assert r.returncode == 1 and "unknown feature bogus" in r.stderr
    r = host_bridge("plot", "-c", str(site / "bridge.toml"), "--node", "pump-1", "--from", "yesterday-ish")
    assert r.returncode == 1 and "cannot read time" in r.stderr
    r = host_bridge("plot", "-c", str(site / "bridge.toml"), "--node", "pump-1", "--size", "10x10")
    assert r.returncode == 2 and "size" in r.stderr
    assert resolve_features("vel_rms, kurtosis_x") == ["vel_rms", "kurtosis_x"]


def test_plot_of_an_empty_range_still_draws(site):
    out = site / "empty.png"
    r = host_bridge("plot", "-c", str(site / "bridge.toml"), "--node", "pump-1", "--from", "1700000000",
                    "--to", "1700003600", "-o", str(out), "--features", "vel_rms")
    assert r.returncode == 0, r.stderr
    assert "0 records" in r.stdout
    assert Image.open(out).size == (1200, 800)
