"""The real firmware on the MicroPython VM over a pty serial link, with a tiny in-test bridge
(pyserial + host_bridge.codec): HELLO handshake, batches, acks, time sync, garbage resync."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest
import serial

from host_bridge.codec import FRAME_ACK, FRAME_BATCH, FRAME_HELLO, FrameDecoder, decode_batch, encode_ack, encode_frame
from tests.netutil import wait_for
from tools.virtual_node import VirtualNode

TONE_HZ, TONE_G = 120.0, 0.3
G_MM_S2 = 9806.65
ACC_RMS = TONE_G / math.sqrt(2)
VEL_RMS = TONE_G * G_MM_S2 / (2 * math.pi * TONE_HZ) / math.sqrt(2)


class SerialMiniBridge:
    def __init__(self, path: str, ack: bool = True, garbage: bytes = b""):
        self.ser = serial.Serial(path, 115200, timeout=0.05)
        self.dec = FrameDecoder()
        self.ack = ack
        self.garbage = garbage  # written before every ack: the node must resync
        self.records: dict[int, object] = {}
        self.batches: list[list[int]] = []
        self.hellos: list[dict] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.ser.read(max(1, self.ser.in_waiting))
            except (serial.SerialException, OSError) as e:
                self.errors.append(repr(e))
                return
            for ftype, payload in self.dec.feed(data):
                self._frame(ftype, payload)

    def _send_ack(self, seq):
        if self.ack:
            self.ser.write(self.garbage + encode_frame(FRAME_ACK, encode_ack(seq, int(time.time() * 1000))))

    def _frame(self, ftype, payload):
        if ftype == FRAME_HELLO:
            self.hellos.append(json.loads(payload))
            with self.lock:
                top = max(self.records) if self.records else 0
            self._send_ack(top)
        elif ftype == FRAME_BATCH:
            try:
                _, recs = decode_batch(payload)
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
                return
            with self.lock:
                self.batches.append([r.seq for r in recs])
                for r in recs:
                    self.records.setdefault(r.seq, r)
                top = max(self.records)
            self._send_ack(top)

    def kinds(self, kind):
        with self.lock:
            return [self.records[s] for s in sorted(self.records) if self.records[s].kind == kind]

    def close(self):
        self._stop.set()
        self.t.join(2)
        self.ser.close()


@pytest.fixture
def serial_node(tmp_path):
    made = []

    def make(**kw):
        kw.setdefault("sim", {"tones": [[1, TONE_HZ, TONE_G]], "noise_g": 0.0, "temp_c": 44.0})
        vn = VirtualNode(tmp_path / "sn1", "sn1", uplink="serial", interval_s=0.4, window_n=512,
                         status_interval_s=1.0, **kw)
        made.append(vn)
        return vn

    yield make
    for vn in made:
        vn.close()


def test_serial_hello_batches_acks_and_values(serial_node):
    vn = serial_node()
    bridge = SerialMiniBridge(vn.serial_path, garbage=b"\xa5\x5a\x02\xff\xffnoise\xa5")
    try:
        vn.start()
        wait_for(lambda: len(bridge.kinds(0)) >= 4 and len(bridge.kinds(1)) >= 2 or not vn.alive(),
                 timeout=30, what="records over serial")
        assert vn.alive(), vn.log_text()
        assert bridge.hellos and bridge.hellos[0]["node"] == "sn1" and bridge.hellos[0]["boot"] == 1
        assert not bridge.errors, bridge.errors
        with bridge.lock:
            seqs = sorted(bridge.records)
        assert seqs == list(range(1, len(seqs) + 1))
        clean = [r for r in bridge.kinds(0) if not r.flags & 0x10]
        assert clean
        for r in clean:
            assert math.isclose(r.values[0], 44.0, rel_tol=1e-3)
            assert math.isclose(r.values[2], ACC_RMS, rel_tol=0.02), r.values[2]
            assert math.isclose(r.values[5], VEL_RMS, rel_tol=0.02), r.values[5]
        assert bridge.kinds(0)[-1].flags & 1  # synced from the acks' time
        wait_for(lambda: bridge.kinds(1)[-1].values[4] <= 3, timeout=10, what="acked records freed")
        # console text on the line is skipped by the bridge's de-framer, nothing else is lost
        assert bridge.dec.bad_crc == 0
    finally:
        bridge.close()


def test_serial_bridge_absent_then_present(serial_node):
    vn = serial_node()
    vn.start()
    time.sleep(2.5)  # nobody reads the pty: the node keeps measuring, frames pile up or time out
    assert vn.alive(), vn.log_text()
    bridge = SerialMiniBridge(vn.serial_path)
    try:
        wait_for(lambda: len(bridge.kinds(0)) >= 6 or not vn.alive(), timeout=40, what="backlog over serial")
        assert vn.alive(), vn.log_text()
        with bridge.lock:
            seqs = sorted(bridge.records)
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        bridge.close()
