# Wire protocol v1, node side (docs/protocol.md): what a running node needs to pack records,
# build batches and read acks. Serial framing is in vibenode.frames (serial nodes only); the
# decoders and one-shot encoders for tests and tools are in vibenode.codec_tools. The split
# keeps code a node never runs out of its heap.
#
# Allocation-light: records are packed into a caller's buffer, batches are built in one
# preallocated buffer. Malformed input raises CodecError whose `reason` matches the bridge's
# labels (bad_magic, bad_crc, ...).
import struct
from binascii import crc32

from micropython import const

# Protocol constants (public names, flags and kinds: vibenode.codec_tools); private consts
# are folded in at compile time and cost no heap.
_VERSION = const(1)
_MAX_BATCH = const(16384)
_RECORD_HEADER = const(15)
_ACK_SIZE = const(16)
_ACK_RESYNC = const(2)  # ack flags bit 1: RESYNC, a u32 next_seq follows (docs/protocol.md 3.1)
_ACK_FRONTIER = const(4)  # ack flags bit 2: acked_seq is the in-order frontier, frees nothing
_REC_FMT = "<IHBBIHB"  # seq boot kind flags ts_s ts_ms n
_FLAGS_OFFSET = const(7)


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
    return _RECORD_HEADER + 4 * n


def encode_record_into(buf, seq, boot, kind, flags, ts_s, ts_ms, values, n=-1, copy=None):
    """Pack one record at the start of buf; returns its length. values: array('f') or list.
    copy(dst, at, src, nbytes) (the node passes kernels.copy_bytes) moves an array('f')'s
    bytes as they are instead of boxing each value into a float object to pack it."""
    if n < 0:
        n = len(values)
    if n > 255:
        raise CodecError("too_many_values", str(n))
    struct.pack_into(_REC_FMT, buf, 0, seq, boot & 0xFFFF, kind, flags & 0x3F, ts_s, ts_ms, n)
    off = _RECORD_HEADER
    if copy is not None:
        copy(buf, off, values, 4 * n)
        return off + 4 * n
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


# ---- batches -----------------------------------------------------------------------------


class BatchBuilder:
    """Builds one batch at a time in a preallocated buffer (no per-batch allocation).

    begin(); add(record, extra_flags)...; finish() -> memoryview valid until the next begin().
    buf: a buffer of at least max_bytes to build in (the node lends it its sample buffers: a
    batch lives between windows only); begin() writes the whole header, so whatever used the
    buffer meanwhile does not matter.
    """

    def __init__(self, node_id, max_bytes=_MAX_BATCH, buf=None):
        if not valid_node_id(node_id):
            raise CodecError("bad_node_id", repr(node_id))
        if max_bytes > _MAX_BATCH:
            max_bytes = _MAX_BATCH
        self.nid = node_id.encode()
        self.size = max_bytes
        self.buf = bytearray(max_bytes) if buf is None else buf
        self.mv = memoryview(self.buf)
        self._count_off = 4 + len(self.nid)
        self._start = self._count_off + 2
        self.begin()

    def begin(self):
        buf = self.buf
        buf[0] = 0x56  # 'V'
        buf[1] = 0x42  # 'B'
        buf[2] = _VERSION
        buf[3] = len(self.nid)
        buf[4 : self._count_off] = self.nid
        self.count = 0
        self.len = self._start
        self.first_seq = self.last_seq = 0

    def room(self):
        """Bytes left for records (the CRC is already accounted for)."""
        return self.size - 4 - self.len

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


# ---- acks --------------------------------------------------------------------------------


def decode_ack(buf):
    """Ack body -> (acked_seq, time_ms or None, next_seq, frontier): next_seq 0 unless a RESYNC
    ack; frontier True when acked_seq is the bridge's in-order frontier (frees nothing)."""
    n = len(buf)
    if n != _ACK_SIZE and n != _ACK_SIZE + 4:
        raise CodecError("bad_length", str(n))
    if buf[0] != 0x56 or buf[1] != 0x41:
        raise CodecError("bad_magic")
    if buf[2] != _VERSION:
        raise CodecError("bad_version")
    if (n != _ACK_SIZE) != bool(buf[3] & _ACK_RESYNC):
        raise CodecError("bad_length", str(n))
    seq = struct.unpack_from("<I", buf, 4)[0]
    nxt = 0
    if n != _ACK_SIZE:
        nxt = struct.unpack_from("<I", buf, _ACK_SIZE)[0]
        if not nxt:
            raise CodecError("bad_seq")
    return seq, struct.unpack_from("<Q", buf, 8)[0] if buf[3] & 1 else None, nxt, bool(buf[3] & _ACK_FRONTIER)


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
# (encode_record: tests and tools only)
_BOOT_ONLY = ("valid_node_id", "record_size", "encode_record", ("BatchBuilder", "__init__"))
