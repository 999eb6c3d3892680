# Serial uplink (USB CDC / UART; on the unix port the process's stdin/stdout): BATCH frames
# out, ACK frames in, HELLO until the bridge answers. Console text may share the line; the
# bridge's de-framer skips it, ours skips whatever is not an ACK.
#
# The port supplies `stream` with: read_into(buf) -> n (never blocks), wait_readable(ms)
# -> bool, write_all(buf, timeout_ms) -> bool.
import json
import time

from vibenode.codec import CodecError, decode_ack
from vibenode.frames import FRAME_ACK, FRAME_BATCH, FRAME_HELLO, FrameReader, frame_head_into

_RX_MAX = 64  # the node only receives 16-byte ACK bodies


class SerialUplink:
    def __init__(self, cfg, health, stream, boot, board_name, fw_version, now_ms=time.ticks_ms):
        s = cfg["serial"]
        self.health = health
        self.stream = stream
        self.hello = json.dumps({"node": cfg["node_id"], "boot": boot, "fw": fw_version, "board": board_name}).encode()
        self.hello_ms = int(s["hello_interval_s"] * 1000)
        self.write_timeout_ms = int(s["write_timeout_s"] * 1000)
        self._now = now_ms
        self.on_ack = None
        self.connected = True  # a serial line is always "up"; the bridge may not listen
        self.greeted = False  # an ACK answered our HELLO (or any batch)
        self.reconnects = 0
        self.sent = 0
        self._head = bytearray(5)
        self._crc = bytearray(4)
        self._rx = bytearray(_RX_MAX)
        self._rxmv = memoryview(self._rx)
        self.reader = FrameReader(self._on_frame, _RX_MAX, (FRAME_ACK,))
        self._last_hello = None
        self._last_rx = now_ms()

    def _write_frame(self, ftype, payload):
        crc = frame_head_into(self._head, ftype, payload)
        c = self._crc
        c[0] = crc & 0xFF
        c[1] = (crc >> 8) & 0xFF
        c[2] = (crc >> 16) & 0xFF
        c[3] = (crc >> 24) & 0xFF
        w = self.stream.write_all
        t = self.write_timeout_ms
        if w(self._head, t) and w(payload, t) and w(c, t):
            return True
        self.health.error("serial_write_timeout", None)  # a half-written frame is resynced by the bridge
        return False

    def service(self):
        now = self._now()
        if not self.greeted and (self._last_hello is None or time.ticks_diff(now, self._last_hello) >= self.hello_ms):
            self._last_hello = now
            self._write_frame(FRAME_HELLO, self.hello)
        return True

    def send(self, batch):
        if self._write_frame(FRAME_BATCH, batch):
            self.sent += 1
            return True
        return False

    def wait(self, timeout_ms):
        if timeout_ms > 0 and not self.stream.wait_readable(timeout_ms):
            return
        for _ in range(16):  # bounded
            try:
                n = self.stream.read_into(self._rx)
            except Exception as e:
                self.health.error("serial_read", e)
                return
            if not n:
                return
            self.reader.feed(self._rxmv[:n])

    def _on_frame(self, ftype, payload):
        try:
            a = decode_ack(payload)
        except CodecError as e:
            self.health.error("ack_" + e.reason, None)
            return
        now = self._now()
        if self.greeted and time.ticks_diff(now, self._last_rx) > 4 * self.hello_ms:
            self.reconnects += 1  # the bridge came back after a silence
        self.greeted = True
        self._last_rx = now
        if self.on_ack:
            self.on_ack(*a)  # (acked seq, time_ms or None, RESYNC next_seq or 0, frontier)

    @property
    def garbage(self):
        return self.reader.garbage

    def close(self):
        pass


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = (("SerialUplink", "__init__"),)
