"""Bounds on the ingest: per-node rate limit, a bounded queue, and a flood that starves nobody.

Unit tests drive RateLimiter with a fake clock and Ingest.submit without its worker. The
integration test runs the bridge behind mosquitto: three honest nodes send one batch every
100 ms and time each ack while a fourth node (another process) floods its own topic as fast
as paho can publish; the honest nodes' ack latency stays within a bound and every honest
record is stored.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import paho.mqtt.client as mqtt

from host_bridge.codec import decode_ack, encode_batch, encode_record
from host_bridge.ingest import Inbound, Ingest
from host_bridge.metrics import Counters
from host_bridge.ratelimit import RateLimiter
from host_bridge.tags import TagStore
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_burst_then_rate():
    clk = Clock()
    rl = RateLimiter(rate=10, burst=5, clock=clk)
    assert [rl.allow("a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert rl.allow("b")  # another node has its own bucket
    clk.t += 0.25  # 2.5 tokens back
    assert [rl.allow("a") for _ in range(3)] == [True, True, False]
    clk.t += 100  # refills to the burst, never beyond
    assert sum(rl.allow("a") for _ in range(10)) == 5
    assert RateLimiter(rate=0).allow("x")  # 0: off


def test_bucket_table_is_bounded():
    clk = Clock()
    rl = RateLimiter(rate=10, burst=5, max_keys=100, clock=clk)
    assert all(rl.allow(f"n{i}") for i in range(100))
    assert not rl.allow("invented-101") and rl.refused_keys == 1 and len(rl) == 100
    clk.t += 0.2  # not refilled yet: nothing to forget
    assert not rl.allow("invented-102")
    clk.t += 1.0  # every bucket is full again = never seen: the sweep forgets them
    assert rl.allow("n-new") and len(rl) == 1


class NullHistorian:
    def insert(self, records):
        return list(records)

    def max_seq(self, node_id, previews=False):
        return 0


def _inbound(node: str, seq: int = 1) -> Inbound:
    payload = encode_batch(node, [encode_record(seq, 1, 0, 1, 1795300000, 0, [1.0])])
    return Inbound(payload, "mqtt", node, None)


def test_submit_limits_each_node_and_counts():
    c = Counters()
    ing = Ingest(NullHistorian(), TagStore(), c, known_nodes={"flood", "quiet"},
                 rate_limiter=RateLimiter(rate=1, burst=50))
    admitted = sum(ing.submit(_inbound("flood", i + 1)) for i in range(1000))
    assert admitted == 50 and c.get("rate_limited") == 950
    assert ing.submit(_inbound("quiet"))  # the flood did not use up the others' share
    assert not ing.submit(_inbound("stranger"))  # unknown: refused before it takes queue space
    assert c.get("rejected_unknown_node") == 1 and ing._q.qsize() == 51


def test_ingest_queue_is_bounded_and_counts_overflow():
    c = Counters()
    ing = Ingest(NullHistorian(), TagStore(), c, max_queue=10, rate_limiter=RateLimiter(rate=0))
    results = [ing.submit(_inbound(f"n{i}")) for i in range(25)]
    assert results == [True] * 10 + [False] * 15
    assert c.get("ingest_queue_full") == 15 and ing._q.qsize() == 10
    assert ing._q.maxsize == 10


# ---- a flood from one node, latency of the others ------------------------------------------


# Far beyond what a node's link carries: 1,000 full batches/s (64 records, 11.5 KB) is 11.5 MB/s
# (WiFi on an ESP32 manages ~1-2 MB/s) and 64,000 records/s of historian work if it were let in.
# Faster than the bridge's MQTT thread can receive (~14k messages/s here) is a matter for the
# broker and the network: docs/security.md.
FLOOD_RATE = 1000.0


def _flooder(port: int, seconds: float, rate: float, out) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flooder")
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    recs = [encode_record(s, 1, 0, 1, 1795300000, 0, [1.0] * 41) for s in range(1, 65)]
    payload = encode_batch("flood", recs)  # a valid 11.5 KB batch, the same every time
    info = None
    n = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        due = int((now - t0) * rate)
        while n < due:
            info = c.publish("vibekit/flood/data", payload, qos=0)
            n += 1
        if info is not None:
            info.wait_for_publish(5)
        time.sleep(0.005)
    c.loop_stop()
    c.disconnect()
    out.put(n)


class Honest:
    """Nodes that send one batch every `period` s each and time publish -> ack."""

    def __init__(self, port: int, nodes: list[str], period: float = 0.1) -> None:
        self.nodes, self.period = nodes, period
        self.sent: dict[tuple[str, int], float] = {}
        self.lat: list[tuple[float, float]] = []  # (sent at, latency ms)
        self.seq = dict.fromkeys(nodes, 0)
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="honest")
        self.c.on_message = self._on_ack
        self.c.connect("127.0.0.1", port)
        self.c.subscribe([(f"vibekit/{n}/ack", 1) for n in nodes])
        self.c.loop_start()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _on_ack(self, c, u, msg) -> None:
        node = msg.topic.split("/")[1]
        seq = decode_ack(msg.payload).acked_seq
        now = time.monotonic()
        with self.lock:
            t = self.sent.pop((node, seq), None)
            if t is not None:
                self.lat.append((t, (now - t) * 1000))

    def _run(self) -> None:
        while not self.stop.wait(self.period):
            for n in self.nodes:
                with self.lock:
                    self.seq[n] += 1
                    s = self.seq[n]
                    self.sent[(n, s)] = time.monotonic()
                self.c.publish(f"vibekit/{n}/data", encode_batch(n, [encode_record(s, 1, 0, 1, 1795300000, 0,
                                                                                   [1.0] * 41)]), qos=1)

    def p99(self, since: float, until: float) -> tuple[float, int]:
        with self.lock:
            v = sorted(ms for t, ms in self.lat if since <= t < until)
        return (v[min(len(v) - 1, int(0.99 * len(v)))] if v else float("inf")), len(v)

    def close(self) -> None:
        self.stop.set()
        self.t.join(5)
        self.c.loop_stop()
        self.c.disconnect()


def test_flood_from_one_node_leaves_the_others_latency_bounded(tmp_path, broker):
    honest_ids = ["h1", "h2", "h3"]
    cfg = make_config(tmp_path, [*honest_ids, "flood"], mqtt_port=broker.port)
    with BridgeThread(cfg) as br:
        wait_for(br.mqtt.connected.is_set, 15, what="bridge connected")
        h = Honest(broker.port, honest_ids)
        h.t.start()
        try:
            time.sleep(2.0)
            t_flood = time.monotonic()
            q = mp.get_context("spawn").Queue()
            p = mp.get_context("spawn").Process(target=_flooder, args=(broker.port, 6.0, FLOOD_RATE, q))
            p.start()
            flooded = q.get(timeout=60)
            p.join(10)
            t_end = time.monotonic()
            time.sleep(1.0)
        finally:
            h.close()
        base, nb = h.p99(0, t_flood)
        during, nd = h.p99(t_flood + 0.5, t_end)
        c = br.counters.snapshot()
        print(f"flood: {flooded} batches in 6 s; honest ack p99 {base:.0f} ms before, {during:.0f} ms during "
              f"({nd} acks); rate_limited {c.get('rate_limited')}")
        assert flooded > 0.8 * 6 * FLOOD_RATE and c.get("rate_limited", 0) > flooded // 2
        assert nd >= 100  # the honest nodes kept being acked while the flood ran
        # measured: ~80 ms with the rate limit, ~350 ms without it (the worker commits the flood)
        assert during < max(200.0, 3 * base), (base, during)
        # nothing of the honest nodes was lost
        wait_for(lambda: all(br.historian.count(n) == h.seq[n] for n in honest_ids), 15,
                 what="every honest record stored")
