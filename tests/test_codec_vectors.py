"""The bridge's codec against the shared wire-protocol vectors (docs/protocol.md)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from host_bridge import codec

VECTORS = json.loads((Path(__file__).parent / "vectors" / "codec_v1.json").read_text())


def _same(a: float, b: float | None) -> bool:
    return math.isnan(a) if b is None else a == b


@pytest.mark.parametrize("v", VECTORS["records"], ids=lambda v: f"seq{v['seq']}")
def test_record_roundtrip(v):
    raw = bytes.fromhex(v["hex"])
    rec, end = codec.decode_record(raw)
    assert end == len(raw)
    assert (rec.seq, rec.boot, rec.kind, rec.flags, rec.ts_s, rec.ts_ms) == (
        v["seq"], v["boot"], v["kind"], v["flags"], v["ts_s"], v["ts_ms"],
    )
    assert len(rec.values) == len(v["values"])
    assert all(_same(a, b) for a, b in zip(rec.values, v["values"]))
    vals = [math.nan if x is None else x for x in v["values"]]
    again = codec.encode_record(v["seq"], v["boot"], v["kind"], v["flags"], v["ts_s"], v["ts_ms"], vals)
    assert again == raw


@pytest.mark.parametrize("v", VECTORS["batches"], ids=lambda v: v["node_id"][:10])
def test_batch_roundtrip(v):
    raw = bytes.fromhex(v["hex"])
    node_id, recs = codec.decode_batch(raw)
    assert node_id == v["node_id"]
    assert [r.seq for r in recs] == v["record_seqs"]
    assert all(r.node_id == node_id for r in recs)
    by_seq = {r["seq"]: bytes.fromhex(r["hex"]) for r in VECTORS["records"]}
    assert codec.encode_batch(node_id, [by_seq[s] for s in v["record_seqs"]]) == raw


@pytest.mark.parametrize("v", VECTORS["bad_batches"], ids=lambda v: v["why"])
def test_bad_batch_rejected_with_reason(v):
    with pytest.raises(codec.CodecError) as e:
        codec.decode_batch(bytes.fromhex(v["hex"]))
    assert e.value.reason == v["reason"]


@pytest.mark.parametrize("v", VECTORS["acks"], ids=lambda v: str(v["acked_seq"]))
def test_ack_roundtrip(v):
    raw = bytes.fromhex(v["hex"])
    ack = codec.decode_ack(raw)
    assert ack.acked_seq == v["acked_seq"] and ack.time_ms == v["time_ms"]
    assert ack.next_seq == v.get("next_seq", 0) and ack.frontier == v.get("frontier", False)
    assert codec.encode_ack(v["acked_seq"], v["time_ms"], v.get("next_seq", 0), v.get("frontier", False)) == raw


@pytest.mark.parametrize("v", VECTORS["bad_acks"], ids=lambda v: v["why"])
def test_bad_ack_rejected_with_reason(v):
    with pytest.raises(codec.CodecError) as e:
        codec.decode_ack(bytes.fromhex(v["hex"]))
    assert e.value.reason == v["reason"]


@pytest.mark.parametrize("v", VECTORS["frames"], ids=lambda v: f"type{v['type']}")
def test_frame_roundtrip(v):
    payload = bytes.fromhex(v["payload_hex"])
    assert codec.encode_frame(v["type"], payload).hex() == v["hex"]
    dec = codec.FrameDecoder()
    assert dec.feed(bytes.fromhex(v["hex"])) == [(v["type"], payload)]
    assert dec.garbage_bytes == 0


@pytest.mark.parametrize("v", VECTORS["frame_streams"], ids=lambda v: v["why"][:30])
@pytest.mark.parametrize("chunk", [1, 3, 7, 10_000])
def test_frame_stream_resync(v, chunk):
    data = bytes.fromhex(v["hex"])
    dec = codec.FrameDecoder()
    got = []
    for i in range(0, len(data), chunk):
        got += dec.feed(data[i : i + chunk])
    assert [[t, p.hex()] for t, p in got] == v["frames"]
    framed = sum(len(bytes.fromhex(p)) + codec.FRAME_OVERHEAD for _, p in v["frames"])
    # every byte is either in a good frame, counted as garbage, or still buffered
    assert dec.garbage_bytes + framed + len(dec._buf) == len(data)


def test_vectors_file_is_what_the_generator_writes(tmp_path):
    before = (Path(__file__).parent / "vectors" / "codec_v1.json").read_text()
    subprocess.run([sys.executable, "tools/make_vectors.py"], check=True, cwd=Path(__file__).parent.parent)
    assert (Path(__file__).parent / "vectors" / "codec_v1.json").read_text() == before
