#!/usr/bin/env python3
"""OPC UA output benchmarks; writes bench/results/opcua.json.

(b) tag updates/s with one client subscribed to every value tag of N nodes (default 1,000 nodes
    x 41 values): rounds of one record per node are applied to the TagStore, and the time runs
    until the client has received every notification.
(c) latency from TagStore.apply to the data-change notification at the client, 1,000 records/s.

The client runs in the same process (its own event loop thread), so the figures include its
decoding cost on the same 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncua import Client, ua  # noqa: E402

from host_bridge.config import BridgeConfig, NodeConfig, OpcUaConfig  # noqa: E402
from host_bridge.model import FLAG_CLOCK_SYNCED, Record  # noqa: E402
from host_bridge.outputs.opcua import OpcUaOutput  # noqa: E402
from host_bridge.outputs.register_map import value_specs  # noqa: E402
from host_bridge.tags import TagStore  # noqa: E402

NAMES = [s.name for s in value_specs()]


class Loop:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.t = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.t.start()

    def run(self, coro, timeout=600):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.t.join(5)


class Counter:
    def __init__(self):
        self.n = 0
        self.seen: dict = {}

    def datachange_notification(self, node, val, data):
        self.n += 1
        if self.seen is not None:
            self.seen.setdefault(val, time.perf_counter())


def setup(nodes: int, tmp: str):
    ids = [f"n{i}" for i in range(nodes)]
    cfg = BridgeConfig(
        data_dir=Path(tmp),
        nodes=[NodeConfig(n, (i % 247) + 1, site="s", area=f"a{i // 100}", asset=f"m{i}") for i, n in enumerate(ids)],
        opcua=OpcUaConfig(endpoint="opc.tcp://127.0.0.1:0", allow_anonymous=True, allow_none_security=True),
    )
    # unit ids repeat past 247: fine for OPC UA (not validated here)
    tags = TagStore(ids)
    return ids, cfg, tags


def bench_updates(nodes: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ids, cfg, tags = setup(nodes, tmp)
        srv_loop, cli_loop = Loop(), Loop()
        out = OpcUaOutput(cfg, tags)
        t0 = time.perf_counter()
        srv_loop.run(out.start())
        t_start = time.perf_counter() - t0
        client = Client(out.endpoint, timeout=120)
        handler = Counter()
        handler.seen = None

        async def subscribe():
            await client.connect()
            idx = await client.get_namespace_index(cfg.opcua.namespace)
            sub = await client.create_subscription(50, handler)
            nodes_ = [client.get_node(ua.NodeId(f"{n}.{v}", idx)) for n in ids for v in NAMES]
            for i in range(0, len(nodes_), 5000):
                await sub.subscribe_data_change(nodes_[i:i + 5000], queuesize=10)
            return sub

        t0 = time.perf_counter()
        cli_loop.run(subscribe())
        t_sub = time.perf_counter() - t0
        time.sleep(1.0)
        base = handler.n
        tags_total = len(ids) * len(NAMES)
        expected = rounds * tags_total
        t0 = time.perf_counter()
        for r in range(1, rounds + 1):
            tags.apply([Record(n, r, 1, 0, FLAG_CLOCK_SYNCED, int(time.time()) + r, 0,
                               tuple(float(r * 1000 + i) for i in range(41))) for n in ids])
            time.sleep(0.05)
        deadline = time.perf_counter() + 120
        while handler.n - base < expected and time.perf_counter() < deadline:
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        got = handler.n - base
        cli_loop.run(client.disconnect())
        srv_loop.run(out.stop())
        srv_loop.close()
        cli_loop.close()
        return {
            "nodes": nodes,
            "tags": tags_total,
            "rounds": rounds,
            "server_start_s": round(t_start, 2),
            "subscribe_s": round(t_sub, 2),
            "notifications_expected": expected,
            "notifications_received": got,
            "all_delivered": got >= expected,
            "tag_updates_per_s": round(got / dt),
            "seconds": round(dt, 2),
        }


def bench_latency(nodes: int, secs: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ids, cfg, tags = setup(nodes, tmp)
        srv_loop, cli_loop = Loop(), Loop()
        out = OpcUaOutput(cfg, tags)
        srv_loop.run(out.start())
        client = Client(out.endpoint, timeout=60)
        handler = Counter()

        async def subscribe():
            await client.connect()
            idx = await client.get_namespace_index(cfg.opcua.namespace)
            sub = await client.create_subscription(10, handler)
            await sub.subscribe_data_change([client.get_node(ua.NodeId(f"{n}.temperature", idx)) for n in ids])

        cli_loop.run(subscribe())
        time.sleep(0.5)
        applied = {}
        per_batch = 10  # 1,000 records/s in batches every 10 ms
        k = 0
        nxt = time.perf_counter()
        end = nxt + secs
        while time.perf_counter() < end:
            batch = []
            for _ in range(per_batch):
                k += 1
                batch.append(Record(ids[k % nodes], k, 1, 0, FLAG_CLOCK_SYNCED, int(time.time()), 0, (float(k),)))
            t = time.perf_counter()
            tags.apply(batch)
            for r in batch:
                applied[float(r.seq)] = t
            nxt += 0.01
            d = nxt - time.perf_counter()
            if d > 0:
                time.sleep(d)
        time.sleep(0.5)
        lat = sorted((handler.seen[v] - t) * 1000 for v, t in applied.items() if v in handler.seen)
        cli_loop.run(client.disconnect())
        srv_loop.run(out.stop())
        srv_loop.close()
        cli_loop.close()
        return {
            "records_per_s": 1000,
            "nodes": nodes,
            "publishing_interval_ms": 10,
            "samples": len(lat),
            "applied": len(applied),
            "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2),
            "max_ms": round(lat[-1], 2),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--latency-nodes", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    res = {
        "latency": bench_latency(a.latency_nodes, a.seconds),
        "updates": bench_updates(a.nodes, a.rounds),
        "python": sys.version.split()[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "opcua.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
