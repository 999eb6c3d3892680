"""A node whose flash is wiped starts again at seq 1: nothing it records afterwards is lost.

The real bridge (in-process, real SQLite historian; mosquitto for MQTT, a pty for serial) and
the real firmware on the MicroPython VM (tools/virtual_node.py). The node runs and is acked up
to seq N, stops, its flash image is deleted (re-flash with erase, or a new board under the same
node id), and it restarts at seq 1, boot 1. The bridge holds other records under those seqs:
it must not ack them as duplicates (the node would free records nobody stored) but refuse the
batch and send a RESYNC (docs/protocol.md section 3.1); the node numbers on from N + 1 with a
wire seq offset kept in its journal state. Checked in the historian: the old records are
untouched, every record of the wiped node is stored once, right after the old ones, and the
reset is counted once (counter, node tag, node log).
"""

from __future__ import annotations

import re
import time

import pytest

from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tools.virtual_node import VirtualNode

# 0.1 s windows: the old run lasts > 10 s, so the wiped node's record under a reused seq is
# stamped more than the bridge's same-record time tolerance later than the one stored (with a
# deterministic simulated sensor the values alone may be identical).
NODE_KW = dict(sim={"realtime": False}, window_n=256, interval_s=0.1, status_interval_s=2.0)
NODE_CFG = {"journal": {"flush_records": 2, "flush_ms": 100}, "batch": {"ack_timeout_s": 0.5},
            "serial": {"hello_interval_s": 0.5}}
OLD_RECORDS = 120


def _rows(bridge, node):
    out = {}
    for kind in (0, 1):
        for r in bridge.historian.history(node, 0, 2**62, kind):
            out[r.seq] = (r.boot, r.kind, r.ts_s, r.ts_ms, tuple(x if x == x else None for x in r.values))
    return out


def _boot_line(vn, boot):
    found = re.findall(r"vibenode \S+ node=\S+ boot=(\d+) next_seq=(\d+) depth=(\d+)", vn.log_text())
    for b, nxt, depth in found:
        if int(b) == boot:
            return int(nxt), int(depth)
    return None


@pytest.mark.parametrize("uplink", ["mqtt", "serial"])
def test_wiped_node_loses_nothing_and_is_resynced(tmp_path, broker, uplink):
    node = f"wipe-{uplink}"
    vn = VirtualNode(tmp_path / node, node, uplink=uplink, mqtt_port=broker.port, config=NODE_CFG, **NODE_KW)
    if uplink == "mqtt":
        cfg = make_config(tmp_path, [node], mqtt_port=broker.port)
    else:
        cfg = make_config(tmp_path, [node], serial=[{"port": vn.serial_path, "node": node}])
    try:
        with BridgeThread(cfg) as bridge:
            if uplink == "mqtt":
                assert bridge.mqtt.connected.wait(10)
            else:
                assert bridge.serial[0].wait_connected(10)
            vn.start()
            wait_for(lambda: bridge.historian.max_seq(node) >= OLD_RECORDS, timeout=60, what="old records acked")
            vn.stop()
            time.sleep(1.0)  # let the last batch in flight land
            old = _rows(bridge, node)
            old_max = max(old)
            assert sorted(old) == list(range(1, old_max + 1))  # acked up to N, no gaps

            # the flash is wiped: the journal state and every record are gone
            (vn.node_dir / "flash.img").unlink()
            t_wipe = time.time()
            vn.start()  # boot 1 again, seq 1 again
            wait_for(lambda: len(_rows(bridge, node)) >= len(old) + 40, timeout=60,
                     what="records after the wipe")
            vn.stop()
            vn.start()  # boot 2 of the new flash (clean stop before): drains what was left
            wait_for(lambda: _boot_line(vn, 2), timeout=20, what="boot 2")
            produced, _ = _boot_line(vn, 2)  # next_seq at boot 2: journal seqs 1..produced-1 exist
            produced -= 1
            wait_for(lambda: len(_rows(bridge, node)) >= len(old) + produced + 5, timeout=60,
                     what="backlog of the wiped boot drained")
            vn.stop()
            time.sleep(1.0)
            rows = _rows(bridge, node)
            counters = bridge.counters.snapshot()
            st = bridge.tags.get(node)
    finally:
        vn.close()
    log = vn.log_text()
    assert "Traceback" not in log and "FATAL" not in log, log[-3000:]

    # the records stored before the wipe are untouched
    assert {s: rows[s] for s in old} == old
    # the wiped node's records follow right after them, in order, each once
    new = sorted(s for s in rows if s > old_max)
    assert new[0] == old_max + 1
    wiped_boot1 = [s for s in new if rows[s][0] == 1]
    boot2 = [s for s in new if rows[s][0] == 2]
    assert wiped_boot1 + boot2 == new
    assert wiped_boot1 == list(range(old_max + 1, old_max + 1 + len(wiped_boot1)))
    # boot 2 numbers on after every seq the wiped flash's boot 1 handed out (1..produced)
    assert boot2 == list(range(old_max + 1 + produced, new[-1] + 1))
    # The stop is graceful (SIGINT: journal closed) over either uplink: nothing is missing,
    # no gap is counted (tests/test_serial_stop.py has the serial stop on its own).
    assert produced == len(wiped_boot1)
    assert counters.get("seq_gaps", 0) == 0, counters
    first = rows[old_max + 1]
    assert first[2] >= int(t_wipe) - 1  # journal seq 1 of the wiped flash, not an old record
    stamps = [(rows[s][0], rows[s][1], rows[s][2], rows[s][3]) for s in new]
    assert len(set(stamps)) == len(stamps)  # nothing stored twice under two seqs
    # counted once: bridge counter, node tag, node console
    assert counters.get("seq_resets") == 1, counters
    assert counters.get("batches_seq_conflict", 0) >= 1
    assert st is not None and st.seq_resets == 1
    assert "error seq_reset #1" in log
    assert counters.get("records_in", 0) == counters.get("records_stored", 0) + counters.get("records_duplicate", 0)
