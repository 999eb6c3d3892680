"""Forwarding during a long backfill: oldest first, in large batches, rate-limited
(`batch.backfill_rps`), while the newest window of every slot goes ahead as a live preview so
the bridge's live values stay fresh. Every record ends up stored once, in order."""

from __future__ import annotations

import time

from host_bridge.model import FLAG_HISTORICAL, FLAG_PREVIEW
from host_bridge.tags import now_ms
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tools.virtual_node import VirtualNode

RPS = 20  # backfill records per second
INTERVAL = 0.1  # a window every 100 ms: 10 live records per second


def test_live_stays_fresh_during_rate_limited_backfill(tmp_path, broker):
    vn = VirtualNode(
        tmp_path / "bf1", "bf1", mqtt_port=broker.port, sim={"realtime": False}, window_n=256,
        interval_s=INTERVAL, status_interval_s=2.0,
        config={"batch": {"ack_timeout_s": 1.0, "backfill_rps": RPS, "max_records": 32}},
    )
    cfg = make_config(tmp_path, ["bf1"], mqtt_port=broker.port)
    try:
        with BridgeThread(cfg) as bridge:
            assert bridge.mqtt.connected.wait(10)
            vn.start()
            wait_for(lambda: bridge.historian.count("bf1") >= 5, timeout=20, what="first records")
            broker.stop()
            time.sleep(5.0)  # ~50 windows of backlog
            broker.start()
            t0 = time.monotonic()
            # both ends reconnected (the bridge resubscribes ~1 s after the broker is back)
            wait_for(lambda: now_ms() - bridge.tags.get("bf1").source_ms < 500, timeout=20, what="live again")
            ages, ahead, backlog_seen = [], 0, 0
            while time.monotonic() - t0 < 30:
                st = bridge.tags.get("bf1")
                front = bridge.historian.max_seq("bf1")  # in-order frontier
                top = st.last_seq
                if top - front > 10:  # still backfilling
                    backlog_seen += 1
                    ages.append(now_ms() - st.source_ms)
                    ahead = max(ahead, top - front)
                elif backlog_seen:
                    break
                time.sleep(0.2)
            drain_s = time.monotonic() - t0
            time.sleep(1.0)
            vn.kill()
            rows = bridge.historian.history("bf1", 0, 2**62, kind=0)
            c = bridge.counters.snapshot()
    finally:
        vn.close()

    assert backlog_seen >= 5, "the backfill was too short to observe"
    # live values stayed fresh all along: the newest window is shown within ~3 window intervals
    assert max(ages) < 1000, ages
    # rate-limited: ~50 backlog records + 10/s new ones at 20/s take seconds, not one burst
    assert drain_s > 2.5, drain_s
    # everything in order, once; backfilled records marked historical
    seqs = sorted(r.seq for r in rows)
    assert len(seqs) == len(set(seqs))
    assert not any(r.flags & FLAG_PREVIEW for r in rows if r.seq < seqs[-1] - 20)  # in-order copies came
    hist = [r for r in rows if r.flags & FLAG_HISTORICAL]
    assert len(hist) >= 30, len(hist)
    assert c.get("records_duplicate", 0) >= backlog_seen // 2  # previews re-sent in order, stored once
    # batched: the records of one message share their receive time; backlog goes in full batches
    sizes: dict[int, int] = {}
    for r in hist:
        sizes[r.received_ms] = sizes.get(r.received_ms, 0) + 1
    big = sorted(sizes.values())
    assert big[len(big) // 2] >= 16, big
