# Serial framing (docs/protocol.md section 5), for nodes on the serial uplink and for tests:
# sync, type, length, payload, CRC-32. Nothing here is loaded on an MQTT node.
import struct
from binascii import crc32

from micropython import const

from vibenode.codec import CodecError

MAX_FRAME_PAYLOAD = const(16384)
FRAME_BATCH = const(1)
FRAME_ACK = const(2)
FRAME_HELLO = const(3)
SYNC0 = const(0xA5)
SYNC1 = const(0x5A)
FRAME_HEAD = const(5)  # sync(2) type(1) len(2)
FRAME_OVERHEAD = const(9)  # head + crc(4)


def frame_head_into(head, ftype, payload):
    """Fill a 5-byte head for payload; returns the frame CRC (over type, len, payload)."""
    n = len(payload)
    if n > MAX_FRAME_PAYLOAD:
        raise CodecError("too_large")
    head[0] = SYNC0
    head[1] = SYNC1
    head[2] = ftype
    head[3] = n & 0xFF
    head[4] = n >> 8
    return crc32(payload, crc32(memoryview(head)[2:5]))


def encode_frame(ftype, payload):
    head = bytearray(FRAME_HEAD)
    crc = frame_head_into(head, ftype, payload)
    return bytes(head) + bytes(payload) + struct.pack("<I", crc)


class FrameReader:
    """Streaming de-framer with resync: feed bytes, frames go to on_frame(type, payload_mv).

    The payload memoryview is only valid during the callback. A frame whose length exceeds
    max_payload or whose type is unknown or whose CRC fails costs its first sync byte and
    the scan goes on (docs/protocol.md section 5); every byte not in a good frame is counted
    in `garbage`. One preallocated buffer, nothing allocated per byte or per frame.
    """

    def __init__(self, on_frame, max_payload=MAX_FRAME_PAYLOAD, types=(FRAME_BATCH, FRAME_ACK, FRAME_HELLO)):
        self.on_frame = on_frame
        self.max_payload = max_payload
        self.types = types
        self.buf = bytearray(max_payload + FRAME_OVERHEAD)
        self.mv = memoryview(self.buf)
        self.n = 0  # bytes held
        self.frames = 0
        self.garbage = 0
        self.bad_crc = 0
        self.bad_length = 0

    def feed(self, data):
        data = memoryview(data)
        i = 0
        total = len(data)
        while i < total:
            space = len(self.buf) - self.n
            take = total - i if total - i < space else space
            self.buf[self.n : self.n + take] = data[i : i + take]
            self.n += take
            i += take
            self._scan()

    def _scan(self):
        buf = self.buf
        n = self.n
        pos = 0
        while True:
            # find a sync pair from pos
            j = pos
            while j < n - 1 and not (buf[j] == SYNC0 and buf[j + 1] == SYNC1):
                j += 1
            if j >= n - 1:
                keep = 1 if n > pos and buf[n - 1] == SYNC0 else 0
                self.garbage += (n - pos) - keep
                pos = n - keep
                break
            self.garbage += j - pos
            pos = j
            if n - pos < FRAME_HEAD:
                break
            ftype = buf[pos + 2]
            length = buf[pos + 3] | (buf[pos + 4] << 8)
            if length > self.max_payload or ftype not in self.types:
                self.bad_length += 1
                self.garbage += 1
                pos += 1
                continue
            end = pos + FRAME_HEAD + length + 4
            if end > n:
                break
            crc = buf[end - 4] | (buf[end - 3] << 8) | (buf[end - 2] << 16) | (buf[end - 1] << 24)
            if crc32(self.mv[pos + 2 : end - 4]) != crc:
                self.bad_crc += 1
                self.garbage += 1
                pos += 1
                continue
            self.frames += 1
            self.on_frame(ftype, self.mv[pos + FRAME_HEAD : end - 4])
            pos = end
        if pos:
            rest = n - pos
            if rest:
                self.buf[0:rest] = self.mv[pos:n]
            self.n = rest
