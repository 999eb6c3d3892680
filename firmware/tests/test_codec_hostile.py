# heap: 104K
# Hostile input on the node's receive path, on the VM: the shared bad vectors
# (tests/vectors/codec_v1.json bad_batches, frame_streams), bit flips, truncations and
# deterministic random garbage go through the serial uplink's frame reader and both uplinks'
# ack decoder. Every bad input ends as a counted error (Health counts or FrameReader
# counters); no exception escapes; the heap does not grow while it goes on.
import gc
import json
import os
import struct
from binascii import unhexlify

import mptest
from vibenode import codec_tools as codec
from vibenode.config import validate
from vibenode.status import Health
from vibenode.uplink_mqtt import MqttUplink
from vibenode.uplink_serial import SerialUplink

_REPO = os.getenv("VIBEKIT_REPO") or "."
with open(_REPO + "/tests/vectors/codec_v1.json") as _f:
    V = json.load(_f)
BAD_BATCHES = [unhexlify(b["hex"]) for b in V["bad_batches"]]
STREAMS = [(unhexlify(s["hex"]), [(t, unhexlify(p)) for t, p in s["frames"]]) for s in V["frame_streams"]]
GOOD_ACK = codec.encode_ack(41, 1795300002123)
GOOD_ACK_FRAME = codec.encode_frame(codec.FRAME_ACK, GOOD_ACK)
del V  # the vectors' JSON text is big for a 64-bit VM heap


class Rand:
    """xorshift32: the same garbage on every VM and every run (no dependence on `random`)."""

    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n

    def fill(self, buf, n):
        for i in range(n):
            buf[i] = self.next() & 0xFF


class FakeStream:
    """The port's serial stream: hands out what the test queued, in chunks (never blocks)."""

    def __init__(self):
        self.data = bytearray()
        self.pos = 0
        self.chunk = 64
        self.written = 0

    def push(self, b):
        if self.pos == len(self.data):
            self.data = bytearray()
            self.pos = 0
        self.data.extend(b)

    def pending(self):
        return len(self.data) - self.pos

    def read_into(self, buf):
        n = min(len(buf), self.chunk, len(self.data) - self.pos)
        buf[:n] = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return n

    def wait_readable(self, ms):
        return self.pos < len(self.data)

    def write_all(self, buf, timeout_ms):
        self.written += len(buf)
        return True


def _quiet(*a):
    pass


def _cfg():
    return validate({"node_id": "hostile-1", "uplink": "serial"})


class Harness:
    def __init__(self):
        cfg = _cfg()
        self.health = Health(_quiet)
        self.stream = FakeStream()
        self.serial = SerialUplink(cfg, self.health, self.stream, 1, "virtual", "0.1.0")
        self.mqtt = MqttUplink(cfg, self.health, 1, "virtual", "0.1.0")
        self.acks = []
        self.nacks = 0
        self.keep = True  # keep every ack (small tests) or only the last (long runs)
        self.serial.on_ack = self._on_ack
        self.mqtt.on_ack = self._on_ack

    def _on_ack(self, seq, time_ms, next_seq=0, frontier=False):
        self.nacks += 1
        if self.keep:
            self.acks.append((seq, time_ms))
        else:
            self.acks = [(seq, time_ms)]

    def feed_serial(self, data, chunk=64):
        self.stream.chunk = chunk
        self.stream.push(data)
        while self.stream.pending():
            self.serial.wait(0)  # exceptions would escape from here

    def mqtt_ack(self, payload):
        self.mqtt._on_message(b"vibekit/hostile-1/ack", payload)


def _errors(h, prefix="ack_"):
    n = 0
    for k, v in h.health.counts.items():
        if k.startswith(prefix):
            n += v
    return n


def test_bad_batches_as_ack_payloads_are_counted():
    h = Harness()
    for raw in BAD_BATCHES:
        h.mqtt_ack(raw)
        h.mqtt_ack(raw[:16])  # a 16-byte slice: right length, wrong magic
    assert h.acks == [], h.acks
    # every one is counted by its reason (a short bad batch is also a short ack)
    assert h.health.errors == 2 * len(BAD_BATCHES), h.health.counts
    assert _errors(h) == h.health.errors
    assert h.health.get("ack_bad_magic") >= 1 and h.health.get("ack_bad_length") >= len(BAD_BATCHES)


def test_bad_batches_in_serial_frames_are_skipped_and_counted():
    h = Harness()
    for raw in BAD_BATCHES:
        # a BATCH frame is not for the node (it only takes ACK) and too long for its buffer
        h.feed_serial(codec.encode_frame(codec.FRAME_BATCH, raw), chunk=7)
        # an ACK frame carrying a whole bad batch: over the node's 64-byte frame limit
        h.feed_serial(codec.encode_frame(codec.FRAME_ACK, raw), chunk=13)
        # an ACK frame with a good CRC around a wrong body: the ack decoder counts it
        h.feed_serial(codec.encode_frame(codec.FRAME_ACK, raw[:16]))
        h.feed_serial(GOOD_ACK_FRAME, chunk=5)
    r = h.serial.reader
    assert h.acks == [(41, 1795300002123)] * len(BAD_BATCHES), h.acks
    # every frame that got through the CRC but is not a good ack is a counted ack error
    assert h.health.errors == r.frames - len(BAD_BATCHES), (h.health.counts, r.frames)
    assert _errors(h) == h.health.errors
    assert r.frames >= 2 * len(BAD_BATCHES)
    assert r.bad_length >= len(BAD_BATCHES)
    assert r.garbage > sum(len(b) for b in BAD_BATCHES)


def test_shared_frame_streams_through_the_serial_uplink():
    for raw, want in STREAMS:
        for chunk in (1, 3, 64):
            h = Harness()
            h.feed_serial(raw, chunk)
            got = [(codec.FRAME_ACK, codec.encode_ack(s, t)) for s, t in h.acks]
            assert got == want, (chunk, got)
            assert h.serial.reader.garbage > 0
            assert h.health.errors == 0


def test_every_bit_flip_of_an_ack_frame_is_caught():
    h = Harness()
    frame = bytearray(GOOD_ACK_FRAME)
    nbits = len(frame) * 8
    for bit in range(nbits):
        frame[bit // 8] ^= 1 << (bit % 8)
        h.feed_serial(frame, chunk=len(frame))
        frame[bit // 8] ^= 1 << (bit % 8)
        h.feed_serial(b"\x00" * 9)  # flush a frame head the flip left waiting for more bytes
    # a flip in the sync, type, length or CRC never passes as a good ack; CRC-32 catches
    # every single-bit error in the body
    assert h.acks == [], h.acks[:3]
    r = h.serial.reader
    assert r.bad_crc + r.bad_length > 0
    h.feed_serial(GOOD_ACK_FRAME)
    assert h.acks == [(41, 1795300002123)]


def test_truncated_and_extended_acks():
    h = Harness()
    for n in range(len(GOOD_ACK) + 8):
        body = (GOOD_ACK + b"\x00" * 8)[:n]
        h.mqtt_ack(body)
        h.feed_serial(codec.encode_frame(codec.FRAME_ACK, body))
    assert h.acks == [(41, 1795300002123)] * 2
    assert h.health.get("ack_bad_length") == 2 * (len(GOOD_ACK) + 7)
    bad_version = GOOD_ACK[:2] + b"\x07" + GOOD_ACK[3:]
    h.mqtt_ack(bad_version)
    assert h.health.get("ack_bad_version") == 1


def _random_round(h, rnd, buf):
    """One round of garbage: random bytes, random acks, garbage with real sync bytes in it."""
    n = rnd.below(len(buf))
    rnd.fill(buf, n)
    if n > 2 and rnd.below(2):
        buf[rnd.below(n - 1)] = codec.SYNC0  # make resync work harder
        k = rnd.below(n - 1)
        buf[k] = codec.SYNC0
        buf[k + 1] = codec.SYNC1
    mv = memoryview(buf)
    h.feed_serial(mv[:n], 1 + rnd.below(70))
    # random MQTT ack payloads: mostly wrong length, some 16 bytes with and without the magic
    m = rnd.below(3)
    if m == 0:
        h.mqtt_ack(mv[: rnd.below(40)])
    else:
        if m == 2:
            buf[0], buf[1], buf[2] = 0x56, 0x41, 1  # a valid-looking ack with random fields
        h.mqtt_ack(mv[:16])


def test_random_garbage_is_counted_not_raised():
    h = Harness()
    h.keep = False
    rnd = Rand(0x5EED)
    buf = bytearray(300)
    for _ in range(3000):
        _random_round(h, rnd, buf)
        if rnd.below(8) == 0:
            h.feed_serial(GOOD_ACK_FRAME, 1 + rnd.below(20))
    # a good ack after all that is still found
    before = h.nacks
    h.feed_serial(b"\x00" * 16 + GOOD_ACK_FRAME)
    assert h.nacks == before + 1 and h.acks == [(41, 1795300002123)]
    r = h.serial.reader
    assert r.garbage > 10000, r.garbage
    assert _errors(h) > 0
    assert h.health.get("ack_bad_length") > 0


def test_no_heap_growth_under_garbage():
    h = Harness()
    h.keep = False
    rnd = Rand(0xC0FFEE)
    buf = bytearray(300)
    for _ in range(150):  # warm-up: every counter name exists, the stream's buffer has its size
        _random_round(h, rnd, buf)
        h.feed_serial(GOOD_ACK_FRAME)
    gc.collect()
    free0 = gc.mem_free()
    for _ in range(3000):
        _random_round(h, rnd, buf)
        h.feed_serial(GOOD_ACK_FRAME, 7)
    gc.collect()
    free1 = gc.mem_free()
    grown = free0 - free1
    print("heap growth over 3000 rounds: %d bytes; acks %d, garbage %d, errors %d"
          % (grown, h.nacks, h.serial.reader.garbage, h.health.errors))
    assert h.nacks >= 3000
    assert grown < 1024, grown


mptest.main(globals())
