"""Wire protocol v1 codec (docs/protocol.md): bytes <-> records. Pure, no I/O.

Every malformed input raises CodecError with a short `reason` used as a counter label.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable

from host_bridge.model import FLAGS_KNOWN, Ack, Record

VERSION = 1
BATCH_MAGIC = b"VB"
ACK_MAGIC = b"VA"
MAX_BATCH = 16384
MAX_FRAME_PAYLOAD = 16384

RECORD_HEADER = struct.Struct("<IHBBIHB")  # seq boot kind flags ts_s ts_ms n
ACK_BODY = struct.Struct("<2sBBIQ")
ACK_TIME = 0x01  # ack flags bit 0: time_ms is valid
ACK_RESYNC = 0x02  # ack flags bit 1: a u32 next_seq follows, nothing is acknowledged (section 3.1)
ACK_FRONTIER = 0x04  # ack flags bit 2: acked_seq is the in-order frontier (HELLO, empty or preview batch)
ACK_RESYNC_SIZE = ACK_BODY.size + 4
NODE_ID_RE = re.compile(rb"^[A-Za-z0-9_.\-]{1,32}$")

FRAME_SYNC = b"\xa5\x5a"
FRAME_BATCH = 1
FRAME_ACK = 2
FRAME_HELLO = 3
FRAME_TYPES = (FRAME_BATCH, FRAME_ACK, FRAME_HELLO)
FRAME_HEAD = struct.Struct("<2sBH")  # sync type len
FRAME_OVERHEAD = FRAME_HEAD.size + 4


class CodecError(ValueError):
    """A malformed input; `reason` is a stable label for counters."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def valid_node_id(node_id: str) -> bool:
    try:
        return bool(NODE_ID_RE.match(node_id.encode("ascii")))
    except UnicodeEncodeError:
        return False


# ---- records -------------------------------------------------------------------------------


def encode_record(
    seq: int,
    boot: int,
    kind: int,
    flags: int,
    ts_s: int,
    ts_ms: int,
    values: Iterable[float],
) -> bytes:
    vals = list(values)
    if len(vals) > 255:
        raise CodecError("too_many_values", str(len(vals)))
    head = RECORD_HEADER.pack(seq, boot & 0xFFFF, kind, flags, ts_s, ts_ms, len(vals))
    return head + struct.pack(f"<{len(vals)}f", *vals)


def decode_record(
    buf: bytes | memoryview, offset: int = 0, node_id: str = "", received_ms: int = 0, source: str = ""
) -> tuple[Record, int]:
    """Decode one record at offset; returns (record, offset after it)."""
    if len(buf) - offset < RECORD_HEADER.size:
        raise CodecError("truncated", "record header")
    seq, boot, kind, flags, ts_s, ts_ms, n = RECORD_HEADER.unpack_from(buf, offset)
    offset += RECORD_HEADER.size
    end = offset + 4 * n
    if end > len(buf):
        raise CodecError("truncated", f"record seq {seq} values")
    if ts_ms > 999:
        raise CodecError("bad_timestamp", f"ts_ms {ts_ms}")
    if seq == 0:
        raise CodecError("bad_seq", "seq 0")
    values = struct.unpack_from(f"<{n}f", buf, offset)
    rec = Record(node_id, seq, boot, kind, flags & FLAGS_KNOWN, ts_s, ts_ms, values, received_ms, source)
    return rec, end


# ---- batches -------------------------------------------------------------------------------


def encode_batch(node_id: str, records: Iterable[bytes]) -> bytes:
    nid = node_id.encode("ascii")
    if not NODE_ID_RE.match(nid):
        raise CodecError("bad_node_id", repr(node_id))
    recs = list(records)
    body = BATCH_MAGIC + bytes([VERSION, len(nid)]) + nid + struct.pack("<H", len(recs))
    body += b"".join(recs)
    out = body + struct.pack("<I", zlib.crc32(body))
    if len(out) > MAX_BATCH:
        raise CodecError("too_large", f"{len(out)} bytes")
    return out


# A record as the ingest path keeps it: the header fields and its values as the wire bytes
# (little-endian float32, exactly what the historian stores), unpacked only when needed.
RawRecord = tuple[int, int, int, int, int, int, bytes]  # seq boot kind flags ts_s ts_ms values


def decode_batch_raw(buf: bytes | memoryview) -> tuple[str, list[RawRecord]]:
    """Validate a whole batch (all or nothing) and split it into raw records, oldest first.

    The ingest hot path: one header unpack and one slice per record, no float conversion.
    decode_batch() is built on it, so both accept and reject exactly the same inputs.
    """
    n = len(buf)
    if n > MAX_BATCH:
        raise CodecError("too_large", f"{n} bytes")
    if n < 2 + 1 + 1 + 1 + 2 + 4:
        raise CodecError("truncated", f"{n} bytes")
    if bytes(buf[0:2]) != BATCH_MAGIC:
        raise CodecError("bad_magic", bytes(buf[0:2]).hex())
    if buf[2] != VERSION:
        raise CodecError("bad_version", str(buf[2]))
    body_end = n - 4
    body = bytes(buf[:body_end])
    (crc,) = struct.unpack_from("<I", buf, body_end)
    if zlib.crc32(body) != crc:
        raise CodecError("bad_crc")
    id_len = body[3]
    nid = body[4 : 4 + id_len]
    if not NODE_ID_RE.match(nid) or 4 + id_len + 2 > body_end:
        raise CodecError("bad_node_id", nid[:40].hex())
    node_id = nid.decode("ascii")
    off = 4 + id_len
    (count,) = struct.unpack_from("<H", body, off)
    off += 2
    unpack = RECORD_HEADER.unpack_from
    head = RECORD_HEADER.size
    known = FLAGS_KNOWN
    raws: list[RawRecord] = []
    append = raws.append
    last = 0
    for i in range(count):
        if off >= body_end:
            raise CodecError("truncated", f"{i} of {count} records")
        if body_end - off < head:
            raise CodecError("truncated", "record header")
        seq, boot, kind, flags, ts_s, ts_ms, nv = unpack(body, off)
        off += head
        end = off + 4 * nv
        if end > body_end:
            raise CodecError("truncated", f"record seq {seq} values")
        if ts_ms > 999:
            raise CodecError("bad_timestamp", f"ts_ms {ts_ms}")
        if seq == 0:
            raise CodecError("bad_seq", "seq 0")
        if seq <= last:
            raise CodecError("bad_order", f"seq {seq} after {last}")
        last = seq
        append((seq, boot, kind, flags & known, ts_s, ts_ms, body[off:end]))
        off = end
    if off != body_end:
        raise CodecError("trailing_bytes", f"{body_end - off} bytes")
    return node_id, raws


def raw_to_record(node_id: str, raw: RawRecord, received_ms: int = 0, source: str = "") -> Record:
    seq, boot, kind, flags, ts_s, ts_ms, vals = raw
    return Record(node_id, seq, boot, kind, flags, ts_s, ts_ms, struct.unpack(f"<{len(vals) // 4}f", vals),
                  received_ms, source)


def decode_batch(buf: bytes | memoryview, received_ms: int = 0, source: str = "") -> tuple[str, list[Record]]:
    """Decode and validate a whole batch; all or nothing. The records carry received_ms and source."""
    node_id, raws = decode_batch_raw(buf)
    return node_id, [raw_to_record(node_id, r, received_ms, source) for r in raws]


# ---- acks ----------------------------------------------------------------------------------


def encode_ack(acked_seq: int, time_ms: int | None, next_seq: int = 0, frontier: bool = False) -> bytes:
    """An ack body; next_seq > 0 makes it a RESYNC ack (16 + 4 bytes), frontier=True marks an
    answer that names the in-order frontier, not a stored batch (docs/protocol.md 3, 3.1)."""
    flags = (ACK_TIME if time_ms is not None else 0) | (ACK_RESYNC if next_seq else 0) | (ACK_FRONTIER if frontier else 0)
    body = ACK_BODY.pack(ACK_MAGIC, VERSION, flags, acked_seq, time_ms or 0)
    return body + struct.pack("<I", next_seq) if next_seq else body


def decode_ack(buf: bytes) -> Ack:
    n = len(buf)
    if n != ACK_BODY.size and n != ACK_RESYNC_SIZE:
        raise CodecError("bad_length", f"ack of {n} bytes")
    magic, ver, flags, seq, time_ms = ACK_BODY.unpack_from(buf)
    if magic != ACK_MAGIC:
        raise CodecError("bad_magic", magic.hex())
    if ver != VERSION:
        raise CodecError("bad_version", str(ver))
    if (n == ACK_RESYNC_SIZE) != bool(flags & ACK_RESYNC):
        raise CodecError("bad_length", f"ack of {n} bytes with flags 0x{flags:02x}")
    next_seq = 0
    if flags & ACK_RESYNC:
        (next_seq,) = struct.unpack_from("<I", buf, ACK_BODY.size)
        if next_seq == 0:
            raise CodecError("bad_seq", "resync to seq 0")
    return Ack(seq, time_ms if flags & ACK_TIME else None, next_seq, bool(flags & ACK_FRONTIER))


# ---- serial frames -------------------------------------------------------------------------


def encode_frame(ftype: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_PAYLOAD:
        raise CodecError("too_large", f"frame payload {len(payload)}")
    head = FRAME_HEAD.pack(FRAME_SYNC, ftype, len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head[2:] + payload))


class FrameDecoder:
    """Streaming de-framer: feed bytes, get (type, payload) frames; garbage is counted.

    Resynchronises after garbage or a broken frame by dropping one byte and scanning on.
    Memory stays bounded: at most one maximal frame is buffered.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = 0
        self.garbage_bytes = 0
        self.bad_crc = 0
        self.bad_length = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        buf = self._buf
        pos = 0
        while True:
            i = buf.find(FRAME_SYNC, pos)
            if i < 0:
                # keep a trailing first sync byte; the rest is garbage
                keep = 1 if buf and buf[-1] == FRAME_SYNC[0] else 0
                self.garbage_bytes += len(buf) - pos - keep
                pos = len(buf) - keep
                break
            self.garbage_bytes += i - pos
            pos = i
            if len(buf) - pos < FRAME_HEAD.size:
                break
            _, ftype, length = FRAME_HEAD.unpack_from(buf, pos)
            if length > MAX_FRAME_PAYLOAD or ftype not in FRAME_TYPES:
                self.bad_length += 1
                self.garbage_bytes += 1
                pos += 1
                continue
            end = pos + FRAME_HEAD.size + length + 4
            if len(buf) < end:
                break
            (crc,) = struct.unpack_from("<I", buf, end - 4)
            if zlib.crc32(buf[pos + 2 : end - 4]) != crc:
                self.bad_crc += 1
                self.garbage_bytes += 1
                pos += 1
                continue
            out.append((ftype, bytes(buf[pos + FRAME_HEAD.size : end - 4])))
            self.frames += 1
            pos = end
        del buf[:pos]
        return out
