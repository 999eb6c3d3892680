# Protocol helpers a node never runs, for tests, benchmarks and tools on the VM: record and
# batch decoders (with the bridge's validation) and one-shot encoders. Re-exports the node
# side (vibenode.codec) and the serial framing (vibenode.frames), so a test uses one module.
import struct
from binascii import crc32

from vibenode.codec import *  # noqa: F401,F403
from vibenode.codec import BatchBuilder, CodecError, valid_node_id
from vibenode.frames import *  # noqa: F401,F403

VERSION = 1
MAX_BATCH = 16384
RECORD_HEADER = 15
ACK_SIZE = 16
KIND_MEASUREMENT = 0
KIND_STATUS = 1
# record flags
CLOCK_SYNCED = 0x01
HISTORICAL = 0x02
ACCEL_FAULT = 0x04
TEMP_FAULT = 0x08
FIFO_OVERRUN = 0x10
CLIPPED = 0x20

_REC_FMT = "<IHBBIHB"  # seq boot kind flags ts_s ts_ms n


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


def encode_ack(acked_seq, time_ms=None, next_seq=0, frontier=False):
    # next_seq > 0: a RESYNC ack (flags bit 1, u32 next_seq appended; docs/protocol.md 3.1);
    # frontier: flags bit 2, acked_seq is the in-order frontier, not a stored batch's end
    flags = (0 if time_ms is None else 1) | (2 if next_seq else 0) | (4 if frontier else 0)
    b = struct.pack("<2sBBIQ", b"VA", VERSION, flags, acked_seq, time_ms or 0)
    return b + struct.pack("<I", next_seq) if next_seq else b
