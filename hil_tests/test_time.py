"""Time sync: the bridge's acks set the node's clock; records then carry Unix time."""

from __future__ import annotations


def test_time_sync(running):
    rig = running
    recs = rig.wait_reporting(30)
    r = recs[-1]
    assert r.clock_synced
    # stamped at the window's start, received after the window (~0.32 s) and a batch round trip
    skew = r.received_ms - r.device_time_ms
    assert -1000 <= skew <= 5000, f"device clock {skew} ms off the bridge's"
