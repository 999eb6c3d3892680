# heap: 80K
# Firmware codec against the shared vectors (tests/vectors/codec_v1.json), on the VM.
import json
import os
import struct
from array import array
from binascii import hexlify, unhexlify

import mptest
from vibenode import codec_tools as codec

_REPO = os.getenv("VIBEKIT_REPO") or "."
with open(_REPO + "/tests/vectors/codec_v1.json") as _f:
    V = json.load(_f)


def _hex(b):
    return hexlify(bytes(b)).decode()


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _vals(lst):
    return [float("nan") if v is None else v for v in lst]


def _same(a, b):
    if a != a:
        return b != b
    return _f32(a) == _f32(b)


def _record_bytes(r):
    return codec.encode_record(r["seq"], r["boot"], r["kind"], r["flags"], r["ts_s"], r["ts_ms"], _vals(r["values"]))


def test_records_encode():
    for r in V["records"]:
        assert _hex(_record_bytes(r)) == r["hex"], r["seq"]


def test_records_encode_into_array_buffer():
    buf = bytearray(1200)
    for r in V["records"]:
        vals = array("f", _vals(r["values"]))
        n = codec.encode_record_into(buf, r["seq"], r["boot"], r["kind"], r["flags"], r["ts_s"], r["ts_ms"], vals)
        assert _hex(memoryview(buf)[:n]) == r["hex"]


def test_records_decode():
    for r in V["records"]:
        raw = unhexlify(r["hex"])
        rec, end = codec.decode_record(raw)
        assert end == len(raw)
        seq, boot, kind, flags, ts_s, ts_ms, values = rec
        assert (seq, boot, kind, flags, ts_s, ts_ms) == (r["seq"], r["boot"], r["kind"], r["flags"], r["ts_s"], r["ts_ms"])
        assert len(values) == len(r["values"])
        for a, b in zip(values, _vals(r["values"])):
            assert _same(a, b)


def _records_by_seq():
    return {r["seq"]: _record_bytes(r) for r in V["records"]}


def test_batches_encode_and_decode():
    by_seq = _records_by_seq()
    for b in V["batches"]:
        recs = [by_seq[s] for s in b["record_seqs"]]
        assert _hex(codec.encode_batch(b["node_id"], recs)) == b["hex"], b["node_id"]
        nid, got = codec.decode_batch(unhexlify(b["hex"]))
        assert nid == b["node_id"]
        assert [g[0] for g in got] == b["record_seqs"]


def test_batch_builder_reuse_and_historical_flag():
    by_seq = _records_by_seq()
    bb = codec.BatchBuilder("pump-01", 1024)
    bb.begin()
    assert bb.add(by_seq[4294967295]) is True
    bb.begin()  # reuse the same buffer
    for s in (1, 2, 3):
        assert bb.add(by_seq[s], codec.HISTORICAL if s < 3 else 0)
    raw = bytes(bb.finish())
    nid, got = codec.decode_batch(raw)
    assert [g[3] for g in got] == [1 | 2, 9 | 2, 0]
    # the stored records are untouched by the flag
    assert by_seq[1][7] == 1


def test_batch_builder_full_and_order():
    bb = codec.BatchBuilder("n1", 64)
    bb.begin()
    rec = codec.encode_record(5, 1, 0, 0, 1, 0, [1.0] * 5)  # 35 bytes
    assert bb.add(rec)
    assert not bb.add(codec.encode_record(6, 1, 0, 0, 1, 0, [1.0] * 5))  # no room
    e = mptest.raises(codec.CodecError, bb.add, codec.encode_record(4, 1, 0, 0, 1, 0, []))
    assert e.reason == "bad_order"
    assert bb.count == 1


def test_bad_batches():
    for b in V["bad_batches"]:
        e = mptest.raises(codec.CodecError, codec.decode_batch, unhexlify(b["hex"]))
        assert e.reason == b["reason"], (b["why"], e.reason)


def test_acks():
    for a in V["acks"]:
        raw = unhexlify(a["hex"])
        want = (a["acked_seq"], a["time_ms"], a.get("next_seq", 0), a.get("frontier", False))
        assert codec.decode_ack(raw) == want
        assert _hex(codec.encode_ack(*want)) == a["hex"]
    for b in V["bad_acks"]:
        e = mptest.raises(codec.CodecError, codec.decode_ack, unhexlify(b["hex"]))
        assert e.reason == b["reason"], (b["why"], e.reason)
    assert mptest.raises(codec.CodecError, codec.decode_ack, b"VA\x01").reason == "bad_length"
    assert mptest.raises(codec.CodecError, codec.decode_ack, b"XA" + bytes(14)).reason == "bad_magic"


def test_frames_encode():
    for f in V["frames"]:
        assert _hex(codec.encode_frame(f["type"], unhexlify(f["payload_hex"]))) == f["hex"]


def _collect(reader_args=(1024,), chunk=0, stream=b""):
    got = []
    r = codec.FrameReader(lambda t, p: got.append((t, _hex(p))), *reader_args)
    if chunk:
        for i in range(0, len(stream), chunk):
            r.feed(stream[i : i + chunk])
    else:
        r.feed(stream)
    return r, got


def test_frames_decode_whole_and_bytewise():
    for f in V["frames"]:
        raw = unhexlify(f["hex"])
        for chunk in (0, 1, 7):
            r, got = _collect(chunk=chunk, stream=raw)
            assert got == [(f["type"], f["payload_hex"])], (f["type"], chunk)
            assert r.garbage == 0


def test_frame_streams_resync():
    for s in V["frame_streams"]:
        raw = unhexlify(s["hex"])
        want = [(t, p) for t, p in s["frames"]]
        for chunk in (0, 1, 3, 64):
            r, got = _collect(chunk=chunk, stream=raw)
            assert got == want, (s["why"], chunk, got)
            good = sum(len(p) // 2 + codec.FRAME_OVERHEAD for _, p in want)
            assert r.garbage + r.n + good == len(raw), (r.garbage, r.n, good, len(raw))
            assert r.garbage > 0


def test_frame_reader_small_buffer_skips_big_frames():
    ack = codec.encode_frame(codec.FRAME_ACK, codec.encode_ack(9, 5))
    big = codec.encode_frame(codec.FRAME_BATCH, bytes(300))
    r, got = _collect((64,), chunk=5, stream=b"junk" + big + ack + ack)
    assert len(got) == 2 and got[0][0] == codec.FRAME_ACK
    assert r.garbage >= 4 + len(big)


def test_frame_reader_random_garbage_between_frames():
    import random

    random.seed(7)
    ack = codec.encode_frame(codec.FRAME_ACK, codec.encode_ack(1234, 99))
    stream = bytearray()
    for i in range(50):
        g = bytes(random.getrandbits(8) for _ in range(random.getrandbits(6)))
        stream += g + ack
    r, got = _collect((64,), chunk=13, stream=bytes(stream))
    assert len(got) == 50, len(got)
    assert all(p == _hex(codec.encode_ack(1234, 99)) for _, p in got)


def test_valid_node_id():
    assert codec.valid_node_id("Fan_2.b-x")
    assert not codec.valid_node_id("a/b")
    assert not codec.valid_node_id("")
    assert not codec.valid_node_id("x" * 33)


mptest.main(globals())
