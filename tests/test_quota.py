"""Flash quota: a node whose link is down longer than its journal can hold drops the OLDEST
unacked records, counts them (persisted), and the count reaches the bridge: the status record's
journal_dropped -> tags -> the Modbus `drops` register; the bridge's gap counter matches the
seqs that never arrived, and every newer record arrives."""

from __future__ import annotations

import time

from host_bridge.outputs.register_map import STATUS_POINTS, RegisterMap, StatusBit
from host_bridge.tags import Quality
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tools.virtual_node import VirtualNode


def _reg(regs, name):
    p = next(p for p in STATUS_POINTS if p.name == name)
    return (regs[p.offset] << 16) | regs[p.offset + 1] if p.words == 2 else regs[p.offset]


def test_quota_drops_oldest_and_reports(tmp_path, broker):
    # 4 blocks of quota, 4 records per flush (one block each): the journal holds ~16 records
    vn = VirtualNode(
        tmp_path / "q1", "q1", mqtt_port=broker.port, sim={"realtime": False}, window_n=256,
        interval_s=0.03, status_interval_s=0.5,
        config={"journal": {"quota_bytes": 16384, "flush_records": 4, "offline_flush_records": 4, "flush_ms": 100},
                "batch": {"ack_timeout_s": 0.5, "backfill_rps": 0}},
    )
    cfg = make_config(tmp_path, ["q1"], mqtt_port=broker.port)
    try:
        with BridgeThread(cfg) as bridge:
            assert bridge.mqtt.connected.wait(10)
            vn.start()
            wait_for(lambda: bridge.historian.count("q1") >= 10, timeout=20, what="records before the outage")
            broker.stop()  # the link is down: nothing leaves the node, not even live previews
            first_frontier = bridge.historian.max_seq("q1")
            time.sleep(3.0)  # ~100 records made, the journal holds ~16
            broker.start()

            def reported():
                st = bridge.tags.get("q1")
                return st is not None and st.status.get("journal_dropped", 0) > 0 and st.gaps > 0

            wait_for(reported, timeout=30, what="drop count at the bridge")
            time.sleep(1.5)  # the status record after the drain carries the final count
            vn.kill()
            time.sleep(0.3)
            st = bridge.tags.get("q1")
            c = bridge.counters.snapshot()
            seqs = bridge.historian.seqs("q1")
            front = bridge.historian.max_seq("q1")  # in-order frontier: above it only previews
    finally:
        vn.close()

    dropped = int(st.status["journal_dropped"])
    have = set(seqs)
    top = front
    missing = sorted(set(range(1, top + 1)) - have)
    assert dropped > 40, dropped
    # oldest first: the lost seqs lie right after what the bridge held when the link went
    # down, and everything newer than them arrived
    assert missing[0] > first_frontier
    assert all(s in have for s in range(missing[-1] + 1, top + 1))
    # Every missing seq was dropped (no power cut here). A dropped record may still have
    # reached the bridge: as a live preview, or in the batch in flight when the link went down.
    held = sum(1 for s in have if first_frontier - 64 < s <= missing[-1])
    assert len(missing) <= dropped <= len(missing) + held, (dropped, len(missing), held)
    # the gap counter matches what never arrived
    assert c.get("seq_gaps") == st.gaps == len(missing), (c.get("seq_gaps"), st.gaps, len(missing))
    # Modbus: the status block carries the drop count and flags the gap
    m = RegisterMap([("q1", 1)])
    status, _, _ = m.encode(st, Quality.GOOD, st.server_ms or 0)
    assert _reg(status, "drops") == dropped
    assert _reg(status, "gaps") == len(missing)
    assert StatusBit.SEQ_GAPS in StatusBit(_reg(status, "status_word"))
