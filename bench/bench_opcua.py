#!/usr/bin/env python3
"""OPC UA output benchmarks; writes bench/results/opcua.json.

The subscribing client always runs in its own PROCESS (this file with `--client`), so server
and client do not share one GIL; time stamps are time.perf_counter (CLOCK_MONOTONIC, the same
clock in both processes). The client is a lean asyncua client: one Subscription whose
publish_callback counts notifications directly (the stock handler path starts one asyncio task
per notification, which would measure the client, not the server).

startup  seconds from OpcUaOutput() to a listening server, per node count.
(b) updates  tag updates/s with one client subscribed to every value tag of N nodes (default
    1,000 nodes x 41 values). Each round applies one record per node to the TagStore; the next
    round starts as soon as the server has written the previous one (no coalescing: every
    record becomes one notification per tag), and the clock stops when the client has received
    every notification (rounds x tags, checked exactly). Monitored-item queues are deep enough
    for every round in flight, so nothing may be dropped. The same rounds are then written by a
    bare asyncua server holding the same number of Float variables, with prebuilt DataValues
    through server.write_attribute_value, to the same client: `ratio` = bridge / bare.
(c) latency  TagStore.apply (the moment the ingest pipeline hands a record over) to the
    data-change notification decoded by the client, at 1,000 records/s spread over N nodes
    (default 1,000: one record per node per second); the client subscribed to the temperature
    of every node (`latency`) and to every value tag of every node (`latency_all_tags`,
    41,000 notifications/s: the throughput limit of (b), so it measures queueing).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncua import Client, Server, ua  # noqa: E402
from asyncua.common.subscription import Subscription  # noqa: E402

from host_bridge.config import BridgeConfig, NodeConfig, OpcUaConfig  # noqa: E402
from host_bridge.model import FLAG_CLOCK_SYNCED, Record  # noqa: E402
from host_bridge.outputs.opcua import OpcUaOutput  # noqa: E402
from host_bridge.outputs.register_map import value_specs  # noqa: E402
from host_bridge.tags import TagStore  # noqa: E402

NAMES = [s.name for s in value_specs()]
NS = "urn:vibekit:bridge"
TEMP = NAMES.index("temperature")


# -- client process ---------------------------------------------------------------------------

class _CountingSubscription(Subscription):
    """Counts notifications in publish_callback itself (no task per notification)."""

    def __init__(self, *a, watch=None, **kw):
        super().__init__(*a, **kw)
        self.count = 0
        self.first = self.last = None
        self.watch = watch or set()  # client handles whose values are recorded with arrival time
        self.seen: dict[float, float] = {}
        self.done = asyncio.Event()
        self.expected = None

    async def publish_callback(self, publish_result):
        t = time.perf_counter()
        self.last_publish_at = time.monotonic()
        data = publish_result.NotificationMessage.NotificationData
        if not data:
            return
        for notif in data:
            if not isinstance(notif, ua.DataChangeNotification):
                continue
            items = notif.MonitoredItems
            if self.first is None:
                self.first = t
            self.count += len(items)
            if self.watch:
                for it in items:
                    if it.ClientHandle in self.watch and it.Value.Value is not None:
                        self.seen.setdefault(it.Value.Value.Value, t)
        self.last = t
        if self.expected is not None and self.count >= self.expected:
            self.done.set()


async def client_main(cfg: dict) -> dict:
    # asyncua 2.1's client probes the server every watchdog_intervall and gives the connection up
    # when one probe takes longer than that (1 s by default): too strict while 41,000 monitored
    # items are created
    client = Client(cfg["endpoint"], timeout=120, watchdog_intervall=30)
    await client.connect()
    idx = await client.get_namespace_index(NS)
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=cfg["interval_ms"], RequestedLifetimeCount=10000,
        RequestedMaxKeepAliveCount=client.get_keepalive_count(cfg["interval_ms"]),
        MaxNotificationsPerPublish=0, PublishingEnabled=True, Priority=0,
    )
    sub = _CountingSubscription(client.uaclient.session, params, handler=object())
    await sub.init()
    names = NAMES if cfg["tags"] == "all" else ["temperature"]
    nodes = [client.get_node(ua.NodeId(f"{n}.{v}", idx)) for n in cfg["nodes"] for v in names]
    handles = []
    t0 = time.perf_counter()
    for i in range(0, len(nodes), 2000):
        handles += await sub.subscribe_data_change(nodes[i:i + 2000], queuesize=cfg["queue"])
    t_sub = time.perf_counter() - t0
    # client handles are assigned in request order starting after 200; temperature ones are watched
    first = sub._client_handle - len(nodes) + 1
    if cfg.get("watch_temperature"):
        k = names.index("temperature")
        sub.watch = {first + i for i in range(k, len(nodes), len(names))}
    await asyncio.sleep(cfg.get("settle_s", 1.0))  # initial values arrive
    if os.environ.get("BENCH_UA_FREEZE", "1") == "1":
        gc.freeze()  # the client's 41,000 monitored items: out of the collector's full passes
    base = sub.count
    sub.seen.clear()
    print(json.dumps({"ready": True, "subscribed": len(handles), "subscribe_s": round(t_sub, 2)}), flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)  # parent: "go <expected>" or "stop"
    parts = line.split()
    if parts and parts[0] == "go":
        sub.expected = base + int(parts[1])
        sub.first = None
        try:
            await asyncio.wait_for(sub.done.wait(), cfg.get("timeout_s", 300))
        except TimeoutError:
            pass
    else:
        await loop.run_in_executor(None, sys.stdin.readline)
    res = {"received": sub.count - base, "first": sub.first, "last": sub.last, "cpu_s": time.process_time(),
           "seen": list(sub.seen.items()) if sub.watch else []}
    try:
        await asyncio.wait_for(client.disconnect(), 5)
    except Exception:
        pass
    return res


class ClientProc:
    def __init__(self, cfg: dict):
        self.p = subprocess.Popen([sys.executable, __file__, "--client", json.dumps(cfg)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = json.loads(self.p.stdout.readline())

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def result(self, timeout: float = 600) -> dict:
        out, _ = self.p.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])


# -- server side ------------------------------------------------------------------------------

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


def setup(nodes: int, tmp: str):
    ids = [f"n{i}" for i in range(nodes)]
    cfg = BridgeConfig(
        data_dir=Path(tmp),
        nodes=[NodeConfig(n, (i % 247) + 1, site="s", area=f"a{i // 100}", asset=f"m{i}") for i, n in enumerate(ids)],
        opcua=OpcUaConfig(endpoint="opc.tcp://127.0.0.1:0", namespace=NS, allow_anonymous=True,
                          allow_none_security=True),
    )
    # unit ids repeat past 247: fine for OPC UA (not validated here)
    return ids, cfg, TagStore(ids)


def record(node: str, seq: int, base: float) -> Record:
    t = time.time_ns() // 1_000_000
    return Record(node, seq, 0, 0, FLAG_CLOCK_SYNCED, t // 1000, t % 1000, tuple(base + i for i in range(len(NAMES))))


class BareServer:
    """A plain asyncua server with the same Float variables, written with prebuilt DataValues."""

    def __init__(self, ids: list[str]):
        self.ids = ids

    async def start(self):
        from host_bridge.outputs.opcua import free_port
        self.server = s = Server()
        await s.init()
        self.endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
        s.set_endpoint(self.endpoint)
        s.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await s.register_namespace(NS)
        items = []
        objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
        self.nodeids = []
        for n in self.ids:
            it = ua.AddNodesItem(RequestedNewNodeId=ua.NodeId(n, idx), BrowseName=ua.QualifiedName(n, idx),
                                 NodeClass=ua.NodeClass.Object, ParentNodeId=objects,
                                 ReferenceTypeId=ua.NodeId(ua.ObjectIds.Organizes),
                                 TypeDefinition=ua.NodeId(ua.ObjectIds.BaseObjectType))
            it.NodeAttributes = ua.ObjectAttributes(DisplayName=ua.LocalizedText(n))
            items.append(it)
            for v in NAMES:
                vid = ua.NodeId(f"{n}.{v}", idx)
                it = ua.AddNodesItem(RequestedNewNodeId=vid, BrowseName=ua.QualifiedName(v, idx),
                                     NodeClass=ua.NodeClass.Variable, ParentNodeId=ua.NodeId(n, idx),
                                     ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
                                     TypeDefinition=ua.NodeId(ua.ObjectIds.BaseDataVariableType))
                it.NodeAttributes = ua.VariableAttributes(
                    DisplayName=ua.LocalizedText(v), DataType=ua.NodeId(ua.ObjectIds.Float),
                    Value=ua.Variant(0.0, ua.VariantType.Float), ValueRank=ua.ValueRank.Scalar,
                    AccessLevel=ua.AccessLevel.CurrentRead.mask, UserAccessLevel=ua.AccessLevel.CurrentRead.mask)
                items.append(it)
                self.nodeids.append(vid)
        await s.iserver.isession.add_nodes(items)
        await s.start()

    async def write_round(self, base: float):
        write = self.server.iserver.aspace.write_attribute_value
        attr = ua.AttributeIds.Value
        now = dt.datetime.now(dt.UTC)
        k = len(NAMES)
        for j, nid in enumerate(self.nodeids):
            dv = ua.DataValue(ua.Variant(base + j % k, ua.VariantType.Float), SourceTimestamp=now, ServerTimestamp=now)
            await write(nid, attr, dv)

    async def stop(self):
        await self.server.stop()


def bench_startup(counts: list[int]) -> list[dict]:
    out = []
    for nodes in counts:
        with tempfile.TemporaryDirectory() as tmp:
            ids, cfg, tags = setup(nodes, tmp)
            lp = Loop()
            o = OpcUaOutput(cfg, tags)
            t0 = time.perf_counter()
            lp.run(o.start())
            secs = time.perf_counter() - t0
            n_nodes = len(o.server.iserver.aspace.keys()) if hasattr(o.server.iserver.aspace, "keys") else None
            lp.run(o.stop())
            lp.close()
            out.append({"nodes": nodes, "address_space_nodes": n_nodes, "start_s": round(secs, 2)})
    return out


def _updates_run(ids, srv, apply_round, wait_written, rounds: int, interval_ms: float) -> dict:
    tags_total = len(ids) * len(NAMES)
    c = ClientProc({"endpoint": srv.endpoint, "nodes": ids, "tags": "all", "interval_ms": interval_ms,
                    "queue": rounds + 1, "settle_s": 2.0})
    expected = rounds * tags_total
    c.send(f"go {expected}")
    time.sleep(0.2)
    t0 = time.perf_counter()
    for r in range(1, rounds + 1):
        apply_round(r)
        wait_written(r)
    t_written = time.perf_counter() - t0
    res = c.result()
    got = res["received"]
    secs = (res["last"] - t0) if res["last"] else float("nan")
    return {
        "subscribe_s": c.ready["subscribe_s"],
        "notifications_expected": expected,
        "notifications_received": got,
        "all_delivered": got == expected,
        "server_write_s": round(t_written, 2),
        "seconds": round(secs, 2),
        "tag_updates_per_s": round(got / secs),
    }


def bench_updates(nodes: int, rounds: int, interval_ms: float = 50, bare: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ids, cfg, tags = setup(nodes, tmp)
        lp = Loop()
        out = OpcUaOutput(cfg, tags)
        t0 = time.perf_counter()
        lp.run(out.start())
        t_start = time.perf_counter() - t0

        def apply_round(r):
            tags.apply([record(n, r, r * 1000.0) for n in ids])

        def wait_written(r):
            want = nodes * (r + 1)  # + the initial pass at start
            deadline = time.perf_counter() + 120
            while out.stats["node_updates"] < want:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"round {r}: {out.stats['node_updates']} of {want} node updates written")
                time.sleep(0.002)

        res = {"nodes": nodes, "tags": nodes * len(NAMES), "rounds": rounds, "publishing_interval_ms": interval_ms,
               "server_start_s": round(t_start, 2)}
        res.update(_updates_run(ids, out, apply_round, wait_written, rounds, interval_ms))
        res["value_writes"] = out.stats["value_writes"]
        lp.run(out.stop())
        if bare:
            b = BareServer(ids)
            t0 = time.perf_counter()
            lp.run(b.start())
            t_bare = time.perf_counter() - t0
            rb = _updates_run(ids, b, lambda r: lp.run(b.write_round(r * 1000.0)), lambda r: None, rounds,
                              interval_ms)
            rb["server_start_s"] = round(t_bare, 2)
            lp.run(b.stop())
            res["bare"] = rb
            res["ratio"] = round(res["tag_updates_per_s"] / rb["tag_updates_per_s"], 3)
        lp.close()
        return res


def bench_latency(nodes: int, secs: float, rate: int = 1000, interval_ms: float = 10, tags_mode: str = "all") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ids, cfg, tags = setup(nodes, tmp)
        lp = Loop()
        out = OpcUaOutput(cfg, tags)
        lp.run(out.start())
        c = ClientProc({"endpoint": out.endpoint, "nodes": ids, "tags": tags_mode, "interval_ms": interval_ms,
                        "queue": 10, "watch_temperature": True, "settle_s": 2.0})
        c.send("run")
        cpu0 = time.process_time()
        applied: dict[float, float] = {}
        per_batch = max(1, rate // 100)  # batches every 10 ms
        k = 0
        nxt = time.perf_counter()
        end = nxt + secs
        while time.perf_counter() < end:
            batch = []
            for _ in range(per_batch):
                k += 1
                batch.append(record(ids[k % nodes], k, float(k)))  # temperature = k (exact in Float)
            t = time.perf_counter()
            tags.apply(batch)
            for r in batch:
                applied[float(r.seq)] = t
            nxt += 0.01
            d = nxt - time.perf_counter()
            if d > 0:
                time.sleep(d)
        cpu = time.process_time() - cpu0
        time.sleep(1.0)
        c.send("stop")
        res = c.result()
        seen = dict(res["seen"])
        lat = sorted((seen[v] - t) * 1000 for v, t in applied.items() if v in seen)
        lp.run(out.stop())
        lp.close()
        return {
            "records_per_s": rate,
            "nodes": nodes,
            "subscribed_tags": nodes * (len(NAMES) if tags_mode == "all" else 1),
            "publishing_interval_ms": interval_ms,
            "applied": len(applied),
            "samples": len(lat),
            "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2),
            "max_ms": round(lat[-1], 2),
            "bridge_process_cpu_share": round(cpu / secs, 2),  # 1.0 = one core busy (includes the feeder)
            "client_process_cpu_s": round(res["cpu_s"], 1),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval-ms", type=float, default=50)
    ap.add_argument("--latency-nodes", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--latency-tags", choices=["temperature", "all"], default="temperature")
    ap.add_argument("--startup", default="100,1000")
    ap.add_argument("--only", choices=["startup", "updates", "latency"])
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncua").setLevel(os.environ.get("BENCH_UA_LOG", "CRITICAL"))
    if a.client:
        res = asyncio.run(client_main(json.loads(a.client)))
        print(json.dumps(res), flush=True)
        return
    res = {}
    if a.only in (None, "startup"):
        res["startup"] = bench_startup([int(x) for x in a.startup.split(",") if x])
    if a.only in (None, "latency"):
        res["latency"] = bench_latency(a.latency_nodes, a.seconds, tags_mode=a.latency_tags)
        if a.only is None:  # the same load with every value tag subscribed: 41,000 notifications/s
            res["latency_all_tags"] = bench_latency(a.latency_nodes, a.seconds, tags_mode="all")
    if a.only in (None, "updates"):
        res["updates"] = bench_updates(a.nodes, a.rounds, a.interval_ms)
    res["python"] = sys.version.split()[0]
    res["cpus"] = os.cpu_count()
    res["when"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if a.only is None:
        (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
        (ROOT / "bench" / "results" / "opcua.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
