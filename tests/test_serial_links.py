"""Serial links into the real bridge: the firmware on the MicroPython VM over ptys.

- 1 MB of random bytes injected between the node's frames: every frame is still decoded,
  every garbage byte counted, the bridge never crashes, the historian is gapless.
- A USB port that vanishes and comes back under the same by-id style path (a symlink removed
  and recreated to a new pty): the bridge reopens it without a restart, no record lost.
- Several serial nodes served at once, with their status records in the bridge's tags.

SerialRelay sits between a node's pty and a "device" pty whose path the bridge opens. It
forwards whole frames (so garbage lands between frames, never inside one), injects garbage,
and can unplug/replug the device.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty

import pytest

from host_bridge.codec import FrameDecoder, encode_frame
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tools.virtual_node import VirtualNode

MB = 1 << 20


class SerialRelay:
    def __init__(self, node_path: str, link_path) -> None:
        self.link = str(link_path)
        self.node_fd = os.open(node_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.node_fd)
        self.dec = FrameDecoder()
        self.frames_forwarded = 0
        self.frames_dropped = 0  # while unplugged
        self.garbage_sent = 0
        self.garbage_budget = 0
        self.garbage_chunk = 8192
        self.garbage_rate = 100_000.0
        self._next_junk = 0.0
        self._rng = random.Random(5)
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self.plug()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="serial-relay", daemon=True)
        self._t.start()

    # -- device pty (what the bridge opens through the symlink) ----------------------------

    def plug(self) -> None:
        m, s = os.openpty()
        tty.setraw(m)
        tty.setraw(s)
        os.set_blocking(m, False)
        name = os.ttyname(s)
        tmp = self.link + ".new"
        os.symlink(name, tmp)
        os.replace(tmp, self.link)
        with self._lock:
            self._master, self._slave = m, s

    def unplug(self) -> None:
        with self._lock:
            m, s = self._master, self._slave
            self._master = self._slave = None
        try:
            os.unlink(self.link)
        except FileNotFoundError:
            pass
        for fd in (m, s):
            if fd is not None:
                os.close(fd)

    def inject(self, nbytes: int, rate_bps: float = 100_000, chunk_max: int = 8192) -> None:
        """Queue nbytes of random garbage, written between frames in random-sized chunks
        (1..chunk_max) at about rate_bps, so it spreads over many frames."""
        with self._lock:
            self.garbage_budget += nbytes
            self.garbage_rate = rate_bps
            self.garbage_chunk = chunk_max

    # -- pump ------------------------------------------------------------------------------

    def _write_dev(self, data: bytes) -> bool:
        mv = memoryview(data)
        deadline = time.monotonic() + 5
        while mv:
            m = self._master
            if m is None:
                return False
            try:
                n = os.write(m, mv)
                mv = mv[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                select.select([], [m], [], 0.05)
            except OSError:
                return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self._master
            rd = [self.node_fd] + ([m] if m is not None else [])
            try:
                ready, _, _ = select.select(rd, [], [], 0.02)
            except (OSError, ValueError):
                continue
            if self.node_fd in ready:
                try:
                    data = os.read(self.node_fd, 65536)
                except BlockingIOError:
                    data = b""
                for ftype, payload in self.dec.feed(data):
                    if self._master is None:
                        self.frames_dropped += 1  # unplugged: the node's bytes go nowhere
                    elif self._write_dev(encode_frame(ftype, payload)):
                        self.frames_forwarded += 1
            if m is not None and m in ready:
                try:
                    acks = os.read(m, 65536)
                    os.write(self.node_fd, acks)
                except (BlockingIOError, OSError):
                    pass
            with self._lock:
                n = min(self.garbage_budget, self._rng.randint(1, self.garbage_chunk))
            if n and self._master is not None and time.monotonic() >= self._next_junk:
                self._next_junk = time.monotonic() + n / self.garbage_rate
                junk = self._rng.randbytes(n)
                if self._write_dev(junk):
                    with self._lock:
                        self.garbage_budget -= n
                        self.garbage_sent += n

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.unplug()
        os.close(self.node_fd)


def _serial_node(tmp_path, nid, **kw):
    return VirtualNode(tmp_path / nid, nid, uplink="serial", window_n=512, interval_s=0.4, status_interval_s=2.0,
                       sim={"tones": [[0, 100.0, 0.4]], "noise_g": 0.0, "temp_c": 28.0},
                       config={"batch": {"ack_timeout_s": 2.0}}, **kw)


def _gapless(bridge, nid) -> int:
    seqs = bridge.historian.seqs(nid)
    assert seqs == list(range(1, len(seqs) + 1)), f"{nid}: gap or duplicate: {seqs}"
    return len(seqs)


def _frontier(bridge, nid) -> int:
    n = 0
    for i, s in enumerate(bridge.historian.seqs(nid), 1):
        if s != i:
            break
        n = i
    return n


@pytest.mark.timeout(180)
def test_serial_megabyte_of_garbage_between_frames(tmp_path):
    vn = _serial_node(tmp_path, "sg1")
    relay = SerialRelay(vn.serial_path, tmp_path / "usb-vibekit-sg1")
    cfg = make_config(tmp_path, ["sg1"], serial=[{"port": relay.link, "node": "sg1"}])
    try:
        vn.start()
        with BridgeThread(cfg) as bridge:
            inp = bridge.serial[0]
            wait_for(lambda: _frontier(bridge, "sg1") >= 3 or not vn.alive(), timeout=40, what="first records")
            t0 = time.monotonic()
            frames0 = relay.frames_forwarded
            relay.inject(MB)  # about 10 s at 100 kB/s: spread between some 25+ frames
            wait_for(lambda: relay.garbage_sent >= MB or not vn.alive(), timeout=60, what="1 MB injected")
            inject_s = time.monotonic() - t0
            assert relay.frames_forwarded - frames0 >= 10, "garbage should surround many frames"
            after = _frontier(bridge, "sg1")
            wait_for(lambda: _frontier(bridge, "sg1") >= after + 3, timeout=30, what="flow after the garbage")
            # every frame the relay forwarded was decoded, every garbage byte counted, exactly
            wait_for(lambda: inp.decoder.frames == relay.frames_forwarded, timeout=10, what="all frames decoded")
            assert vn.alive(), vn.log_text()
            assert inp.decoder.garbage_bytes == relay.garbage_sent == MB
            assert bridge.counters.get("serial_garbage_bytes") == MB
            assert bridge.counters.get("batches_rejected") == 0
            assert bridge.counters.get("serial_opens") == 1  # never lost the port
            n = _gapless(bridge, "sg1")
            print(f"1 MB garbage in {inject_s:.1f} s; frames {relay.frames_forwarded}, "
                  f"records {n}, bad_crc {inp.decoder.bad_crc}, bad_length {inp.decoder.bad_length}")
    finally:
        relay.close()
        vn.close()


@pytest.mark.timeout(180)
def test_serial_several_nodes_and_a_port_that_vanishes(tmp_path):
    a = _serial_node(tmp_path, "sa")
    b = _serial_node(tmp_path, "sb")
    c = _serial_node(tmp_path, "sc")
    relay = SerialRelay(a.serial_path, tmp_path / "usb-vibekit-sa")  # like /dev/serial/by-id/...
    cfg = make_config(tmp_path, ["sa", "sb", "sc"],
                      serial=[{"port": relay.link, "node": "sa"}, {"port": b.serial_path}, {"port": c.serial_path}])
    nodes = {"sa": a, "sb": b, "sc": c}
    try:
        for n in nodes.values():
            n.start()
        with BridgeThread(cfg) as bridge:
            def flowing(k=3):
                for n in nodes.values():
                    assert n.alive(), n.log_text()
                return all(_frontier(bridge, nid) >= k for nid in nodes)

            wait_for(flowing, timeout=60, what="records from all three nodes")
            before = _frontier(bridge, "sa")
            relay.unplug()  # USB unplug: the by-id path disappears, the bridge's port dies
            wait_for(lambda: bridge.counters.get("serial_lost") >= 1, timeout=10, what="bridge notices the loss")
            time.sleep(3.0)
            assert bridge.counters.get("serial_open_failed") >= 1  # it kept trying
            relay.plug()  # replugged: a new tty behind the same path
            t = time.monotonic()
            wait_for(lambda: bridge.serial[0].connected.is_set(), timeout=10, what="bridge reopened the port")
            reopen_s = time.monotonic() - t
            assert reopen_s <= 5.0 + 1.0, reopen_s  # SerialInput's backoff tops out at 5 s
            wait_for(lambda: _frontier(bridge, "sa") >= before + 8, timeout=40, what="flow after the replug")
            assert relay.frames_dropped >= 1  # something really went missing on the wire...
            wait_for(lambda: all(_frontier(bridge, nid) == len(bridge.historian.seqs(nid)) for nid in nodes),
                     timeout=20, what="backlogs caught up")
            counts = {nid: _gapless(bridge, nid) for nid in nodes}  # ...and came back by resend
            for nid in nodes:
                wait_for(lambda nid=nid: bridge.tags.get(nid).status, timeout=10, what=f"{nid} status in tags")
                st = bridge.tags.get(nid).status
                assert st["fw_version"] == 100 and st["uptime"] > 0 and st["windows"] >= 3, st
                assert bridge.tags.get(nid).online
            assert bridge.counters.get("serial_opens") == 4  # three ports, one of them twice
            print(f"records {counts}, reopened in {reopen_s:.1f} s, frames dropped while unplugged "
                  f"{relay.frames_dropped}")
    finally:
        relay.close()
        for n in nodes.values():
            n.close()
