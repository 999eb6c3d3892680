"""Soak: the bridge daemon for >= 10 minutes under 50 nodes with connection churn.

What runs (all on loopback, one machine):
  - mosquitto (tests/brokers.py), anonymous: the loadgen nodes share connections, so per-node
    ACLs do not apply to them (docs/security.md covers the authenticated setup);
  - `host-bridge run` as its own process (so its RSS is its own): MQTT in, historian, Modbus
    TCP, OPC UA and the web API on free ports, accept_unknown_nodes for the loadgen ids;
  - tools/loadgen.py: most of the nodes, protocol v1 with acks, over a few MQTT connections;
  - a few real virtual nodes (the firmware on the MicroPython VM);
  - churn: every --churn-s seconds one loadgen connection has its socket cut (paho reconnects,
    resends the unacked batch) and one VM node is stopped and started again (SIGINT: offline
    state, journal closed; the next boot resends whatever was not acked); a Modbus and an
    OPC UA-less web client poll all along.
Recorded: the bridge's RSS (/proc/<pid>/status VmRSS) every --sample-s seconds; records sent,
acked and stored per node; seq gaps in the historian; the bridge's counters at the end.
Lost = a record a node created (loadgen: sent; VM node: below its last journal seq) that is
not in the historian once every node has drained. Goal: 0 lost, RSS flat after warm-up.

Run: .venv/bin/python bench/bench_soak.py [--duration 600] [--lg-nodes 46] [--vm-nodes 4]
Writes bench/results/soak.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.brokers import make_broker  # noqa: E402
from tests.netutil import free_port, wait_port  # noqa: E402
from tools.loadgen import LoadGen  # noqa: E402
from tools.virtual_node import VirtualNode  # noqa: E402


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fetch_status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as r:
        return json.loads(r.read())


def modbus_poll(port: int, stop: threading.Event, stats: dict) -> None:
    """A SCADA-like reader: unit 1's status block and 50 float registers once a second."""
    from pymodbus.client import ModbusTcpClient

    c = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    while not stop.wait(1.0):
        try:
            if not c.connected:
                c.connect()
            for address, count in ((0, 32), (100, 50)):
                rr = c.read_input_registers(address, count=count, device_id=1)
                stats["ok" if not rr.isError() else "err"] += 1
        except Exception:  # noqa: BLE001 - counted, the poller goes on
            stats["err"] += 1
            c.close()
    c.close()


def slope_kb_per_min(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    return 60 * sum((t - mx) * (v - my) for t, v in samples) / den if den else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load (>= 600 for the record)")
    ap.add_argument("--lg-nodes", type=int, default=46)
    ap.add_argument("--lg-connections", type=int, default=4)
    ap.add_argument("--vm-nodes", type=int, default=4)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between windows per node")
    ap.add_argument("--churn-s", type=float, default=20.0)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--warmup-s", type=float, default=120.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="vibekit-soak-"))
    broker = make_broker(work / "broker").start()
    mb_port, web_port, ua_port = free_port(), free_port(), free_port()
    vm_ids = [f"vm{i:02d}" for i in range(args.vm_nodes)]
    toml = work / "bridge.toml"
    toml.write_text(
        f'[bridge]\ndata_dir = "var"\naccept_unknown_nodes = true\n'
        f'[mqtt]\nport = {broker.port}\nclient_id = "soak-bridge"\n'
        f'[modbus]\nport = {mb_port}\n'
        f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{ua_port}"\nallow_anonymous = true\nallow_none_security = true\n'
        f'cert_dir = "{work / "pki"}"\n'
        f'[web]\nport = {web_port}\n'
        + "".join(f'[[nodes]]\nid = "{n}"\nunit_id = {i + 1}\n' for i, n in enumerate(vm_ids))
    )
    blog = open(work / "bridge.log", "wb")
    bridge = subprocess.Popen([sys.executable, "-m", "host_bridge.cli", "run", "-c", str(toml)], cwd=REPO,
                              stdout=blog, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stop = threading.Event()
    samples: list[tuple[float, int]] = []
    churn_log: list[dict] = []
    mb_stats = {"ok": 0, "err": 0}
    vms: list[VirtualNode] = []
    lg = None
    result: dict = {}
    try:
        wait_port(web_port, timeout=60)
        wait_port(mb_port, timeout=60)
        for i, n in enumerate(vm_ids):
            vms.append(VirtualNode(work / n, n, mqtt_port=broker.port, interval_s=args.interval, status_interval_s=30,
                                   sim={"tones": [[i % 3, 50.0 + 10 * i, 0.3]], "noise_g": 0.01}).start())
        lg = LoadGen(args.lg_nodes, args.lg_connections, port=broker.port, interval_s=args.interval,
                     ack_timeout_s=5.0, id_prefix="lg")
        lg.connect()
        t0 = time.monotonic()

        def sampler():
            while not stop.is_set():
                samples.append((round(time.monotonic() - t0, 1), rss_kb(bridge.pid)))
                stop.wait(args.sample_s)

        def churn():
            k = 0
            while not stop.wait(args.churn_s):
                k += 1
                ci = k % len(lg.clients)
                try:  # cut one loadgen connection: paho notices, reconnects, loadgen resends
                    sock = lg.clients[ci].socket()
                    if sock is not None:
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                vm = vms[k % len(vms)] if vms else None
                if vm is not None:
                    vm.stop()
                    time.sleep(1.0)
                    vm.start()
                churn_log.append({"t": round(time.monotonic() - t0, 1), "lg_connection": ci,
                                  "vm_restart": vm.node_id if vm else None})

        threads = [threading.Thread(target=sampler, daemon=True), threading.Thread(target=churn, daemon=True),
                   threading.Thread(target=modbus_poll, args=(mb_port, stop, mb_stats), daemon=True)]
        for t in threads:
            t.start()
        lg_result = lg.run(args.duration)  # includes its own drain of in-flight batches
        stop.set()
        for t in threads:
            t.join(30)
        # VM nodes: graceful stop after their backlog is acked
        status = fetch_status(web_port)
        for vm in vms:
            vm.stop()
        time.sleep(2.0)
        status = fetch_status(web_port)
        samples.append((round(time.monotonic() - t0, 1), rss_kb(bridge.pid)))
    finally:
        stop.set()
        if lg is not None:
            lg.close()
        for vm in vms:
            vm.close()
        if bridge.poll() is None:
            bridge.send_signal(signal.SIGTERM)
            try:
                bridge.wait(30)
            except subprocess.TimeoutExpired:
                bridge.kill()
        blog.close()
        broker.stop()

    db = sqlite3.connect(work / "var" / "historian.sqlite3")
    stored = dict(db.execute("SELECT node, COUNT(*) FROM records GROUP BY node").fetchall())
    maxseq = dict(db.execute("SELECT node, MAX(seq) FROM records GROUP BY node").fetchall())
    dup_check = db.execute("SELECT COUNT(*) FROM (SELECT node, seq FROM records GROUP BY node, seq HAVING COUNT(*) > 1)"
                           ).fetchone()[0]
    db.close()
    lg_lost = sum(max(0, (n.next_seq - 1) - stored.get(n.node_id, 0)) for n in lg.nodes)
    lg_created = sum(n.next_seq - 1 for n in lg.nodes)
    vm_gaps = {n: maxseq.get(n, 0) - stored.get(n, 0) for n in vm_ids}  # holes below the top seq
    vm_stored = sum(stored.get(n, 0) for n in vm_ids)
    after = [(t, v) for t, v in samples if t >= args.warmup_s]
    counters = status["bridge"]["counters"] if "bridge" in status else {}
    result = {
        "about": "bench/bench_soak.py: bridge daemon under 50 nodes with connection churn",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "duration_s": args.duration,
        "nodes": {"loadgen": args.lg_nodes, "loadgen_connections": args.lg_connections, "vm": args.vm_nodes},
        "interval_s": args.interval,
        "churn_every_s": args.churn_s,
        "churn_events": len(churn_log),
        "records": {
            "loadgen_created": lg_created,
            "loadgen_stored": sum(stored.get(n.node_id, 0) for n in lg.nodes),
            "loadgen_lost": lg_lost,
            "vm_stored": vm_stored,
            "vm_lost_below_top_seq": sum(vm_gaps.values()),
            "duplicates_in_historian": dup_check,
        },
        "loadgen": lg_result,
        "bridge_counters": counters,
        "modbus_poller": mb_stats,
        "rss_kb": {
            "warmup_s": args.warmup_s,
            "first": samples[0][1] if samples else None,
            "after_warmup": after[0][1] if after else None,
            "end": samples[-1][1] if samples else None,
            "max": max(v for _, v in samples) if samples else None,
            "slope_after_warmup_kb_per_min": round(slope_kb_per_min(after), 1),
            "samples": samples,
        },
        "bridge_exit_code": bridge.returncode,
        "workdir": str(work),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    brief = {k: result[k] for k in ("duration_s", "churn_events", "records")}
    brief["rss_kb"] = {k: v for k, v in result["rss_kb"].items() if k != "samples"}
    print(json.dumps(brief, indent=1))
    return 0 if lg_lost == 0 and result["records"]["vm_lost_below_top_seq"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
