"""Modbus TCP output: every tag read back through pymodbus and mbpoll, both word orders."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import subprocess
import threading
import time

import pytest
from pymodbus.client import ModbusTcpClient

from host_bridge.config import BridgeConfig, ModbusConfig, NodeConfig
from host_bridge.model import FLAG_CLOCK_SYNCED, KIND_STATUS, Record
from host_bridge.outputs.modbus import ModbusOutput
from host_bridge.outputs.register_map import (
    FLOAT_OFFSET,
    INT16_OFFSET,
    STATUS_POINTS,
    StatusBit,
    decode_float,
    decode_i16,
)
from host_bridge.tags import TagStore

N_VALUES = 41  # 29 fixed + 4 bands x 3 axes


class LoopThread:
    """An asyncio loop in a daemon thread: servers live there, tests stay synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def make_values(k: float) -> tuple[float, ...]:
    vals = [k + 0.25 * i for i in range(N_VALUES)]
    vals[0] = -12.5 + k  # temperature, negative
    vals[28] = 2.0  # iso_zone
    return tuple(vals)


def rec(node, seq, values, ts_s=None, flags=FLAG_CLOCK_SYNCED, kind=0):
    ts = int(time.time()) if ts_s is None else ts_s
    return Record(node, seq, 1, kind, flags, ts, 500, values)


NODES = [("pump-1", 11), ("pump-2", 12), ("fan-1", 13), ("idle", 14), ("gone", 15)]


@pytest.fixture(scope="module")
def bridge():
    lt = LoopThread()
    ids = [n for n, _ in NODES]
    tags = TagStore(ids, stale_after_s=30, offline_after_s=120)
    outs = {}
    for name, layout, order in (("unit", "unit", "ABCD"), ("stride", "stride", "CDAB")):
        cfg = BridgeConfig(
            nodes=[NodeConfig(n, u) for n, u in NODES],
            modbus=ModbusConfig(port=0, layout=layout, word_order=order, stride_unit_id=7),
        )
        outs[name] = ModbusOutput(cfg, tags, refresh_s=0.2)
        lt.run(outs[name].start())
    now = int(time.time())
    tags.apply([rec("pump-1", 41, make_values(1.0), now), rec("pump-2", 7, make_values(2.0), now)])
    tags.apply([rec("pump-1", 42, (0, 0, 0, 0, 5.0, 3.0, 0, 0, 0, 0, 0), kind=KIND_STATUS)])
    # fan-1 stale: received 40 s ago (stale_after 30 s)
    tags.apply([rec("fan-1", 3, make_values(3.0), now - 40)], received_ms=int(time.time() * 1000) - 40_000)
    tags.apply([rec("gone", 9, make_values(4.0), now)])
    tags.set_online("gone", False)
    time.sleep(0.3)
    yield tags, outs
    assert len(tags._listeners) == 2
    for o in outs.values():
        lt.run(o.stop())
    assert tags._listeners == []  # stop removes the listener
    lt.close()


def client(port):
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
    assert c.connect()
    return c


def read_node(c, unit, base, fc=4):
    read = c.read_input_registers if fc == 4 else c.read_holding_registers
    st = read(base, count=32, device_id=unit)
    fl = read(base + FLOAT_OFFSET, count=2 * N_VALUES, device_id=unit)
    it = read(base + INT16_OFFSET, count=N_VALUES, device_id=unit)
    assert not st.isError() and not fl.isError() and not it.isError()
    return st.registers, fl.registers, it.registers


def status_field(regs, name, order="ABCD"):
    p = next(p for p in STATUS_POINTS if p.name == name)
    if p.words == 1:
        return regs[p.offset]
    hi, lo = regs[p.offset : p.offset + 2]
    if order == "CDAB":
        hi, lo = lo, hi
    return (hi << 16) | lo


@pytest.mark.parametrize("layout", ["unit", "stride"])
def test_every_tag_via_pymodbus(bridge, layout):
    tags, outs = bridge
    out = outs[layout]
    order = out.map.word_order
    c = client(out.port)
    try:
        for node, k in (("pump-1", 1.0), ("pump-2", 2.0)):
            b = out.map.block(node)
            status, floats, ints = read_node(c, b.unit, b.base, fc=4 if layout == "unit" else 3)
            exp = make_values(k)
            for i, spec in enumerate(out.map.values):
                f = decode_float(floats[2 * i : 2 * i + 2], order)
                assert f == pytest.approx(exp[i], rel=1e-6), spec.name
                assert decode_i16(ints[i], spec.scale) == pytest.approx(exp[i], abs=1 / spec.scale), spec.name
            w = StatusBit(status_field(status, "status_word"))
            assert StatusBit.GOOD in w and StatusBit.ONLINE in w
            assert status_field(status, "quality") == 0
            assert status_field(status, "iso_zone") == 2
            st = tags.get(node)
            assert status_field(status, "source_time_s", order) * 1000 + status_field(status, "source_time_ms") == st.source_ms
        p1 = out.map.block("pump-1")
        status, _, _ = read_node(c, p1.unit, p1.base)
        assert status_field(status, "last_seq", order) == 42
        assert status_field(status, "backlog", order) == 5
        assert status_field(status, "drops", order) == 3
        assert StatusBit.STATUS_VALID in StatusBit(status_field(status, "status_word"))
    finally:
        c.close()


def test_quality_in_status_word(bridge):
    _, outs = bridge
    out = outs["unit"]
    c = client(out.port)
    try:
        expect = {"fan-1": (StatusBit.STALE, 1), "idle": (StatusBit.NO_DATA, 3), "gone": (StatusBit.OFFLINE, 2)}
        for node, (bit, q) in expect.items():
            b = out.map.block(node)
            status, floats, ints = read_node(c, b.unit, b.base)  # stale data is readable, never refused
            w = StatusBit(status_field(status, "status_word"))
            assert bit in w and StatusBit.GOOD not in w, node
            assert status_field(status, "quality") == q
        b = out.map.block("fan-1")
        status, floats, _ = read_node(c, b.unit, b.base)
        assert status_field(status, "data_age") >= 40
        assert decode_float(floats[2:4]) == pytest.approx(3.25)
        b = out.map.block("idle")
        _, floats, ints = read_node(c, b.unit, b.base)
        assert math.isnan(decode_float(floats[0:2])) and ints[0] == 0x8000
    finally:
        c.close()


def test_exceptions_and_read_only(bridge):
    _, outs = bridge
    out = outs["unit"]
    c = client(out.port)
    try:
        before = dict(out.stats)
        r = c.write_register(FLOAT_OFFSET, 1, device_id=11)
        assert r.isError() and r.exception_code == 1
        r = c.write_registers(0, [1, 2], device_id=11)
        assert r.isError() and r.exception_code == 1
        r = c.write_coil(0, True, device_id=11)
        assert r.isError() and r.exception_code == 1
        r = c.read_input_registers(50, count=2, device_id=11)  # gap between status and floats
        assert r.isError() and r.exception_code == 2
        r = c.read_input_registers(20, count=20, device_id=11)  # block crossing into the gap
        assert r.isError() and r.exception_code == 2
        r = c.read_input_registers(0, count=2, device_id=99)  # unknown unit
        assert r.isError() and r.exception_code == 0x0B
        r = c.read_coils(0, count=8, device_id=11)
        assert r.isError() and r.exception_code == 1
        assert out.stats["writes_refused"] - before["writes_refused"] == 3
        assert out.stats["exceptions"] - before["exceptions"] == 7
        # the data is unchanged by the refused writes
        status, _, _ = read_node(c, 11, 0)
        assert status[0] == 1
    finally:
        c.close()


def test_update_from_another_thread_and_heartbeat(bridge):
    tags, outs = bridge
    out = outs["stride"]
    b = out.map.block("pump-2")
    c = client(out.port)
    try:
        vals = list(make_values(2.0))
        vals[4] = 9.87
        t = threading.Thread(target=tags.apply, args=([rec("pump-2", 8, tuple(vals))],))
        t.start()
        t.join()
        deadline = time.monotonic() + 2
        while True:
            _, floats, _ = read_node(c, b.unit, b.base)
            if decode_float(floats[8:10], "CDAB") == pytest.approx(9.87):
                break
            assert time.monotonic() < deadline, "update not visible"
            time.sleep(0.01)
        beats = set()
        deadline = time.monotonic() + 1.5
        while len(beats) < 2 and time.monotonic() < deadline:
            status, _, _ = read_node(c, b.unit, b.base)
            beats.add(bool(status[1] & StatusBit.HEARTBEAT))
            time.sleep(0.05)
        assert beats == {True, False}
    finally:
        c.close()


def _mbpoll(port, unit, ref, count, typ, big_endian):
    # never skipped: a missing mbpoll fails the run (tools/test.sh installs it as root)
    exe = shutil.which("mbpoll")
    assert exe, "mbpoll not found: apt-get install mbpoll"
    args = [exe, "-m", "tcp", "-a", str(unit), "-p", str(port), "-t", typ, "-r", str(ref),
            "-c", str(count), "-1", "-o", "2", "127.0.0.1"]
    if big_endian:
        args.insert(1, "-B")
    out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stdout + out.stderr
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\[(\d+)\]:\s+(\S+)", out.stdout, re.M)}


@pytest.mark.parametrize("layout", ["unit", "stride"])
def test_every_tag_via_mbpoll(bridge, layout):
    _, outs = bridge
    out = outs[layout]
    b = out.map.block("pump-1")
    big = out.map.word_order == "ABCD"  # mbpoll reads the low word first unless -B
    # references are 1-based: protocol address a = reference a + 1
    floats = _mbpoll(out.port, b.unit, b.base + FLOAT_OFFSET + 1, N_VALUES, "3:float", big)
    ints = _mbpoll(out.port, b.unit, b.base + INT16_OFFSET + 1, N_VALUES, "3", big)
    seq = _mbpoll(out.port, b.unit, b.base + 5, 1, "3:int", big)  # last_seq, u32 at offset 4
    status = _mbpoll(out.port, b.unit, b.base + 1, 4, "4", big)
    exp = make_values(1.0)
    for i, spec in enumerate(out.map.values):
        assert float(floats[b.base + FLOAT_OFFSET + 1 + 2 * i]) == pytest.approx(exp[i], rel=1e-5), spec.name
        raw = int(ints[b.base + INT16_OFFSET + 1 + i])
        raw = raw - 0x10000 if raw >= 0x8000 else raw
        assert raw / spec.scale == pytest.approx(exp[i], abs=1 / spec.scale), spec.name
    assert int(seq[b.base + 5]) == 42
    assert int(status[b.base + 1]) == 1  # map version
    assert int(status[b.base + 2]) & StatusBit.GOOD


def test_a_burst_of_updates_to_one_node_is_merged_and_the_last_value_is_served():
    """Per-node update throttle: the first change is written at once, a burst is merged, the
    newest value always lands (within node_interval_s)."""
    lt = LoopThread()
    tags = TagStore(["burst"], stale_after_s=30, offline_after_s=120)
    cfg = BridgeConfig(nodes=[NodeConfig("burst", 1)], modbus=ModbusConfig(port=0))
    out = ModbusOutput(cfg, tags, refresh_s=60, node_interval_s=0.2)
    try:
        lt.run(out.start())
        c = ModbusTcpClient("127.0.0.1", port=out.port)
        assert c.connect()

        def temperature() -> float:
            rr = c.read_input_registers(FLOAT_OFFSET, count=2, device_id=1)
            return decode_float(rr.registers, "ABCD")

        now = int(time.time())
        tags.apply([rec("burst", 1, make_values(1.0), now)])
        t0 = time.monotonic()
        while temperature() != -11.5 and time.monotonic() - t0 < 2:
            time.sleep(0.005)
        assert time.monotonic() - t0 < 0.15  # the first change is not held back
        before = out.stats["node_updates"]
        for i in range(2, 52):  # 50 changes, 100 per second
            tags.apply([rec("burst", i, make_values(float(i)), now)])
            time.sleep(0.01)
        time.sleep(0.3)
        assert temperature() == -12.5 + 51  # the newest value was written
        assert out.stats["node_updates"] - before <= 6  # merged: at most one per 0.2 s, not 50
        c.close()
    finally:
        lt.run(out.stop())
        lt.close()
