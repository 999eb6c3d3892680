"""The Modbus register map: layout, encodings, scales (pure; no sockets)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from host_bridge.model import FLAG_ACCEL_FAULT, FLAG_CLOCK_SYNCED, MEASUREMENT_FIXED
from host_bridge.outputs import register_map as rm
from host_bridge.outputs.register_map import (
    FaultBit,
    RegisterMap,
    StatusBit,
    decode_float,
    decode_i16,
    i16,
    value_specs,
)
from host_bridge.tags import NodeState, Quality

ROOT = Path(__file__).resolve().parents[1]


def test_float_word_order_test_vector():
    # docs: 123456.0 = 0x47F1 0x2000 (ABCD); CDAB swaps the words
    assert RegisterMap([("a", 1)], word_order="ABCD").encode_floats([123456.0]) == [0x47F1, 0x2000]
    assert RegisterMap([("a", 1)], word_order="CDAB").encode_floats([123456.0]) == [0x2000, 0x47F1]
    assert decode_float([0x47F1, 0x2000]) == 123456.0
    assert decode_float([0x2000, 0x47F1], "CDAB") == 123456.0


def test_u32_word_order():
    assert RegisterMap([("a", 1)]).words32(0x12345678) == [0x1234, 0x5678]
    assert RegisterMap([("a", 1)], word_order="CDAB").words32(0x12345678) == [0x5678, 0x1234]


def test_int16_scales_cover_engineering_ranges():
    for v in value_specs(rm.MAX_BANDS):
        assert v.eu_high * v.scale <= rm.I16_MAX, v
        assert v.eu_low * v.scale >= -rm.I16_MAX, v
        # resolution at least 1 % of the range
        assert (v.eu_high - v.eu_low) * v.scale >= 100 or v.name == "iso_zone", v


def test_int16_conversion():
    assert i16(math.nan, 100) == (rm.I16_NAN, False)
    assert i16(-12.34, 100) == ((-1234) & 0xFFFF, False)
    assert decode_i16((-1234) & 0xFFFF, 100) == -12.34
    assert i16(40.0, 1000) == (32767, True)
    assert i16(-math.inf, 1000) == ((-32767) & 0xFFFF, True)
    assert math.isnan(decode_i16(rm.I16_NAN, 10))


def test_layout_regions_fit_and_do_not_overlap():
    for bands in range(rm.MAX_BANDS + 1):
        m = RegisterMap([("a", 1)], bands=bands)
        regs = sorted(m.regions())
        assert len(m.values) == len(MEASUREMENT_FIXED) + 3 * bands
        for (o1, l1, _), (o2, _, _) in zip(regs, regs[1:]):
            assert o1 + l1 <= o2
        assert regs[-1][0] + regs[-1][1] <= rm.STRIDE
    offs = [p.offset for p in rm.STATUS_POINTS]
    covered = [o + i for p in rm.STATUS_POINTS for o, i in ((p.offset, k) for k in range(p.words))]
    assert sorted(covered) == list(range(rm.STATUS_SIZE)), "status points tile the status block"
    assert offs == sorted(offs)


def test_unit_and_stride_layouts():
    nodes = [("a", 5), ("b", 7), ("c", 9)]
    u = RegisterMap(nodes, layout="unit")
    assert [(b.unit, b.base) for b in u.nodes] == [(5, 0), (7, 0), (9, 0)]
    s = RegisterMap(nodes, layout="stride", stride_unit_id=3)
    assert [(b.unit, b.base) for b in s.nodes] == [(3, 0), (3, 300), (3, 600)]
    assert s.block("b").base == 300 and s.block("zz") is None
    with pytest.raises(ValueError):
        RegisterMap(nodes, layout="bogus")
    with pytest.raises(ValueError):
        RegisterMap([(f"n{i}", 1) for i in range(300)], layout="stride")


def _status(regs, name):
    p = next(p for p in rm.STATUS_POINTS if p.name == name)
    if p.words == 2:
        return (regs[p.offset] << 16) | regs[p.offset + 1]
    return regs[p.offset]


def test_status_initial():
    m = RegisterMap([("a", 1)])
    status, floats, ints = m.encode(NodeState("a"), Quality.INITIAL, 1_000_000)
    w = StatusBit(_status(status, "status_word"))
    assert StatusBit.NO_DATA in w and StatusBit.ONLINE not in w and StatusBit.GOOD not in w
    assert _status(status, "quality") == 3
    assert _status(status, "data_age") == 0xFFFF
    assert _status(status, "backlog") == rm.U32_NA
    assert all(r == rm.I16_NAN for r in ints)
    assert all(math.isnan(decode_float(floats[i : i + 2])) for i in range(0, len(floats), 2))


def test_status_good_with_faults_and_report():
    m = RegisterMap([("a", 1)])
    st = NodeState("a", values={"temperature": 21.5, "iso_zone": 2.0, "vel_rms_x": 3.3})
    st.source_ms, st.server_ms = 1_700_000_000_123, 1_000_000
    st.flags = FLAG_CLOCK_SYNCED | FLAG_ACCEL_FAULT
    st.last_seq, st.records, st.gaps, st.boot = 70000, 12, 3, 4
    st.status = {"journal_depth": 17.0, "journal_dropped": 2.0, "rssi": -61.0, "sensor_faults": 2.0,
                 "fw_version": 10203.0, "uptime": 99.0}
    status, floats, ints = m.encode(st, Quality.GOOD, 1_004_500, heartbeat=True)
    w = StatusBit(_status(status, "status_word"))
    for bit in (StatusBit.ONLINE, StatusBit.GOOD, StatusBit.CLOCK_SYNCED, StatusBit.ACCEL_FAULT,
                StatusBit.STATUS_VALID, StatusBit.SEQ_GAPS, StatusBit.HEARTBEAT):
        assert bit in w, bit
    assert StatusBit.STALE not in w and StatusBit.SATURATED not in w
    assert FaultBit(_status(status, "fault_bits")) == FaultBit.ACCEL | FaultBit.TEMP
    assert _status(status, "data_age") == 4
    assert _status(status, "last_seq") == 70000
    assert _status(status, "records") == 12 and _status(status, "gaps") == 3
    assert _status(status, "backlog") == 17 and _status(status, "drops") == 2
    assert _status(status, "iso_zone") == 2
    assert _status(status, "source_time_s") == 1_700_000_000 and _status(status, "source_time_ms") == 123
    assert _status(status, "rssi") == (-61) & 0xFFFF
    assert _status(status, "fw_version") == 10203 and _status(status, "uptime") == 99
    assert _status(status, "link_reconnects") == rm.U32_NA  # not in the report
    assert _status(status, "value_count") == 3
    i = m.value_names.index("vel_rms_x")
    assert decode_float(floats[2 * i : 2 * i + 2]) == pytest.approx(3.3)
    assert ints[i] == 330
    assert ints[m.value_names.index("temperature")] == 2150


@pytest.mark.parametrize(
    "q,bit", [(Quality.STALE, StatusBit.STALE), (Quality.OFFLINE, StatusBit.OFFLINE)]
)
def test_status_stale_offline(q, bit):
    m = RegisterMap([("a", 1)])
    st = NodeState("a", values={"temperature": 1.0}, source_ms=1, server_ms=1, online=q != Quality.OFFLINE)
    status, _, _ = m.encode(st, q, 100_000)
    w = StatusBit(_status(status, "status_word"))
    assert bit in w and StatusBit.GOOD not in w
    assert (StatusBit.ONLINE in w) == (q == Quality.STALE)
    assert _status(status, "quality") == int(q)


def test_saturation_flagged():
    m = RegisterMap([("a", 1)])
    st = NodeState("a", values={"kurtosis_x": 900.0}, source_ms=1, server_ms=1)
    status, _, ints = m.encode(st, Quality.GOOD, 1)
    assert ints[m.value_names.index("kurtosis_x")] == 32767
    assert StatusBit.SATURATED in StatusBit(_status(status, "status_word"))


def test_register_map_doc_is_up_to_date():
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr
