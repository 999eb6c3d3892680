"""Link loss under load: zero records lost, zero duplicates.

MQTT: the real firmware on the VM sampling back to back, a real mosquitto stopped and started
50 times, the bridge daemon (`host-bridge run`, its own process) killed with SIGKILL mid-drain
and restarted. Serial: the node over a pty, the bridge's side of the line closed and reopened
50 times. At the end the node is stopped cleanly (journal closed), restarted without new
windows, and drains: the historian must hold exactly seqs 1..N, once each.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import serial

from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tools.virtual_node import VirtualNode

ROOT = Path(__file__).resolve().parents[1]
PREVIEW = 0x40
CYCLES = int(os.environ.get("LINKLOSS_CYCLES", "50"))
# 20 windows/s and repeated outages build backlogs of ~1,000 records: give the journal room for
# them (2 MB flash, 1.5 MB quota), so this test is about link loss; quota drops (counted and
# reported as journal_dropped) have their own test (test_quota.py).
NODE_KW = dict(sim={"realtime": False, "flash_blocks": 512}, window_n=256, interval_s=0.05, status_interval_s=0.5)
NODE_CFG = {"batch": {"ack_timeout_s": 1.0}, "journal": {"quota_bytes": 1536 * 1024}}


class BridgeProcess:
    def __init__(self, tmp: Path, broker_port: int, node: str) -> None:
        self.cfg = tmp / "bridge.toml"
        self.cfg.write_text(
            f'[bridge]\ndata_dir = "{tmp / "var"}"\n[mqtt]\nport = {broker_port}\nclient_id = "linkloss-bridge"\n'
            '[modbus]\nenabled = false\n[opcua]\nenabled = false\n[web]\nenabled = false\n'
            f'[[nodes]]\nid = "{node}"\n'
        )
        self.db = tmp / "var" / "historian.sqlite3"
        self.log = tmp / "bridge.log"
        self.proc: subprocess.Popen | None = None
        self.node = node

    def start(self) -> None:
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "host_bridge.cli", "run", "-c", str(self.cfg)],
                stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def rows(self) -> list[tuple[int, int]]:
        if not self.db.exists():
            return []
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return list(db.execute("SELECT seq, flags FROM records WHERE node=? ORDER BY seq", (self.node,)))
        except sqlite3.OperationalError:  # the schema is not there yet
            return []
        finally:
            db.close()

    def count(self) -> int:
        return len(self.rows())


def _drained(rows, target: int, vn: VirtualNode, diag=lambda: "") -> int:
    """Wait until the in-order stream holds everything up to at least `target` (the node keeps
    sampling); returns the frontier. `rows()` gives (seq, flags) of the node, by seq."""

    def frontier() -> int:
        inorder = [s for s, f in rows() if not f & PREVIEW]
        return inorder[-1] if inorder else 0

    try:
        wait_for(lambda: frontier() >= target, timeout=60, what=f"drain to {target}")
    except TimeoutError:
        s = [s for s, _ in rows()]
        raise AssertionError(f"drain to {target}: have {len(s)}, last {s[-1:]}, missing "
                             f"{sorted(set(range(1, target + 1)) - set(s))[:20]}; {diag()}; "
                             f"node log: {vn.log_text()[-1500:]}") from None
    return frontier()


def _reported_drops(db_path, node: str) -> int:
    """journal_dropped (kind-1 value 5) from the node's newest status record in the historian."""
    import struct

    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT vals FROM records WHERE node=? AND kind=1 ORDER BY seq DESC LIMIT 1", (node,)).fetchone()
    finally:
        db.close()
    assert row is not None, "no status record stored"
    return int(struct.unpack_from("<6f", row[0])[5])


def _check_exactly_once(rows, front: int) -> None:
    """Every seq up to the in-order frontier is there once; above it only previews (live
    records the backfill has not reached yet) may be."""
    got = rows()
    # in-order records can land between the drain check and the kill: the frontier is that of
    # this one snapshot (never lower than the one the drain reached)
    front = max([front] + [s for s, f in got if not f & PREVIEW])
    seqs = [s for s, _ in got]
    assert len(seqs) == len(set(seqs))
    below = [s for s in seqs if s <= front]
    assert below == list(range(1, front + 1)), sorted(set(range(1, front + 1)) - set(below))[:20]
    assert all(f & PREVIEW for s, f in got if s > front)


def test_mqtt_broker_restarts_and_bridge_kills(tmp_path, broker):
    rng = random.Random(7)
    bridge = BridgeProcess(tmp_path, broker.port, "ll1")
    bridge.start()
    vn = VirtualNode(tmp_path / "ll1", "ll1", mqtt_port=broker.port, config=NODE_CFG, **NODE_KW)
    kills = 0
    try:
        vn.start()
        wait_for(lambda: bridge.count() > 10, timeout=30, what="first records stored")
        for i in range(CYCLES):
            outage = 1.5 if i % 12 == 5 else rng.uniform(0.05, 0.3)  # a few long ones: a backlog
            broker.stop()
            time.sleep(outage)
            broker.start()
            before = bridge.count()
            if outage > 1:
                # the backlog drains: kill the bridge in the middle of it, then bring it back
                wait_for(lambda b=before: bridge.count() > b, timeout=20, what="drain started")
                bridge.kill()
                kills += 1
                time.sleep(rng.uniform(0.1, 0.5))
                bridge.start()
            wait_for(lambda b=before: bridge.count() > b + 3, timeout=30, what=f"records after outage {i}")
            assert vn.alive(), vn.log_text()[-2000:]
        target = bridge.rows()[-1][0]  # everything sequenced during the outages, and then some
        front = _drained(bridge.rows, target + 20, vn)
        vn.kill()
        _check_exactly_once(bridge.rows, front)
        assert _reported_drops(bridge.db, "ll1") == 0  # nothing went to the quota: no excuse for a gap
    finally:
        vn.close()
        bridge.stop()
    assert kills >= 4
    log = vn.log_text()
    assert "FATAL" not in log and "Traceback" not in log, log[-2000:]


def test_serial_line_closed_and_reopened(tmp_path):
    rng = random.Random(8)
    vn = VirtualNode(tmp_path / "ls1", "ls1", uplink="serial",
                     config={**NODE_CFG, "serial": {"hello_interval_s": 0.5}}, **NODE_KW)
    cfg = make_config(tmp_path, ["ls1"], serial=[{"port": vn.serial_path, "node": "ls1"}])
    cut = threading.Event()

    class CuttableSerial(serial.Serial):
        """The bridge's port; a cut makes its next read fail like an unplugged cable."""

        def read(self, size=1):
            if cut.is_set():
                cut.clear()
                raise serial.SerialException("line cut by the test")
            return super().read(size)

    bt = BridgeThread(cfg)
    ser = bt.bridge.serial[0]
    ser._open = lambda: CuttableSerial(vn.serial_path, 115200, timeout=0.05, exclusive=True)
    try:
        with bt as bridge:
            assert ser.wait_connected(10)
            vn.start()
            wait_for(lambda: bridge.historian.count("ls1") > 10, timeout=30, what="first records")
            for i in range(CYCLES):
                opens = bridge.counters.get("serial_opens")
                cut.set()  # the bridge's reader loses the line, closes it and reopens it
                wait_for(lambda: not cut.is_set(), timeout=5, what="cut seen")
                time.sleep(rng.uniform(0.05, 0.3))
                wait_for(lambda o=opens: bridge.counters.get("serial_opens") > o, timeout=10, what="reopen")
                before = bridge.historian.count("ls1")
                wait_for(lambda b=before: bridge.historian.count("ls1") > b + 2, timeout=30,
                         what=f"records after reopen {i}")
                assert vn.alive(), vn.log_text()[-2000:]
            def rows():
                return [(r.seq, r.flags) for r in bridge.historian.history("ls1", 0, 2**62, 0)
                        + bridge.historian.history("ls1", 0, 2**62, 1)]

            def rows_sorted():
                return sorted(rows())

            target = rows_sorted()[-1][0]
            front = _drained(rows_sorted, target + 20, vn, bridge.counters.snapshot)
            vn.kill()
            _check_exactly_once(rows_sorted, front)
            c = bridge.counters.snapshot()
    finally:
        vn.close()
    assert c.get("serial_opens", 0) > CYCLES
    assert c.get("records_in", 0) == c.get("records_stored", 0) + c.get("records_duplicate", 0)
    assert not c.get("seq_gaps"), c
