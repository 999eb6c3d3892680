"""Hostile input to the bridge's pure parts: a clear, counted error or a valid result, never a crash.

Budgets are fixed (derandomized, bounded example counts) so CI time is predictable.
"""

from __future__ import annotations

import math
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_bridge import codec
from host_bridge.config import ConfigError, parse_config
from host_bridge.model import Record

FUZZ = settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))

finite = st.floats(allow_nan=True, allow_infinity=True, width=32)
record_args = st.tuples(
    st.integers(1, 2**32 - 1), st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255),
    st.integers(0, 2**32 - 1), st.integers(0, 999), st.lists(finite, max_size=60),
)


@FUZZ
@given(st.binary(max_size=3000))
def test_decode_batch_on_random_bytes_raises_only_codec_error(data):
    try:
        node, recs = codec.decode_batch(data)
    except codec.CodecError as e:
        assert e.reason
    else:  # astronomically unlikely, but then it must be a valid batch
        assert codec.valid_node_id(node) and all(isinstance(r, Record) for r in recs)


@FUZZ
@given(st.lists(record_args, max_size=8, unique_by=lambda a: a[0]), st.data())
def test_any_mutation_of_a_valid_batch_is_rejected_or_identical(recs, data):
    recs = sorted(recs, key=lambda a: a[0])
    raw = codec.encode_batch("fuzz-1", [codec.encode_record(*a) for a in recs])
    node, decoded = codec.decode_batch(raw)
    assert [r.seq for r in decoded] == [a[0] for a in recs]
    for r, a in zip(decoded, recs):
        assert all(
            (math.isnan(x) and math.isnan(y)) or x == y
            for x, y in zip(r.values, [codec.struct.unpack("<f", codec.struct.pack("<f", v))[0] for v in a[6]])
        )
    pos = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(raw)
    bad[pos] ^= 1 << bit
    try:
        codec.decode_batch(bytes(bad))
    except codec.CodecError:
        return
    raise AssertionError(f"a bit flip at byte {pos} went through")


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=200), st.just(b"\xa5\x5a")), max_size=30), st.integers(1, 64))
def test_frames_survive_any_garbage_between_them(garbage, chunk):
    frame = codec.encode_frame(codec.FRAME_BATCH, codec.encode_batch("n", [codec.encode_record(1, 1, 0, 1, 5, 0, [1.0])]))
    stream = b""
    for g in garbage:
        stream += g + frame
    dec = codec.FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i : i + chunk])
    # every inserted frame is found (garbage may itself contain nothing that looks like one)
    assert sum(1 for t, p in got if (t, p) == (codec.FRAME_BATCH, frame[5:-4])) >= len(garbage)
    assert len(dec._buf) <= codec.MAX_FRAME_PAYLOAD + codec.FRAME_OVERHEAD


def test_deframer_memory_stays_bounded_under_a_megabyte_of_hostile_bytes():
    import random

    rnd = random.Random(7)
    dec = codec.FrameDecoder()
    tracemalloc.start()
    base = None
    for i in range(256):
        chunk = bytes(rnd.getrandbits(8) for _ in range(4096))
        if i % 3 == 0:  # plausible headers with huge lengths
            chunk = b"\xa5\x5a\x01\xff\x3f" + chunk
        dec.feed(chunk)
        if i == 16:
            base = tracemalloc.get_traced_memory()[0]
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 64 * 1024, grown
    assert dec.garbage_bytes > 900_000


toml_scalar = st.one_of(st.integers(-5, 70000), st.text(max_size=12), st.booleans(), st.floats(allow_nan=False))
section = st.dictionaries(st.sampled_from(["port", "host", "enabled", "prefix", "word_order", "id", "unit_id", "x"]), toml_scalar, max_size=5)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["bridge", "mqtt", "modbus", "opcua", "nodes", "serial", "bogus"]),
        st.one_of(section, st.lists(section, max_size=3), toml_scalar),
        max_size=5,
    )
)
def test_config_parser_raises_only_config_error(data):
    try:
        parse_config(data, "fuzz.toml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.toml: ")
    except (AttributeError, TypeError) as e:  # a section that is not a table
        raise AssertionError(f"unclear error for {data!r}: {e!r}") from e
