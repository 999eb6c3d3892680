"""Write tests/vectors/codec_v1.json: the shared wire-protocol test vectors.

Built with `struct` and `zlib` straight from docs/protocol.md, independent of both codecs, so
that each codec is checked against the document and not against the other.
Run: python tools/make_vectors.py  (a test checks the committed file is what this writes).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "codec_v1.json"


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def record(seq, boot, kind, flags, ts_s, ts_ms, values):
    return struct.pack("<IHBBIHB", seq, boot, kind, flags, ts_s, ts_ms, len(values)) + struct.pack(
        f"<{len(values)}f", *values
    )


def batch(node_id: str, recs: list[bytes]) -> bytes:
    nid = node_id.encode()
    body = b"VB" + bytes([1, len(nid)]) + nid + struct.pack("<H", len(recs)) + b"".join(recs)
    return body + struct.pack("<I", zlib.crc32(body))


def frame(ftype: int, payload: bytes) -> bytes:
    head = struct.pack("<BH", ftype, len(payload))
    return b"\xa5\x5a" + head + payload + struct.pack("<I", zlib.crc32(head + payload))


def ack(seq: int, time_ms: int | None, next_seq: int = 0, frontier: bool = False) -> bytes:
    flags = (1 if time_ms is not None else 0) | (2 if next_seq else 0) | (4 if frontier else 0)
    body = struct.pack("<2sBBIQ", b"VA", 1, flags, seq, time_ms or 0)
    return body + struct.pack("<I", next_seq) if next_seq else body  # RESYNC: u32 next_seq follows


def jvals(values):
    return [None if math.isnan(v) else f32(v) for v in values]


def main() -> None:
    meas = [21.5, 0.5, 0.25, 0.125] + [float(i) / 8 for i in range(4, 29)] + [0.01] * 12
    meas[28] = 2.0
    meas_nan = list(meas)
    meas_nan[0] = math.nan
    status = [3600.0, 41000.0, 1.0, math.nan, 12.0, 0.0, 3.0, 0.0, 100.0, 2.0, 900.0]
    recs = [
        dict(seq=1, boot=1, kind=0, flags=0x01, ts_s=1795300000, ts_ms=250, values=meas),
        dict(seq=2, boot=1, kind=0, flags=0x09, ts_s=1795300001, ts_ms=0, values=meas_nan),
        dict(seq=3, boot=1, kind=1, flags=0x00, ts_s=42, ts_ms=999, values=status),
        dict(seq=4294967295, boot=65535, kind=0, flags=0x3F, ts_s=4294967295, ts_ms=0, values=[]),
    ]
    rec_bytes = [record(**r) for r in recs]
    vectors = {
        "about": "Wire protocol v1 vectors, see docs/protocol.md. Hex is the exact encoding; "
        "values are float32-rounded; null = NaN.",
        "records": [
            {**{k: v for k, v in r.items() if k != "values"}, "values": jvals(r["values"]), "hex": b.hex()}
            for r, b in zip(recs, rec_bytes)
        ],
        "batches": [
            {"node_id": "pump-01", "record_seqs": [1, 2, 3], "hex": batch("pump-01", rec_bytes[:3]).hex()},
            {"node_id": "a", "record_seqs": [], "hex": batch("a", []).hex()},
            {"node_id": "Fan_2.b-" + "x" * 24, "record_seqs": [4294967295], "hex": batch("Fan_2.b-" + "x" * 24, rec_bytes[3:]).hex()},
        ],
        "acks": [
            {"acked_seq": 3, "time_ms": 1795300002123, "hex": ack(3, 1795300002123).hex()},
            {"acked_seq": 0, "time_ms": None, "hex": ack(0, None).hex()},
            # RESYNC acks (docs/protocol.md section 3.1): 20 bytes, flags bit 1, next_seq last
            {"acked_seq": 0, "time_ms": 1795300002123, "next_seq": 4097, "hex": ack(0, 1795300002123, 4097).hex()},
            {"acked_seq": 0, "time_ms": None, "next_seq": 4294967295, "hex": ack(0, None, 4294967295).hex()},
            # FRONTIER (flags bit 2): the answer to a HELLO, an empty batch or previews
            {"acked_seq": 812, "time_ms": 1795300002123, "frontier": True, "hex": ack(812, 1795300002123, 0, True).hex()},
        ],
        "bad_acks": [
            {"why": "short", "reason": "bad_length", "hex": "5641" + "01"},
            {"why": "magic", "reason": "bad_magic", "hex": (b"XA" + ack(1, 5)[2:]).hex()},
            {"why": "version 2", "reason": "bad_version", "hex": (b"VA\x02" + ack(1, 5)[3:]).hex()},
            {"why": "resync flag without next_seq", "reason": "bad_length",
             "hex": (ack(0, 5)[:3] + b"\x03" + ack(0, 5)[4:]).hex()},
            {"why": "20 bytes without the resync flag", "reason": "bad_length", "hex": (ack(0, 5) + bytes(4)).hex()},
            {"why": "resync to seq 0", "reason": "bad_seq", "hex": (ack(0, 5)[:3] + b"\x03" + ack(0, 5)[4:] + bytes(4)).hex()},
        ],
        "frames": [
            {"type": 1, "payload_hex": batch("n1", rec_bytes[:1]).hex(), "hex": frame(1, batch("n1", rec_bytes[:1])).hex()},
            {"type": 2, "payload_hex": ack(7, 1000).hex(), "hex": frame(2, ack(7, 1000)).hex()},
            {"type": 2, "payload_hex": ack(0, 1000, 22).hex(), "hex": frame(2, ack(0, 1000, 22)).hex()},
            {"type": 3, "payload_hex": b'{"node":"n1","boot":2}'.hex(), "hex": frame(3, b'{"node":"n1","boot":2}').hex()},
        ],
    }
    good = batch("pump-01", rec_bytes[:2])
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    flipped = bytearray(good)
    flipped[20] ^= 0x01
    out_of_order = batch("pump-01", [rec_bytes[1], rec_bytes[0]])
    dup = batch("pump-01", [rec_bytes[0], rec_bytes[0]])
    wrong_count = bytearray(good[:-4])
    struct.pack_into("<H", wrong_count, 4 + 7, 3)
    wrong_count = bytes(wrong_count) + struct.pack("<I", zlib.crc32(wrong_count))
    trailing = good[:-4] + b"\x00"
    trailing = trailing + struct.pack("<I", zlib.crc32(trailing))
    bad_id = b"VB\x01\x03a/b\x00\x00"
    bad_id = bad_id + struct.pack("<I", zlib.crc32(bad_id))
    bad_ms = record(5, 1, 0, 1, 10, 1000, [1.0])
    bad_ms_batch = batch("n1", [bad_ms])
    vectors["bad_batches"] = [
        {"why": "crc", "reason": "bad_crc", "hex": bytes(bad_crc).hex()},
        {"why": "bit flip inside", "reason": "bad_crc", "hex": bytes(flipped).hex()},
        {"why": "magic", "reason": "bad_magic", "hex": (b"XB" + good[2:]).hex()},
        {"why": "version 2", "reason": "bad_version", "hex": (good[:2] + b"\x02" + good[3:]).hex()},
        {"why": "seq out of order", "reason": "bad_order", "hex": out_of_order.hex()},
        {"why": "duplicate seq in batch", "reason": "bad_order", "hex": dup.hex()},
        {"why": "count larger than records", "reason": "truncated", "hex": wrong_count.hex()},
        {"why": "trailing byte", "reason": "trailing_bytes", "hex": trailing.hex()},
        {"why": "node id with slash", "reason": "bad_node_id", "hex": bad_id.hex()},
        {"why": "ts_ms 1000", "reason": "bad_timestamp", "hex": bad_ms_batch.hex()},
        {"why": "too short", "reason": "truncated", "hex": "5642"},
        {"why": "empty", "reason": "truncated", "hex": ""},
    ]
    f_ok = frame(2, ack(9, 5))
    vectors["frame_streams"] = [
        {
            "why": "garbage, a good frame, a frame with a bad crc, console text, a good frame",
            "hex": (b"\x00\xa5\xffboot ok\r\n" + f_ok + f_ok[:-1] + b"\x00" + b"Traceback\r\n" + f_ok).hex(),
            "frames": [[2, ack(9, 5).hex()], [2, ack(9, 5).hex()]],
        },
        {
            "why": "a frame that starts inside a broken frame's payload is still found",
            "hex": (b"\xa5\x5a\x01\x20\x00" + f_ok + b"\x00" * 40).hex(),
            "frames": [[2, ack(9, 5).hex()]],
        },
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(vectors, indent=1) + "\n")


if __name__ == "__main__":
    main()
