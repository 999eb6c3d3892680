"""Trend plots of a node's features from the historian (matplotlib, headless Agg backend).

One panel per feature group (velocity RMS x/y/z, acceleration RMS, temperature, ...), sharing
the time axis. The velocity panel shows the node's ISO 10816-3 zone bands (A green, B yellow,
C orange, D red) from its configured `iso_limits`. Gaps in the data (the node or the link was
down) break the lines instead of being drawn across.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

from host_bridge.model import AXES, Record, quantity

# feature group -> the value names it draws
GROUPS: dict[str, list[str]] = {
    "vel_rms": [f"vel_rms_{a}" for a in AXES],
    "acc_rms": [f"acc_rms_{a}" for a in AXES],
    "acc_peak": [f"acc_peak_{a}" for a in AXES],
    "acc_p2p": [f"acc_p2p_{a}" for a in AXES],
    "crest": [f"crest_{a}" for a in AXES],
    "kurtosis": [f"kurtosis_{a}" for a in AXES],
    "hf_rms": [f"hf_rms_{a}" for a in AXES],
    "dom_freq": [f"dom_freq_{a}" for a in AXES],
    "dom_amp": [f"dom_amp_{a}" for a in AXES],
    "temperature": ["temperature"],
    "iso_zone": ["iso_zone"],
}
DEFAULT_FEATURES = ("vel_rms", "acc_rms", "temperature")
ZONE_COLORS = ("#c8e6c9", "#fff59d", "#ffcc80", "#ef9a9a")
AXIS_COLORS = {"x": "#1565c0", "y": "#2e7d32", "z": "#6a1b9a"}
TITLES = {
    "vel_rms": "Velocity RMS (mm/s) with ISO 10816-3 zones",
    "acc_rms": "Acceleration RMS (g)",
    "acc_peak": "Acceleration peak (g)",
    "acc_p2p": "Acceleration peak-to-peak (g)",
    "crest": "Crest factor",
    "kurtosis": "Kurtosis",
    "hf_rms": "HF acceleration RMS (g)",
    "dom_freq": "Dominant frequency (Hz)",
    "dom_amp": "Dominant amplitude (g)",
    "temperature": "Temperature (degC)",
    "iso_zone": "ISO zone (1=A .. 4=D)",
}


def resolve_features(spec: str | Sequence[str]) -> list[str]:
    """'vel_rms,temperature' -> groups; single value names (kurtosis_x) are allowed too."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    known = set(GROUPS) | {n for names in GROUPS.values() for n in names}
    bad = [s for s in items if s not in known and not s.startswith("band")]
    if bad or not items:
        raise ValueError(f"unknown feature {', '.join(bad) or '(none)'}; choose from {', '.join(GROUPS)}")
    return items


def _names(feature: str) -> list[str]:
    return GROUPS.get(feature, [feature])


def _break_gaps(times: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    """Insert NaN where the spacing is over 5x the median, so lines do not bridge outages."""
    if len(times) < 3:
        return times, values
    steps = sorted(b - a for a, b in zip(times, times[1:]))
    limit = max(steps[len(steps) // 2] * 5, 1e-9)
    t_out, v_out = [times[0]], [values[0]]
    for i in range(1, len(times)):
        if times[i] - times[i - 1] > limit:
            t_out.append((times[i] + times[i - 1]) / 2)
            v_out.append(math.nan)
        t_out.append(times[i])
        v_out.append(values[i])
    return t_out, v_out


def plot_trend(
    records: Sequence[tuple[int, Record]],
    out: str | Path,
    *,
    node_id: str,
    features: Sequence[str] = DEFAULT_FEATURES,
    iso_limits: tuple[float, float, float] | None = (2.8, 4.5, 7.1),
    title: str | None = None,
    size_px: tuple[int, int] = (1200, 800),
    dpi: int = 100,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Path:
    """Draw (source_ms, record) pairs to a PNG of exactly size_px; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out = Path(out)
    w, h = size_px
    fig, axes = plt.subplots(len(features), 1, sharex=True, figsize=(w / dpi, h / dpi), dpi=dpi, squeeze=False)
    axes = [a[0] for a in axes]
    local = dt.datetime.now().astimezone().tzinfo
    times = [dt.datetime.fromtimestamp(ms / 1000, local) for ms, _ in records]
    tnum = [mdates.date2num(t) for t in times]
    named = [r.named() for _, r in records]
    for ax, feature in zip(axes, features):
        top = 0.0
        for name in _names(feature):
            ys = [float(n.get(name, math.nan)) for n in named]
            finite = [y for y in ys if y == y and not math.isinf(y)]
            if finite:
                top = max(top, max(finite))
            tx, vy = _break_gaps(tnum, ys)
            axis = name.rsplit("_", 1)[-1] if name.endswith(("_x", "_y", "_z")) else ""
            ax.plot(tx, vy, lw=1.3, color=AXIS_COLORS.get(axis), label=name)
        if feature in ("vel_rms", "vel_rms_x", "vel_rms_y", "vel_rms_z") and iso_limits:
            lim = list(iso_limits)
            ymax = max(lim[2] * 1.3, top * 1.1)
            edges = [0.0, *lim, ymax]
            for i in range(4):
                ax.axhspan(edges[i], edges[i + 1], color=ZONE_COLORS[i], alpha=0.8, zorder=0, lw=0)
                mid = (edges[i] + min(edges[i + 1], ymax)) / 2
                ax.text(1.005, mid, "ABCD"[i], transform=ax.get_yaxis_transform(), va="center", fontsize=9,
                        fontweight="bold")
            ax.set_ylim(0, ymax)
        unit = quantity(_names(feature)[0]).unit
        ax.set_title(TITLES.get(feature, f"{feature} ({unit})"), fontsize=10, loc="left")
        ax.grid(True, alpha=0.3)
        if len(_names(feature)) > 1:
            ax.legend(loc="upper left", fontsize=8, ncol=3, framealpha=0.8)
        if not records:
            ax.text(0.5, 0.5, "no data in this range", transform=ax.transAxes, ha="center", va="center")
    if start_ms is not None and end_ms is not None:
        axes[-1].set_xlim(
            mdates.date2num(dt.datetime.fromtimestamp(start_ms / 1000, local)),
            mdates.date2num(dt.datetime.fromtimestamp(end_ms / 1000, local)),
        )
    locator = mdates.AutoDateLocator(tz=local, maxticks=8)
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=local))
    span = ""
    if records:
        span = f"{times[0]:%Y-%m-%d %H:%M} .. {times[-1]:%Y-%m-%d %H:%M} ({len(records)} records)"
    fig.suptitle(title or f"{node_id}  {span}", fontsize=12)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)  # no bbox_inches: the PNG is exactly size_px
    plt.close(fig)
    return out
