# Wire protocol v1, node side (docs/protocol.md): records, batches, acks, serial frames.
#
# Allocation-light: records are packed into a caller's buffer, batches are built in one
# preallocated buffer, frames are parsed in place. Malformed input raises CodecError whose
# `reason` matches the bridge's labels (bad_magic, bad_crc, ...).
import struct
from binascii import crc32

from micropython import const

VERSION = const(1)
MAX_BATCH = const(16384)
MAX_FRAME_PAYLOAD = const(16384)
RECORD_HEADER = const(15)
ACK_SIZE = const(16)

KIND_MEASUREMENT = const(0)
KIND_STATUS = const(1)

# record flags
CLOCK_SYNCED = const(0x01)
HISTORICAL = const(0x02)
ACCEL_FAULT = const(0x04)
TEMP_FAULT = const(0x08)
FIFO_OVERRUN = const(0x10)
CLIPPED = const(0x20)

# serial frame types
FRAME_BATCH = const(1)
FRAME_ACK = const(2)
FRAME_HELLO = const(3)
SYNC0 = const(0xA5)
SYNC1 = const(0x5A)
FRAME_HEAD = const(5)  # sync(2) type(1) len(2)
FRAME_OVERHEAD = const(9)  # head + crc(4)

_REC_FMT = "<IHBBIHB"  # seq boot kind flags ts_s ts_ms n
_FLAGS_OFFSET = const(7)
_NAN = float("nan")


class CodecError(ValueError):
    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason


def valid_node_id(node_id):
    if not isinstance(node_id, str) or not 1 <= len(node_id) <= 32:
        return False
    for c in node_id:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in "_.-"):
            return False
    return True


# ---- records -----------------------------------------------------------------------------


def record_size(n):
    return RECORD_HEADER + 4 * n


def encode_record_into(buf, seq, boot, kind, flags, ts_s, ts_ms, values, n=-1):
    """Pack one record at the start of buf; returns its length. values: array('f') or list."""
    if n < 0:
        n = len(values)
    if n > 255:
        raise CodecError("too_many_values", str(n))
    struct.pack_into(_REC_FMT, buf, 0, seq, boot & 0xFFFF, kind, flags & 0x3F, ts_s, ts_ms, n)
    off = RECORD_HEADER
    for i in range(n):
        struct.pack_into("<f", buf, off, values[i])
        off += 4
    return off


def encode_record(seq, boot, kind, flags, ts_s, ts_ms, values):
    buf = bytearray(record_size(len(values)))
    encode_record_into(buf, seq, boot, kind, flags, ts_s, ts_ms, values)
    return bytes(buf)


def record_seq(rec):
    return struct.unpack_from("<I", rec, 0)[0]


def decode_record(buf, offset=0):
    """(seq, boot, kind, flags, ts_s, ts_ms, values tuple), offset after it. For tests/tools."""
    if len(buf) - offset < RECORD_HEADER:
        raise CodecError("truncated", "record header")
    seq, boot, kind, flags, ts_s, ts_ms, n = struct.unpack_from(_REC_FMT, buf, offset)
    offset += RECORD_HEADER
    end = offset + 4 * n
    if end > len(buf):
        raise CodecError("truncated", "record values")
    if ts_ms > 999:
        raise CodecError("bad_timestamp", str(ts_ms))
    if seq == 0:
        raise CodecError("bad_seq")
    values = struct.unpack_from("<%df" % n, buf, offset)
    return (seq, boot, kind, flags & 0x3F, ts_s, ts_ms, values), end


# ---- batches -----------------------------------------------------------------------------


class BatchBuilder:
    """Builds one batch at a time in a preallocated buffer (no per-batch allocation).

    begin(); add(record, extra_flags)...; finish() -> memoryview valid until the next begin().
    """

    def __init__(self, node_id, max_bytes=MAX_BATCH):
        if not valid_node_id(node_id):
            raise CodecError("bad_node_id", repr(node_id))
        if max_bytes > MAX_BATCH:
            max_bytes = MAX_BATCH
        nid = node_id.encode()
        self.buf = bytearray(max_bytes)
        self.mv = memoryview(self.buf)
        self.buf[0] = 0x56  # 'V'
        self.buf[1] = 0x42  # 'B'
        self.buf[2] = VERSION
        self.buf[3] = len(nid)
        self.buf[4 : 4 + len(nid)] = nid
        self._count_off = 4 + len(nid)
        self._start = self._count_off + 2
        self.count = 0
        self.len = self._start
        self.first_seq = 0
        self.last_seq = 0

    def begin(self):
        self.count = 0
        self.len = self._start
        self.first_seq = self.last_seq = 0

    def room(self):
        """Bytes left for records (the CRC is already accounted for)."""
        return len(self.buf) - 4 - self.len

    def add(self, rec, extra_flags=0):
        """Append one encoded record, OR-ing extra_flags into its flags byte; False if full."""
        n = len(rec)
        if n > self.room() or self.count >= 0xFFFF:
            return False
        seq = record_seq(rec)
        if self.count and seq <= self.last_seq:
            raise CodecError("bad_order", "seq %d after %d" % (seq, self.last_seq))
        off = self.len
        self.buf[off : off + n] = rec
        if extra_flags:
            self.buf[off + _FLAGS_OFFSET] |= extra_flags
        self.len = off + n
        if not self.count:
            self.first_seq = seq
        self.last_seq = seq
        self.count += 1
        return True

    def finish(self):
        struct.pack_into("<H", self.buf, self._count_off, self.count)
        end = self.len
        struct.pack_into("<I", self.buf, end, crc32(self.mv[:end]))
        return self.mv[: end + 4]


def encode_batch(node_id, records):
    size = 4 + len(node_id) + 2 + 4
    for r in records:
        size += len(r)
    b = BatchBuilder(node_id, size)
    for r in records:
        if not b.add(r):
            raise CodecError("too_large")
    return bytes(b.finish())


def decode_batch(buf):
    """(node_id, [record tuples]) with the bridge's validation; for tests and tools."""
    n = len(buf)
    if n > MAX_BATCH:
        raise CodecError("too_large")
    if n < 11:
        raise CodecError("truncated")
    if buf[0] != 0x56 or buf[1] != 0x42:
        raise CodecError("bad_magic")
    if buf[2] != VERSION:
        raise CodecError("bad_version")
    if crc32(memoryview(buf)[: n - 4]) != struct.unpack_from("<I", buf, n - 4)[0]:
        raise CodecError("bad_crc")
    id_len = buf[3]
    try:
        nid = bytes(buf[4 : 4 + id_len]).decode()
    except UnicodeError:
        nid = ""
    if not valid_node_id(nid) or 4 + id_len + 2 > n - 4:
        raise CodecError("bad_node_id")
    off = 4 + id_len
    count = struct.unpack_from("<H", buf, off)[0]
    off += 2
    end = n - 4
    body = memoryview(buf)[:end]
    recs = []
    last = 0
    for _ in range(count):
        if off >= end:
            raise CodecError("truncated")
        rec, off = decode_record(body, off)
        if rec[0] <= last:
            raise CodecError("bad_order")
        last = rec[0]
        recs.append(rec)
    if off != end:
        raise CodecError("trailing_bytes")
    return nid, recs


# ---- acks --------------------------------------------------------------------------------


def decode_ack(buf):
    """Ack body -> (acked_seq, time_ms or None)."""
    if len(buf) != ACK_SIZE:
        raise CodecError("bad_length", str(len(buf)))
    if buf[0] != 0x56 or buf[1] != 0x41:
        raise CodecError("bad_magic")
    if buf[2] != VERSION:
        raise CodecError("bad_version")
    seq = struct.unpack_from("<I", buf, 4)[0]
    if buf[3] & 1:
        return seq, struct.unpack_from("<Q", buf, 8)[0]
    return seq, None


def encode_ack(acked_seq, time_ms=None):
    return struct.pack("<2sBBIQ", b"VA", VERSION, 0 if time_ms is None else 1, acked_seq, time_ms or 0)


# ---- serial frames -----------------------------------------------------------------------


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
