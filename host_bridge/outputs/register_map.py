"""The Modbus register map, generated from the configuration (pure: no I/O, no pymodbus).

Every node gets one block of registers with the same layout:

* status registers at offset 0 (32 registers: map version, status word, quality, data age,
  sequence, counters, faults, the node's own status report),
* every measurement value as IEEE-754 float32 (2 registers each) at offset 100,
* the same values as scaled int16 (1 register each) at offset 200, in the style integrators
  know from vibration transmitters (velocity mm/s x100, acceleration g x1000, temperature
  degC x100, frequency Hz x10, crest and kurtosis x100).

Layout "unit": each node answers on its own unit id, block at address 0.
Layout "stride": all nodes on one unit id, node i (in configuration order) at i * STRIDE.

Both read functions 3 (holding) and 4 (input registers) return the same map, so clients that
can only read holding registers work too. Addresses here are protocol addresses (0-based);
the documentation also gives the 1-based references (30001 + address, 40001 + address).
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass

from host_bridge.model import (
    FLAG_ACCEL_FAULT,
    FLAG_CLIPPED,
    FLAG_CLOCK_SYNCED,
    FLAG_FIFO_OVERRUN,
    FLAG_HISTORICAL,
    FLAG_TEMP_FAULT,
    KIND_MEASUREMENT,
    MEASUREMENT_FIXED,
    quantity,
    value_names,
)
from host_bridge.tags import NodeState, Quality

MAP_VERSION = 1
STATUS_OFFSET = 0
STATUS_SIZE = 32
FLOAT_OFFSET = 100
INT16_OFFSET = 200
STRIDE = 300  # registers per node in the "stride" layout
MAX_BANDS = 7  # 29 fixed + 21 band values = 50 values = 100 float registers (100..199)
DEFAULT_BANDS = 4
MAX_VALUES = len(MEASUREMENT_FIXED) + 3 * MAX_BANDS

I16_NAN = 0x8000  # -32768: value not available (NaN, fault, no data yet)
I16_MAX = 32767  # saturated values are clipped to +-32767 and flagged (status bit 13)
U32_NA = 0xFFFFFFFF  # counter from the node's status report: not available (yet)
U16_NA = 0xFFFF


class StatusBit(enum.IntFlag):
    """Bits of the per-node status word (status register 1)."""

    ONLINE = 1 << 0  # node is reachable (state message online and/or data within offline_after_s)
    GOOD = 1 << 1  # values are fresh (OPC UA Good)
    STALE = 1 << 2  # values older than stale_after_s (OPC UA Uncertain_LastUsableValue)
    OFFLINE = 1 << 3  # node offline or silent past offline_after_s (Bad_NoCommunication)
    NO_DATA = 1 << 4  # no measurement received yet (Bad_WaitingForInitialData)
    STATUS_VALID = 1 << 5  # a node status report (kind 1) has been received
    CLOCK_SYNCED = 1 << 6  # source time is the node's synchronised Unix time
    HISTORICAL = 1 << 7  # the shown values came from the node's backlog
    ACCEL_FAULT = 1 << 8  # accelerometer failed in the shown window (vibration values NaN)
    TEMP_FAULT = 1 << 9  # temperature sensor failed in the shown window
    FIFO_OVERRUN = 1 << 10  # sensor FIFO overran during the shown window
    CLIPPED = 1 << 11  # a sample hit the sensor's full scale during the shown window
    SEQ_GAPS = 1 << 12  # missing sequence numbers were seen (see gaps registers)
    SATURATED = 1 << 13  # an int16 mirror value was clipped to +-32767
    HEARTBEAT = 1 << 15  # toggles every second while the bridge runs


class FaultBit(enum.IntFlag):
    """Bits of the fault register (status register 14)."""

    ACCEL = 1 << 0  # window flag ACCEL_FAULT or sensor_faults bit 0 of the last status report
    TEMP = 1 << 1  # window flag TEMP_FAULT or sensor_faults bit 1 of the last status report
    FIFO_OVERRUN = 1 << 2  # window flag FIFO_OVERRUN
    CLIPPED = 1 << 3  # window flag CLIPPED


@dataclass(frozen=True)
class ValueSpec:
    """One measurement value: its unit, int16 scale and engineering range (OPC UA EURange)."""

    name: str
    unit: str
    description: str
    scale: int  # int16 register = round(value * scale)
    eu_low: float
    eu_high: float


# (int16 scale, EU low, EU high) per value stem. The int16 range +-32767/scale is at least the
# engineering range everywhere: accelerometers on these nodes are +-16 g at most (peak-to-peak
# up to 32 g), velocity severity beyond 300 mm/s is far past ISO zone D, and Nyquist of the
# fastest supported sensor (LIS3DH 5.376 kHz) is 2.7 kHz.
_SCALES: dict[str, tuple[int, float, float]] = {
    "temperature": (100, -40.0, 125.0),
    "acc_rms": (1000, 0.0, 16.0),
    "vel_rms": (100, 0.0, 50.0),
    "acc_peak": (1000, 0.0, 16.0),
    "acc_p2p": (1000, 0.0, 32.0),
    "crest": (100, 0.0, 20.0),
    "kurtosis": (100, 0.0, 50.0),
    "hf_rms": (1000, 0.0, 16.0),
    "dom_freq": (10, 0.0, 3000.0),
    "dom_amp": (1000, 0.0, 16.0),
    "iso_zone": (1, 1.0, 4.0),
    "band": (1000, 0.0, 16.0),
}


def _stem(name: str) -> str:
    if name.startswith("band"):
        return "band"
    return name.rsplit("_", 1)[0] if name.endswith(("_x", "_y", "_z")) else name


def value_specs(bands: int = DEFAULT_BANDS) -> list[ValueSpec]:
    """The measurement values of one node, in record order (fixed values, then bands)."""
    if not 0 <= bands <= MAX_BANDS:
        raise ValueError(f"bands must be 0..{MAX_BANDS}, got {bands}")
    specs = []
    for name in value_names(KIND_MEASUREMENT, len(MEASUREMENT_FIXED) + 3 * bands):
        q = quantity(name)
        scale, lo, hi = _SCALES[_stem(name)]
        desc = q.description
        if name.startswith("band"):
            band, axis = name[4:].split("_")
            desc = f"Band {band} RMS acceleration, {axis} axis (edges in the node config)"
        specs.append(ValueSpec(name, q.unit, desc, scale, lo, hi))
    return specs


@dataclass(frozen=True)
class Point:
    """One documented register (or register pair) at an offset inside a node block."""

    offset: int
    name: str
    dtype: str  # u16, i16, u32, f32
    unit: str
    scale: int  # raw = value * scale (1 for unscaled)
    description: str

    @property
    def words(self) -> int:
        return 2 if self.dtype in ("u32", "f32") else 1


STATUS_POINTS: list[Point] = [
    Point(0, "map_version", "u16", "1", 1, f"Register map version ({MAP_VERSION})"),
    Point(1, "status_word", "u16", "bits", 1, "Status word (see the bit table)"),
    Point(2, "quality", "u16", "1", 1, "0 good, 1 stale, 2 offline, 3 waiting for initial data"),
    Point(3, "data_age", "u16", "s", 1, "Seconds since the bridge received the shown values (65535: none / more)"),
    Point(4, "last_seq", "u32", "1", 1, "Highest record sequence number received"),
    Point(6, "records", "u32", "1", 1, "Records received since the bridge started"),
    Point(8, "gaps", "u32", "1", 1, "Missing sequence numbers seen in live order"),
    Point(10, "backlog", "u32", "1", 1, "Node journal depth: records not yet acknowledged (status report)"),
    Point(12, "drops", "u32", "1", 1, "Records the node dropped by its flash quota (status report)"),
    Point(14, "fault_bits", "u16", "bits", 1, "Fault bits (see the fault table)"),
    Point(15, "iso_zone", "u16", "1", 1, "ISO 10816-3 zone of the worst axis, 1=A .. 4=D (0: unknown)"),
    Point(16, "source_time_s", "u32", "s", 1, "Source time of the shown values, Unix seconds"),
    Point(18, "source_time_ms", "u16", "ms", 1, "Source time, milliseconds part"),
    Point(19, "boot", "u16", "1", 1, "Node boot counter"),
    Point(20, "uptime", "u32", "s", 1, "Node uptime (status report)"),
    Point(22, "fifo_overruns", "u32", "1", 1, "FIFO overruns since boot (status report)"),
    Point(24, "link_reconnects", "u32", "1", 1, "Uplink reconnects since boot (status report)"),
    Point(26, "fw_version", "u32", "1", 1, "Firmware version, major*10000 + minor*100 + patch (status report)"),
    Point(28, "free_heap", "u32", "B", 1, "Free heap (status report)"),
    Point(30, "rssi", "i16", "dBm", 1, "WiFi RSSI (status report; -32768: none)"),
    Point(31, "value_count", "u16", "1", 1, "Number of values in the node's last measurement record"),
]

# status-report fields shown as u32 (NaN / no report: 0xFFFFFFFF)
_STATUS_U32 = (
    ("backlog", "journal_depth"),
    ("drops", "journal_dropped"),
    ("uptime", "uptime"),
    ("fifo_overruns", "fifo_overruns"),
    ("link_reconnects", "link_reconnects"),
    ("fw_version", "fw_version"),
    ("free_heap", "free_heap"),
)


@dataclass(frozen=True)
class NodeBlock:
    node_id: str
    unit: int  # Modbus unit id
    base: int  # address of the block's first register


def i16(value: float, scale: int) -> tuple[int, bool]:
    """Scaled int16 register (two's complement) and whether it saturated."""
    if value != value:  # NaN
        return I16_NAN, False
    s = value * scale
    if s >= I16_MAX + 0.5:
        return I16_MAX, True
    if s <= -I16_MAX - 0.5:
        return (-I16_MAX) & 0xFFFF, True
    return round(s) & 0xFFFF, False


def _u32(v: float) -> int:
    if v != v or v < 0 or math.isinf(v):
        return U32_NA
    return min(int(v), 0xFFFFFFFE)


class RegisterMap:
    """The register map of one bridge: node blocks plus the per-node layout and its encoder."""

    def __init__(
        self,
        node_ids_units: list[tuple[str, int]],
        layout: str = "unit",
        word_order: str = "ABCD",
        stride_unit_id: int = 1,
        bands: int = DEFAULT_BANDS,
    ) -> None:
        if layout not in ("unit", "stride"):
            raise ValueError(f"layout must be 'unit' or 'stride', got {layout!r}")
        if word_order not in ("ABCD", "CDAB"):
            raise ValueError(f"word_order must be ABCD or CDAB, got {word_order!r}")
        self.layout = layout
        self.word_order = word_order
        self.bands = bands
        self.values = value_specs(bands)
        self.value_names = [v.name for v in self.values]
        self._scales = [v.scale for v in self.values]
        n = len(self.values)
        self._f32 = struct.Struct(f">{n}f")
        self._f32_words = struct.Struct(f">{2 * n}H")
        self._swap = word_order == "CDAB"
        if layout == "unit":
            self.nodes = [NodeBlock(nid, unit, 0) for nid, unit in node_ids_units]
        else:
            max_nodes = 65536 // STRIDE
            if len(node_ids_units) > max_nodes:
                raise ValueError(f"stride layout holds at most {max_nodes} nodes")
            self.nodes = [NodeBlock(nid, stride_unit_id, i * STRIDE) for i, (nid, _) in enumerate(node_ids_units)]
        self._by_id = {b.node_id: b for b in self.nodes}

    @classmethod
    def from_config(cls, cfg, bands: int = DEFAULT_BANDS) -> RegisterMap:
        m = cfg.modbus
        return cls(
            [(n.id, n.unit_id) for n in cfg.nodes],
            layout=m.layout,
            word_order=m.word_order,
            stride_unit_id=m.stride_unit_id,
            bands=bands,
        )

    # -- layout ----------------------------------------------------------------------------

    def block(self, node_id: str) -> NodeBlock | None:
        return self._by_id.get(node_id)

    def regions(self) -> list[tuple[int, int, str]]:
        """(offset, length, name) of the mapped regions inside a node block."""
        n = len(self.values)
        return [
            (STATUS_OFFSET, STATUS_SIZE, "status"),
            (FLOAT_OFFSET, 2 * n, "float32"),
            (INT16_OFFSET, n, "int16"),
        ]

    def units(self) -> dict[int, list[NodeBlock]]:
        out: dict[int, list[NodeBlock]] = {}
        for b in self.nodes:
            out.setdefault(b.unit, []).append(b)
        return out

    def value_points(self) -> list[Point]:
        pts = []
        for i, v in enumerate(self.values):
            pts.append(Point(FLOAT_OFFSET + 2 * i, v.name, "f32", v.unit, 1, v.description))
        for i, v in enumerate(self.values):
            pts.append(Point(INT16_OFFSET + i, v.name, "i16", v.unit, v.scale, v.description))
        return pts

    def points(self) -> list[Point]:
        return STATUS_POINTS + self.value_points()

    # -- encoding --------------------------------------------------------------------------

    def words32(self, v: int) -> list[int]:
        hi, lo = (v >> 16) & 0xFFFF, v & 0xFFFF
        return [lo, hi] if self._swap else [hi, lo]

    def encode_floats(self, values: list[float]) -> list[int]:
        if len(values) == len(self.values):
            words = list(self._f32_words.unpack(self._f32.pack(*values)))
        else:
            n = len(values)
            words = list(struct.unpack(f">{2 * n}H", struct.pack(f">{n}f", *values)))
        if self._swap:
            words[0::2], words[1::2] = words[1::2], words[0::2]
        return words

    def encode(
        self, st: NodeState | None, quality: Quality, now_ms: int, heartbeat: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        """Registers of one node: (status, float32 block, int16 block)."""
        nan = math.nan
        vals = st.values if st is not None else {}
        seq = [float(vals.get(name, nan)) for name in self.value_names]
        floats = self.encode_floats(seq)
        ints = []
        saturated = False
        for v, scale in zip(seq, self._scales):
            r, sat = i16(v, scale)
            ints.append(r)
            saturated |= sat
        status = self.encode_status(st, quality, now_ms, heartbeat, saturated)
        return status, floats, ints

    def encode_status(
        self, st: NodeState | None, quality: Quality, now_ms: int, heartbeat: bool, saturated: bool = False
    ) -> list[int]:
        nan = math.nan
        regs = [0] * STATUS_SIZE
        w = 0
        if quality == Quality.GOOD:
            w |= StatusBit.GOOD
        elif quality == Quality.STALE:
            w |= StatusBit.STALE
        elif quality == Quality.OFFLINE:
            w |= StatusBit.OFFLINE
        else:
            w |= StatusBit.NO_DATA
        online = False
        if st is not None:
            online = (st.online is True and quality != Quality.OFFLINE) or (
                st.online is None and quality in (Quality.GOOD, Quality.STALE)
            )
        if online:
            w |= StatusBit.ONLINE
        if heartbeat:
            w |= StatusBit.HEARTBEAT
        if saturated:
            w |= StatusBit.SATURATED
        regs[0] = MAP_VERSION
        regs[2] = int(quality)
        regs[3] = U16_NA
        status = st.status if st is not None else {}
        if status:
            w |= StatusBit.STATUS_VALID
        faults = 0
        if st is not None:
            f = st.flags if st.server_ms is not None else 0
            sensor_faults = status.get("sensor_faults", nan)
            sf = int(sensor_faults) if sensor_faults == sensor_faults else 0
            if f & FLAG_ACCEL_FAULT or sf & 1:
                faults |= FaultBit.ACCEL
            if f & FLAG_TEMP_FAULT or sf & 2:
                faults |= FaultBit.TEMP
            if f & FLAG_FIFO_OVERRUN:
                faults |= FaultBit.FIFO_OVERRUN
            if f & FLAG_CLIPPED:
                faults |= FaultBit.CLIPPED
            if f & FLAG_CLOCK_SYNCED:
                w |= StatusBit.CLOCK_SYNCED
            if f & FLAG_HISTORICAL:
                w |= StatusBit.HISTORICAL
            if f & FLAG_ACCEL_FAULT:
                w |= StatusBit.ACCEL_FAULT
            if f & FLAG_TEMP_FAULT:
                w |= StatusBit.TEMP_FAULT
            if f & FLAG_FIFO_OVERRUN:
                w |= StatusBit.FIFO_OVERRUN
            if f & FLAG_CLIPPED:
                w |= StatusBit.CLIPPED
            if st.gaps:
                w |= StatusBit.SEQ_GAPS
            if st.server_ms is not None:
                regs[3] = min(max(0, (now_ms - st.server_ms) // 1000), U16_NA)
            regs[4:6] = self.words32(st.last_seq & 0xFFFFFFFF)
            regs[6:8] = self.words32(st.records & 0xFFFFFFFF)
            regs[8:10] = self.words32(st.gaps & 0xFFFFFFFF)
            zone = st.values.get("iso_zone", nan)
            regs[15] = int(zone) if zone == zone and 0 <= zone <= 4 else 0
            if st.source_ms is not None:
                regs[16:18] = self.words32((st.source_ms // 1000) & 0xFFFFFFFF)
                regs[18] = st.source_ms % 1000
            regs[19] = st.boot & 0xFFFF
            regs[31] = len(st.values) & 0xFFFF
        for point, field in _STATUS_U32:
            off = _STATUS_OFFSETS[point]
            regs[off : off + 2] = self.words32(_u32(status.get(field, math.nan)))
        rssi = status.get("rssi", math.nan)
        regs[30] = i16(rssi, 1)[0]
        regs[14] = int(faults)
        regs[1] = int(w)
        return regs


_STATUS_OFFSETS = {p.name: p.offset for p in STATUS_POINTS}


def decode_float(words: list[int], word_order: str = "ABCD") -> float:
    """Inverse of the float32 encoding (for tests and tools)."""
    hi, lo = (words[1], words[0]) if word_order == "CDAB" else (words[0], words[1])
    return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]


def decode_i16(raw: int, scale: int) -> float:
    if raw == I16_NAN:
        return math.nan
    return (raw - 0x10000 if raw & 0x8000 else raw) / scale
