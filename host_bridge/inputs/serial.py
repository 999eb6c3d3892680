"""Serial input (pyserial): one thread per port, framed batches in, acks and time sync out.

The port is opened exclusively and reopened with backoff when it vanishes (USB unplug); use
/dev/serial/by-id/... paths so a replugged node is found again. Console text the node prints
between frames is counted as garbage and otherwise ignored.
"""

from __future__ import annotations

import json
import logging
import threading

import serial

from host_bridge import codec
from host_bridge.config import SerialConfig
from host_bridge.ingest import Inbound, Ingest
from host_bridge.metrics import Counters
from host_bridge.store import Historian
from host_bridge.tags import TagStore, now_ms

log = logging.getLogger("host_bridge.serial")


class SerialInput:
    def __init__(
        self,
        cfg: SerialConfig,
        ingest: Ingest,
        tags: TagStore,
        historian: Historian,
        counters: Counters,
    ) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self.tags = tags
        self.historian = historian
        self.counters = counters
        self.node_id: str | None = cfg.node
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ser: serial.Serial | None = None
        self._wlock = threading.Lock()
        self.decoder = codec.FrameDecoder()
        self.source = f"serial:{cfg.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.source, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._close()

    def _open(self) -> serial.Serial:
        return serial.Serial(self.cfg.port, self.cfg.baudrate, timeout=0.05, exclusive=True)

    def _close(self) -> None:
        ser, self._ser = self._ser, None
        self.connected.clear()
        if ser is not None:
            try:
                ser.close()
            except (OSError, serial.SerialException):
                pass

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._ser = self._open()
            except (OSError, serial.SerialException) as e:
                self.counters.inc("serial_open_failed")
                log.debug("cannot open %s: %s", self.cfg.port, e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            self.connected.set()
            self.counters.inc("serial_opens")
            log.info("opened %s", self.cfg.port)
            try:
                self._pump(self._ser)
            except (OSError, serial.SerialException) as e:
                self.counters.inc("serial_lost")
                log.warning("lost %s: %s; reopening", self.cfg.port, e)
                if self.node_id:
                    self.tags.set_online(self.node_id, False)
            finally:
                self._close()
                self.decoder = codec.FrameDecoder() if self._stop.is_set() else self.decoder

    def _pump(self, ser: serial.Serial) -> None:
        while not self._stop.is_set():
            n = ser.in_waiting
            data = ser.read(n if n else 1)
            if not data:
                continue
            garbage_before = self.decoder.garbage_bytes
            for ftype, payload in self.decoder.feed(data):
                self._on_frame(ftype, payload)
            if self.decoder.garbage_bytes != garbage_before:
                self.counters.inc("serial_garbage_bytes", self.decoder.garbage_bytes - garbage_before)

    def _on_frame(self, ftype: int, payload: bytes) -> None:
        self.counters.inc("serial_frames")
        if ftype == codec.FRAME_HELLO:
            self._on_hello(payload)
        elif ftype == codec.FRAME_BATCH:
            self.ingest.submit(Inbound(payload, self.source, self.node_id, self._reply, now_ms()))
        else:
            self.counters.inc("serial_unexpected_frame")

    def _on_hello(self, payload: bytes) -> None:
        try:
            hello = json.loads(payload.decode("utf-8"))
            node_id = str(hello["node"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self.counters.inc("serial_bad_hello")
            log.warning("bad HELLO on %s: %r", self.cfg.port, payload[:80])
            return
        if not codec.valid_node_id(node_id) or (self.cfg.node and node_id != self.cfg.node):
            self.counters.inc("rejected_node_mismatch")
            log.warning("HELLO on %s from %r, expected %r: ignored", self.cfg.port, node_id, self.cfg.node)
            return
        if self.ingest.known_nodes is not None and node_id not in self.ingest.known_nodes:
            self.counters.inc("rejected_unknown_node")
            log.warning("HELLO on %s from unknown node %r", self.cfg.port, node_id)
            return
        self.node_id = node_id
        self.counters.inc("serial_hellos")
        self.tags.set_online(node_id, True)
        self._reply(node_id, self.historian.max_seq(node_id), frontier=True)

    def _reply(self, node_id: str, seq: int, next_seq: int = 0, frontier: bool = False) -> None:
        ser = self._ser
        if ser is None:
            raise OSError(f"{self.cfg.port} is closed")
        frame = codec.encode_frame(codec.FRAME_ACK, codec.encode_ack(seq, now_ms(), next_seq, frontier))
        with self._wlock:
            ser.write(frame)
        self.tags.set_online(node_id, True)  # a stored batch proves the link is up

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)


