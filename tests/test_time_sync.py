"""Record time before and after the node's clock is synced.

Boot 1 never syncs (no bridge, then a power cut): its records stay flagged unsynced (seconds
since boot), the bridge uses its receive time as their source time and never shows them as
live values; Modbus status words and the OPC UA Flags variable expose CLOCK_SYNCED clear.
Boot 2 starts unsynced too, then the bridge answers: the node converts that boot's earlier
records at send time (offset + seconds since boot) and sets CLOCK_SYNCED.
"""

from __future__ import annotations

import sqlite3
import time

from host_bridge.model import FLAG_CLOCK_SYNCED
from host_bridge.outputs.register_map import STATUS_POINTS, RegisterMap, StatusBit
from host_bridge.tags import NodeState, Quality, TagStore
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tools.virtual_node import VirtualNode


def _status_word(st: NodeState) -> StatusBit:
    p = next(p for p in STATUS_POINTS if p.name == "status_word")
    regs, _, _ = RegisterMap([(st.node_id, 1)]).encode(st, Quality.GOOD, st.server_ms or 0)
    return StatusBit(regs[p.offset])


def test_unsynced_records_converted_same_boot_marked_otherwise(tmp_path, broker):
    vn = VirtualNode(
        tmp_path / "ts1", "ts1", mqtt_port=broker.port, sim={"realtime": False}, window_n=256,
        interval_s=0.1, status_interval_s=5.0,
        config={"journal": {"flush_records": 2, "flush_ms": 100}, "batch": {"ack_timeout_s": 0.5}},
    )
    cfg = make_config(tmp_path, ["ts1"], mqtt_port=broker.port)
    try:
        vn.start()  # boot 1: no bridge, never synced
        time.sleep(1.2)
        vn.kill()
        t_boot2 = time.time()
        vn.start()  # boot 2: unsynced until the bridge answers
        time.sleep(1.2)
        with BridgeThread(cfg) as bridge:
            t_sync = time.time()
            assert bridge.mqtt.connected.wait(10)
            wait_for(lambda: (st := bridge.tags.get("ts1")) is not None and st.last_seq > 0
                     and bridge.historian.max_seq("ts1") >= st.last_seq - 2 and st.flags & FLAG_CLOCK_SYNCED,
                     timeout=20, what="drained and live")
            time.sleep(0.5)
            vn.kill()
            live = bridge.tags.get("ts1")
            rows = bridge.historian.history("ts1", 0, 2**62, kind=0)
            db = sqlite3.connect(str(cfg.data_dir / "historian.sqlite3"))
            src = dict(db.execute("SELECT seq, source_ms FROM records WHERE node='ts1'").fetchall())
            db.close()
    finally:
        vn.close()

    boots = sorted({r.boot for r in rows})
    assert len(boots) == 2, boots
    b1 = [r for r in rows if r.boot == boots[0]]
    b2 = [r for r in rows if r.boot == boots[1]]
    assert len(b1) >= 3 and len(b2) >= 15
    # boot 1 never synced: flagged, seconds since boot, source time = the bridge's receive time
    for r in b1:
        assert not r.flags & FLAG_CLOCK_SYNCED, r
        assert r.ts_s < 100
        assert src[r.seq] == r.received_ms
    # boot 2: every record carries Unix time, the early ones converted at send time
    made_before_sync = [r for r in b2 if r.device_time_ms < t_sync * 1000]
    assert len(made_before_sync) >= 8, len(made_before_sync)
    for r in b2:
        assert r.flags & FLAG_CLOCK_SYNCED, r
        assert t_boot2 * 1000 - 500 < r.device_time_ms < time.time() * 1000 + 500, (r.seq, r.device_time_ms)
        assert src[r.seq] == r.device_time_ms
    times = [r.device_time_ms for r in sorted(b2, key=lambda r: r.seq)]
    assert times == sorted(times)
    # converted times follow the windows' pace (0.1 s apart; the clock offset is exact to ~ms)
    steps = [b - a for a, b in zip(times, times[1:])]
    assert 60 <= sorted(steps)[len(steps) // 2] <= 200, steps
    # the live value is a synced boot-2 record, never the old boot's unsynced backlog
    assert live.boot == boots[1] and live.flags & FLAG_CLOCK_SYNCED
    assert StatusBit.CLOCK_SYNCED in _status_word(live)
    # a node whose only values are unsynced shows CLOCK_SYNCED clear (source = receive time)
    tags = TagStore(["ts1"])
    live_b1 = [r for r in b1 if not r.historical]
    if not live_b1:  # every boot-1 record came as backlog; take one as if it had been live
        r = b1[-1]
        r.flags &= ~0x02
        live_b1 = [r]
    tags.apply(live_b1)
    st = tags.get("ts1")
    assert StatusBit.CLOCK_SYNCED not in _status_word(st)
    assert st.source_ms == live_b1[-1].received_ms and not st.flags & FLAG_CLOCK_SYNCED
