#!/usr/bin/env python3
"""Modbus output benchmarks; writes bench/results/modbus.json.

(a) read requests/s served (50-register reads from a client in another process) by a bare
    pymodbus SimDevice server, then by the bridge's ModbusOutput while a feeder thread applies
    10,000 records/s to the TagStore; goal: bridge >= 0.8 x bare.
(c) latency from TagStore.apply to the value visible to a Modbus client, at 1,000 records/s over
    100 nodes; a client in another process polls 10 of them round-robin, every change it sees
    is a sample (>= 1,000 samples in 12 s; resolution one poll cycle, reported).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymodbus.server import ModbusTcpServer  # noqa: E402
from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: E402

from host_bridge.config import BridgeConfig, ModbusConfig, NodeConfig  # noqa: E402
from host_bridge.model import FLAG_CLOCK_SYNCED, Record  # noqa: E402
from host_bridge.outputs.modbus import ModbusOutput  # noqa: E402
from host_bridge.tags import TagStore  # noqa: E402

CLIENT = """
import sys, time
from pymodbus.client import ModbusTcpClient
port, secs, units = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
c = ModbusTcpClient("127.0.0.1", port=port); c.connect()
n = 0; errs = 0; end = time.monotonic() + secs; u = 1
while time.monotonic() < end:
    r = c.read_input_registers(100, count=50, device_id=u)
    errs += r.isError(); n += 1; u = u % units + 1
print(n, errs)
"""


def run_clients(port: int, secs: float, units: int, clients: int) -> tuple[float, int]:
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(secs), str(units)],
                              stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    total = errs = 0
    for p in procs:
        n, e = p.communicate()[0].split()
        total += int(n)
        errs += int(e)
    return total / secs, errs


class Loop:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.t = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.t.start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.t.join(5)


def values(k: float) -> tuple[float, ...]:
    return tuple(k + i for i in range(41))


def feeder(tags, node_ids, rate, stop, t_apply=None):
    """Apply `rate` records/s in batches every 10 ms, round-robin over the nodes."""
    seq = {n: 0 for n in node_ids}
    per_batch = max(1, rate // 100)
    i = 0
    nxt = time.perf_counter()
    applied = 0
    while not stop.is_set():
        batch = []
        for _ in range(per_batch):
            n = node_ids[i % len(node_ids)]
            i += 1
            seq[n] += 1
            batch.append(Record(n, seq[n], 1, 0, FLAG_CLOCK_SYNCED, int(time.time()), 0, values(float(seq[n]))))
        t0 = time.perf_counter()
        tags.apply(batch)
        if t_apply is not None:
            for r in batch:
                t_apply[(r.node_id, r.seq)] = t0
        applied += len(batch)
        nxt += 0.01
        d = nxt - time.perf_counter()
        if d > 0:
            time.sleep(d)
    return applied


def bench_throughput(secs: float, nodes: int, clients: int) -> dict:
    ids = [f"n{i}" for i in range(1, nodes + 1)]
    cfg = BridgeConfig(nodes=[NodeConfig(n, i + 1) for i, n in enumerate(ids)], modbus=ModbusConfig(port=0))
    lp = Loop()
    # bare pymodbus server with the same shape: one device per unit, 300 registers each
    async def bare():
        devs = [SimDevice(id=i + 1, simdata=[SimData(address=0, values=[0] * 300, datatype=DataType.REGISTERS)])
                for i in range(nodes)]
        srv = ModbusTcpServer(devs, address=("127.0.0.1", 0))
        await srv.serve_forever(background=True)
        return srv
    srv = lp.run(bare())
    port = srv.transport.sockets[0].getsockname()[1]
    bare_rps, bare_err = run_clients(port, secs, nodes, clients)
    lp.run(srv.shutdown())

    tags = TagStore(ids)
    out = ModbusOutput(cfg, tags)
    lp.run(out.start())
    stop = threading.Event()
    result = {}
    th = threading.Thread(target=lambda: result.setdefault("applied", feeder(tags, ids, 10_000, stop)))
    th.start()
    t0 = time.perf_counter()
    bridge_rps, bridge_err = run_clients(out.port, secs, nodes, clients)
    stop.set()
    th.join()
    dt = time.perf_counter() - t0
    stats = dict(out.stats)
    lp.run(out.stop())
    lp.close()
    return {
        "nodes": nodes,
        "clients": clients,
        "seconds": secs,
        "bare_requests_per_s": round(bare_rps),
        "bridge_requests_per_s": round(bridge_rps),
        "ratio": round(bridge_rps / bare_rps, 3),
        "records_applied_per_s": round(result["applied"] / dt),
        "node_updates_per_s": round(stats["node_updates"] / dt),
        "errors": bare_err + bridge_err,
    }


LATENCY_CLIENT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pymodbus.client import ModbusTcpClient
from host_bridge.outputs.register_map import FLOAT_OFFSET, decode_float
port, secs, units = int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
c = ModbusTcpClient("127.0.0.1", port=port); c.connect()
last = {u: None for u in units}
seen = []; polls = 0
print("ready", flush=True)
sys.stdin.readline()
end = time.perf_counter() + secs
while time.perf_counter() < end:
    for u in units:
        r = c.read_input_registers(FLOAT_OFFSET, count=2, device_id=u)
        t = time.perf_counter()
        polls += 1
        v = int(decode_float(r.registers))  # temperature = the record's sequence number
        if v != last[u]:
            if last[u] is not None:
                seen.append((u, v, t))
            last[u] = v
c.close()
print(json.dumps({"seen": seen, "polls": polls}))
"""


def bench_latency(secs: float, nodes: int, watched: int = 10) -> dict:
    """Apply -> visible to a Modbus client polling `watched` nodes round-robin from another process.

    Every node gets a record each nodes/1000 s; each change of a watched node's temperature
    register (the record's sequence number) is one sample, so the resolution is one poll cycle
    over the watched nodes (reported as poll_cycle_ms)."""
    ids = [f"n{i}" for i in range(1, nodes + 1)]
    cfg = BridgeConfig(nodes=[NodeConfig(n, i + 1) for i, n in enumerate(ids)], modbus=ModbusConfig(port=0))
    lp = Loop()
    tags = TagStore(ids)
    out = ModbusOutput(cfg, tags)
    lp.run(out.start())
    step = max(1, nodes // watched)
    units = [i + 1 for i in range(0, nodes, step)][:watched]  # unit id = index + 1 (see cfg)
    unit_node = {i + 1: n for i, n in enumerate(ids)}
    p = subprocess.Popen([sys.executable, "-c", LATENCY_CLIENT, str(ROOT), str(out.port), str(secs), json.dumps(units)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    t_apply: dict = {}
    stop = threading.Event()
    th = threading.Thread(target=feeder, args=(tags, ids, 1000, stop, t_apply))
    th.start()
    time.sleep(0.3)
    p.stdin.write("go\n")
    p.stdin.flush()
    res = json.loads(p.communicate(timeout=secs + 60)[0].strip().splitlines()[-1])
    stop.set()
    th.join()
    lp.run(out.stop())
    lp.close()
    lat = sorted((t - t_apply[(unit_node[u], v)]) * 1000 for u, v, t in res["seen"] if (unit_node[u], v) in t_apply)
    return {
        "records_per_s": 1000,
        "nodes": nodes,
        "watched_nodes": len(units),
        "poll_cycle_ms": round(secs * 1000 / (res["polls"] / len(units)), 2),
        "samples": len(lat),
        "p50_ms": round(statistics.median(lat), 2),
        "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2),
        "max_ms": round(lat[-1], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--latency-seconds", type=float, default=12)
    ap.add_argument("--watched", type=int, default=10)
    a = ap.parse_args()
    res = {
        "throughput": bench_throughput(a.seconds, a.nodes, a.clients),
        "latency": bench_latency(a.latency_seconds, a.nodes, a.watched),
        "python": sys.version.split()[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "modbus.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
