"""The record model shared by every part of the bridge (pure; no I/O).

Value names and units follow docs/protocol.md, section 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KIND_MEASUREMENT = 0
KIND_STATUS = 1

FLAG_CLOCK_SYNCED = 0x01
FLAG_HISTORICAL = 0x02
FLAG_ACCEL_FAULT = 0x04
FLAG_TEMP_FAULT = 0x08
FLAG_FIFO_OVERRUN = 0x10
FLAG_CLIPPED = 0x20
# A live record a node sent ahead of its backlog; the same record follows again in order.
FLAG_PREVIEW = 0x40
FLAGS_KNOWN = 0x7F

AXES = ("x", "y", "z")


@dataclass(frozen=True)
class Quantity:
    name: str
    unit: str  # display unit
    description: str


def _per_axis(stem: str, unit: str, text: str) -> list[Quantity]:
    return [Quantity(f"{stem}_{a}", unit, f"{text}, {a} axis") for a in AXES]


MEASUREMENT_FIXED: list[Quantity] = (
    [Quantity("temperature", "degC", "Temperature")]
    + _per_axis("acc_rms", "g", "Acceleration RMS")
    + _per_axis("vel_rms", "mm/s", "Velocity RMS in the velocity band")
    + _per_axis("acc_peak", "g", "Acceleration peak")
    + _per_axis("acc_p2p", "g", "Acceleration peak-to-peak")
    + _per_axis("crest", "1", "Crest factor")
    + _per_axis("kurtosis", "1", "Kurtosis")
    + _per_axis("hf_rms", "g", "High-frequency acceleration RMS")
    + _per_axis("dom_freq", "Hz", "Dominant frequency")
    + _per_axis("dom_amp", "g", "Dominant spectral line amplitude")
    + [Quantity("iso_zone", "1", "ISO 10816-3 zone (1=A .. 4=D)")]
)

STATUS_FIELDS: list[Quantity] = [
    Quantity("uptime", "s", "Uptime"),
    Quantity("free_heap", "B", "Free heap"),
    Quantity("reset_cause", "1", "Reset cause code"),
    Quantity("rssi", "dBm", "WiFi RSSI"),
    Quantity("journal_depth", "1", "Records not yet acknowledged"),
    Quantity("journal_dropped", "1", "Records dropped by the flash quota"),
    Quantity("fifo_overruns", "1", "FIFO overruns since boot"),
    Quantity("sensor_faults", "1", "Sensor fault bits"),
    Quantity("fw_version", "1", "Firmware version"),
    Quantity("link_reconnects", "1", "Uplink reconnects since boot"),
    Quantity("windows", "1", "Windows computed since boot"),
    Quantity("errors_total", "1", "Errors counted by the node since boot"),
]


def value_names(kind: int, n: int) -> list[str]:
    """Names of the first n values of a record of this kind (unknown extras: `v<i>`)."""
    if kind == KIND_MEASUREMENT:
        names = [q.name for q in MEASUREMENT_FIXED]
        fixed = len(names)
        for i in range(fixed, n):
            band, axis = divmod(i - fixed, 3)
            names.append(f"band{band}_{AXES[axis]}")
    elif kind == KIND_STATUS:
        names = [q.name for q in STATUS_FIELDS]
    else:
        names = []
    for i in range(len(names), n):
        names.append(f"v{i}")
    return names[:n]


def quantity(name: str) -> Quantity:
    for q in MEASUREMENT_FIXED + STATUS_FIELDS:
        if q.name == name:
            return q
    if name.startswith("band"):
        return Quantity(name, "g", "Band RMS acceleration")
    return Quantity(name, "1", name)


@dataclass(slots=True)
class Record:
    """One decoded record of one node."""

    node_id: str
    seq: int
    boot: int
    kind: int
    flags: int
    ts_s: int
    ts_ms: int
    values: tuple[float, ...]
    # Set by the bridge: when it received the record (Unix ms) and which input.
    received_ms: int = 0
    source: str = ""

    @property
    def clock_synced(self) -> bool:
        return bool(self.flags & FLAG_CLOCK_SYNCED)

    @property
    def historical(self) -> bool:
        return bool(self.flags & FLAG_HISTORICAL)

    @property
    def device_time_ms(self) -> int:
        return self.ts_s * 1000 + self.ts_ms

    def named(self) -> dict[str, float]:
        return dict(zip(value_names(self.kind, len(self.values)), self.values))

    def value(self, name: str) -> float:
        return self.named().get(name, math.nan)


@dataclass(frozen=True)
class Ack:
    acked_seq: int
    time_ms: int | None
    # RESYNC (docs/protocol.md section 3.1): nonzero = the bridge refused the batch because it
    # holds other records under those seqs; the node must number on from this seq.
    next_seq: int = 0
    # FRONTIER: acked_seq is the bridge's in-order frontier (answer to a HELLO, an empty batch or
    # a batch of previews), not the end of a batch it stored; a node frees nothing on it.
    frontier: bool = False
