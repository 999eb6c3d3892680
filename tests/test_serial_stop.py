"""A serial node stopped with SIGINT stops gracefully: many stop/start cycles lose no seq.

The real bridge (in-process, real SQLite historian, the serial link on a pty) and the real
firmware on the MicroPython VM (tools/virtual_node.py). The serial uplink turns the REPL's
Ctrl-C off (a 0x03 byte in an ack must not raise KeyboardInterrupt on a board); on the unix
port that also reset SIGINT to its default action, so `VirtualNode.stop()` killed the node like
a power cut: its RAM stage was lost and the next boot burnt those seqs (a gap at the bridge).
Here the node is stopped at varied moments (mid-window, mid-batch, mid-flush) many times; each
stop must end with the KeyboardInterrupt path (exit code 0, journal closed), each boot must
number on right after the last seq of the boot before, and the historian must hold every seq
exactly once with no gap counted.
"""

from __future__ import annotations

import random
import re
import time

from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tools.virtual_node import VirtualNode

NODE_KW = dict(sim={"realtime": False}, window_n=256, interval_s=0.1, status_interval_s=1.0)
NODE_CFG = {"journal": {"flush_records": 2, "flush_ms": 100}, "batch": {"ack_timeout_s": 0.5},
            "serial": {"hello_interval_s": 0.5}}
CYCLES = 12


def _boots(vn):
    """(boot, next_seq) of every boot line in the node's console, in order."""
    return [(int(b), int(n)) for b, n in re.findall(r"vibenode \S+ node=\S+ boot=(\d+) next_seq=(\d+)", vn.log_text())]


def _rows(bridge, node):
    out = {}
    for kind in (0, 1):
        for r in bridge.historian.history(node, 0, 2**62, kind):
            assert r.seq not in out, r.seq  # stored once
            out[r.seq] = (r.boot, r.kind, r.ts_s, r.ts_ms)
    return out


def test_serial_sigint_stops_lose_nothing(tmp_path):
    node = "stop-serial"
    rnd = random.Random(7)
    vn = VirtualNode(tmp_path / node, node, uplink="serial", config=NODE_CFG, **NODE_KW)
    cfg = make_config(tmp_path, [node], serial=[{"port": vn.serial_path, "node": node}])
    codes = []
    try:
        with BridgeThread(cfg) as bridge:
            assert bridge.serial[0].wait_connected(10)
            for i in range(CYCLES):
                vn.start()
                wait_for(lambda i=i: len(_boots(vn)) == i + 1, timeout=30, what=f"boot {i + 1}")
                first = _boots(vn)[-1][1]
                # records of this boot acked, then a stop at a varied moment of the loop
                wait_for(lambda first=first: bridge.historian.max_seq(node) >= first + 2, timeout=30,
                         what=f"records of boot {i + 1} acked")
                time.sleep(rnd.uniform(0.0, 0.6))
                vn.stop(timeout=10)
                codes.append(vn.proc.returncode)
            vn.start()  # the last boot drains what the stops left in the journal
            wait_for(lambda: len(_boots(vn)) == CYCLES + 1, timeout=30, what="last boot")
            last = _boots(vn)[-1][1] - 1  # every seq up to here was handed out before
            wait_for(lambda: bridge.historian.max_seq(node) >= last + 2, timeout=60, what="journal drained")
            vn.stop(timeout=10)
            codes.append(vn.proc.returncode)
            time.sleep(0.5)
            rows = _rows(bridge, node)
            counters = bridge.counters.snapshot()
    finally:
        vn.close()
    log = vn.log_text()
    assert "Traceback" not in log and "FATAL" not in log, log[-3000:]
    # every stop went through KeyboardInterrupt -> journal closed, none was a kill by signal
    assert codes == [0] * (CYCLES + 1), codes
    # a clean close burns no seq: each boot numbers on right after the records of the one before
    boots = _boots(vn)
    assert [b for b, _ in boots] == list(range(1, CYCLES + 2))
    for (b0, n0), (_b1, n1) in zip(boots, boots[1:]):
        mine = [s for s, r in rows.items() if r[0] == b0]
        assert mine, b0
        assert sorted(mine) == list(range(n0, n1)), (b0, n0, n1)
    # every seq stored exactly once, none missing, no gap counted
    top = max(rows)
    assert top >= last
    assert sorted(rows) == list(range(1, top + 1))
    assert counters.get("seq_gaps", 0) == 0, counters
    assert counters.get("records_in", 0) == counters.get("records_stored", 0) + counters.get("records_duplicate", 0)
