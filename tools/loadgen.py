"""Load generator: many nodes speaking protocol v1 over MQTT from one process, with acks.

Each simulated node behaves like the firmware's uplink: a retained online state with an offline
last will, one batch in flight (QoS 1 to {prefix}/{node}/data), resent unchanged when no ack
arrives within --ack-timeout, records freed on the bridge's ack ({prefix}/{node}/ack). Nodes
are spread over --connections MQTT connections (paho, one network thread each), so 1,000 nodes
do not need 1,000 threads; a site's real nodes each have their own connection.

    python -m tools.loadgen --nodes 1000 --connections 20 --interval 10 --duration 60 --port 1883

The bridge must accept the generated ids: `accept_unknown_nodes = true` in its [bridge] section
(Modbus unit ids stop at 247, so 1,000 nodes cannot each have one).

Prints one JSON line of figures: records sent and acked, records/s, ack latency p50/p99/max
(ms, publish to ack), resends, batches in flight at the end. Use from bench/ as
`from tools.loadgen import LoadGen`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402

from host_bridge.codec import CodecError, decode_ack, encode_batch, encode_record  # noqa: E402
from host_bridge.model import FLAG_CLOCK_SYNCED, FLAG_HISTORICAL  # noqa: E402

N_VALUES = 29 + 3 * 4  # kind 0 with 4 bands, as the firmware sends
FW_VERSION = "0.1.0"


def measurement_values(rng: random.Random, i: int) -> list[float]:
    """Plausible window features: ~0.3 g at a line frequency, ~30 degC, zone A/B."""
    v = [0.0] * N_VALUES
    v[0] = 30.0 + rng.uniform(-0.5, 0.5)
    for a in range(3):
        rms = 0.2 + 0.1 * a + rng.uniform(0, 0.02)
        v[1 + a] = rms
        v[4 + a] = rms * 9.80665 / (2 * math.pi * 50 * math.sqrt(2)) * 1000 * math.sqrt(2)
        v[7 + a] = rms * math.sqrt(2)
        v[10 + a] = 2 * rms * math.sqrt(2)
        v[13 + a] = math.sqrt(2)
        v[16 + a] = 1.5
        v[19 + a] = 0.01
        v[22 + a] = 49.5 + (i % 7)
        v[25 + a] = rms * math.sqrt(2)
    v[28] = 2.0
    for k in range(29, N_VALUES):
        v[k] = 0.05
    return v


@dataclass
class SimNode:
    node_id: str
    next_seq: int = 1
    acked: int = 0
    boot: int = 1
    pending: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, record) not yet acked
    inflight: tuple[int, int] | None = None  # (first, last) seq
    payload: bytes = b""
    sent_at: float = 0.0
    first_sent_at: float = 0.0


class LoadGen:
    def __init__(self, nodes: int = 1000, connections: int = 20, host: str = "127.0.0.1", port: int = 1883,
                 prefix: str = "vibekit", interval_s: float = 10.0, records_per_window: int = 1,
                 max_batch_records: int = 64, ack_timeout_s: float = 5.0, id_prefix: str = "lg", seed: int = 1) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.interval_s = interval_s
        self.records_per_window = records_per_window
        self.max_batch_records = max_batch_records
        self.ack_timeout_s = ack_timeout_s
        self.rng = random.Random(seed)
        self.nodes = [SimNode(f"{id_prefix}{i:05d}") for i in range(nodes)]
        self.by_id = {n.node_id: n for n in self.nodes}
        self.groups = [self.nodes[i::connections] for i in range(max(1, min(connections, nodes)))]
        self.clients: list[mqtt.Client] = []
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.records_sent = self.records_acked = self.batches = self.resends = self.acks = self.bad_acks = 0
        self._connected = threading.Semaphore(0)

    # -- connections ------------------------------------------------------------------------

    def connect(self, timeout: float = 30.0) -> None:
        for gi, group in enumerate(self.groups):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loadgen-{gi}-{time.time_ns() % 10**9}",
                            clean_session=True)
            c.user_data_set(group)
            # one connection carries many nodes: the will can only speak for the connection
            c.will_set(f"{self.prefix}/loadgen-{gi}/state", '{"state":"offline"}', qos=1, retain=True)
            c.on_connect = self._on_connect
            c.on_message = self._on_message
            c.max_inflight_messages_set(1000)
            c.max_queued_messages_set(0)
            c.connect_async(self.host, self.port, keepalive=30)
            c.loop_start()
            self.clients.append(c)
        deadline = time.monotonic() + timeout
        for _ in self.clients:
            if not self._connected.acquire(timeout=max(0.1, deadline - time.monotonic())):
                raise ConnectionError(f"loadgen: not all connections up to {self.host}:{self.port} in {timeout} s")

    def _on_connect(self, client, group, flags, rc, props=None) -> None:
        if rc != 0:
            return
        client.subscribe([(f"{self.prefix}/{n.node_id}/ack", 1) for n in group])
        for n in group:
            client.publish(f"{self.prefix}/{n.node_id}/state",
                           json.dumps({"state": "online", "boot": n.boot, "fw": FW_VERSION, "board": "loadgen"}),
                           qos=1, retain=True)
        self._connected.release()

    def _on_message(self, client, group, msg) -> None:
        node_id = msg.topic[len(self.prefix) + 1:].rsplit("/", 1)[0]
        n = self.by_id.get(node_id)
        try:
            ack = decode_ack(msg.payload)
        except CodecError:
            with self.lock:
                self.bad_acks += 1
            return
        if n is None:
            return
        now = time.monotonic()
        with self.lock:
            self.acks += 1
            if ack.acked_seq > n.acked:
                freed = [s for s, _ in n.pending if s <= ack.acked_seq]
                n.pending = [(s, r) for s, r in n.pending if s > ack.acked_seq]
                n.acked = ack.acked_seq
                self.records_acked += len(freed)
            if n.inflight and ack.acked_seq >= n.inflight[1]:
                self.latencies_ms.append((now - n.first_sent_at) * 1000)
                n.inflight = None

    # -- the node loop ----------------------------------------------------------------------

    def _window(self, n: SimNode, i: int) -> None:
        now = time.time()
        for _ in range(self.records_per_window):
            rec = encode_record(n.next_seq, n.boot, 0, FLAG_CLOCK_SYNCED, int(now), int(now * 1000) % 1000,
                                measurement_values(self.rng, i))
            n.pending.append((n.next_seq, rec))
            n.next_seq += 1

    def _service(self, n: SimNode, client: mqtt.Client, live_from: int) -> None:
        now = time.monotonic()
        if n.inflight is not None:
            if now - n.sent_at < self.ack_timeout_s:
                return
            self.resends += 1  # resend the same records
        elif not n.pending:
            return
        else:
            recs = n.pending[: self.max_batch_records]
            body = [r if s >= live_from else r[:7] + bytes([r[7] | FLAG_HISTORICAL]) + r[8:] for s, r in recs]
            n.payload = encode_batch(n.node_id, body)
            n.inflight = (recs[0][0], recs[-1][0])
            n.first_sent_at = now
            self.records_sent += len(recs)
        n.sent_at = now
        self.batches += 1
        client.publish(f"{self.prefix}/{n.node_id}/data", n.payload, qos=1)

    def run(self, duration_s: float) -> dict:
        if not self.clients:
            self.connect()
        index = {n.node_id: i for i, n in enumerate(self.nodes)}
        client_of = {n.node_id: self.clients[gi] for gi, g in enumerate(self.groups) for n in g}
        # windows are spread evenly over the interval, like nodes started at random times
        phase = {n.node_id: self.rng.uniform(0, self.interval_s) for n in self.nodes}
        next_window = {n.node_id: time.monotonic() + phase[n.node_id] for n in self.nodes}
        t0 = time.monotonic()
        end = t0 + duration_s
        windows = 0
        while time.monotonic() < end:
            now = time.monotonic()
            with self.lock:
                for n in self.nodes:
                    live_from = n.next_seq
                    if now >= next_window[n.node_id]:
                        next_window[n.node_id] += self.interval_s
                        self._window(n, index[n.node_id])
                        windows += 1
                    self._service(n, client_of[n.node_id], live_from)
            time.sleep(0.01)
        # drain: wait for the last acks
        drain_end = time.monotonic() + max(2 * self.ack_timeout_s, 5)
        while time.monotonic() < drain_end:
            with self.lock:
                busy = [n for n in self.nodes if n.inflight or n.pending]
                for n in busy:
                    self._service(n, client_of[n.node_id], n.next_seq)
            if not busy:
                break
            time.sleep(0.05)
        el = time.monotonic() - t0
        with self.lock:
            lat = sorted(self.latencies_ms)

        def pct(p):
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

        return {
            "nodes": len(self.nodes), "connections": len(self.clients), "duration_s": round(el, 1),
            "windows": windows, "records_sent": self.records_sent, "records_acked": self.records_acked,
            "records_per_s": round(self.records_acked / el, 1) if el else 0, "batches": self.batches,
            "resends": self.resends, "acks": self.acks, "bad_acks": self.bad_acks,
            "ack_latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": lat[-1] if lat else None},
            "unacked_nodes": sum(1 for n in self.nodes if n.pending),
        }

    def close(self) -> None:
        for gi, c in enumerate(self.clients):
            for n in self.groups[gi]:
                c.publish(f"{self.prefix}/{n.node_id}/state", '{"state":"offline"}', qos=1, retain=True)
            c.disconnect()
            c.loop_stop()
        self.clients = []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Protocol v1 load generator: many nodes over MQTT, with acks.")
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=20, help="MQTT connections the nodes are spread over")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--prefix", default="vibekit")
    ap.add_argument("--id-prefix", default="lg", help="node ids are <id-prefix><5 digits>")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between windows per node")
    ap.add_argument("--records", type=int, default=1, help="records per window (>1 simulates backlog)")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--ack-timeout", type=float, default=5.0)
    args = ap.parse_args(argv)
    lg = LoadGen(args.nodes, args.connections, args.host, args.port, args.prefix, args.interval, args.records,
                 ack_timeout_s=args.ack_timeout, id_prefix=args.id_prefix)
    try:
        lg.connect()
        print(json.dumps(lg.run(args.duration)))
    finally:
        lg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
