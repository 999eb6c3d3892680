"""Drain rate: one virtual node's backlog (the real firmware on the MicroPython VM, littlefs
journal) forwarded to the real bridge, over MQTT (mosquitto) and over a pty serial line.

1. Fill: the node samples with its link down (broker up, no bridge: no acks) until its journal
   holds a backlog (the offline flush policy writes whole blocks); its flash image is kept.
2. Drain: the node restarts with no new windows due (interval 600 s), the bridge is up; the
   time from the node's start until the historian holds every record of the backlog.
   Runs: MQTT with no backfill rate limit, MQTT with the default limit (batch.backfill_rps),
   serial with no limit. Each run starts from a copy of the same flash image.
3. Sizing: a 24-hour outage of 1,000 nodes at one record per second, from the measured rates
   and the bridge ingest figure in bench/results/ingest.json (assumptions in the output).

Writes bench/results/drain.json. Run: .venv/bin/python bench/bench_drain.py [--fill-s 25]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.bridge_harness import BridgeThread, make_config  # noqa: E402
from tests.brokers import make_broker  # noqa: E402
from tools.virtual_node import VirtualNode  # noqa: E402

NODE = "drain1"
SIM = {"realtime": False, "noise_g": 0.01}


def _boot_line(vn: VirtualNode, after: int) -> tuple[int, int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = [ln for ln in vn.log_text().splitlines() if ln.startswith("vibenode ")]
        if len(lines) > after:
            ln = lines[-1]
            return int(ln.split("next_seq=")[1].split()[0]), int(ln.split("depth=")[1].split()[0])
        time.sleep(0.01)
    raise RuntimeError("node did not boot: " + vn.log_text()[-1000:])


def fill(work: Path, port: int, seconds: float) -> Path:
    vn = VirtualNode(work / "fill", NODE, mqtt_port=port, sim=SIM, window_n=256, interval_s=0.0,
                     status_interval_s=0, config={"batch": {"ack_timeout_s": 1.0}})
    vn.start()
    time.sleep(seconds)
    vn.stop()  # SIGINT: the journal is closed, nothing staged is lost
    image = work / "backlog.img"
    shutil.copy(vn.node_dir / "flash.img", image)
    return image


def drain(work: Path, name: str, image: Path, uplink: str, port: int, backfill_rps: float) -> dict:
    d = work / name
    d.mkdir()
    shutil.copy(image, d / "flash.img")
    vn = VirtualNode(d, NODE, uplink=uplink, mqtt_port=port, sim=SIM, window_n=256, interval_s=600,
                     status_interval_s=0, config={"batch": {"backfill_rps": backfill_rps, "ack_timeout_s": 3.0},
                                                  "serial": {"hello_interval_s": 0.2}})
    serial = [{"port": vn.serial_path, "node": NODE}] if uplink == "serial" else ()
    cfg = make_config(work / f"{name}-bridge", [NODE], mqtt_port=port if uplink == "mqtt" else None, serial=serial)
    try:
        with BridgeThread(cfg) as bridge:
            if bridge.mqtt:
                bridge.mqtt.connected.wait(10)
            else:
                bridge.serial[0].wait_connected(10)
            time.sleep(0.3)
            t0 = time.perf_counter()
            vn.start()
            top, depth = _boot_line(vn, 0)  # the backlog, then the boot's one window at seq `top`
            t_boot = time.perf_counter() - t0
            while bridge.historian.max_seq(NODE) < top:
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError(f"{name}: drain stalled at {bridge.historian.max_seq(NODE)} of {top}")
                time.sleep(0.005)
            dt = time.perf_counter() - t0
            c = bridge.counters.snapshot()
            stored = bridge.historian.count(NODE)
    finally:
        vn.close()
    return {
        "uplink": uplink, "backfill_rps": backfill_rps, "backlog_records": depth, "stored": stored,
        "seconds": round(dt, 3), "node_boot_s": round(t_boot, 3),
        "records_per_s": round(stored / dt), "records_per_s_after_boot": round(stored / (dt - t_boot)),
        "batches": c.get("batches_ok", 0), "records_per_batch": round(c.get("records_in", 0) / max(1, c.get("batches_ok", 1)), 1),
        "duplicates": c.get("records_duplicate", 0),
    }


def sizing(mqtt_rate: float, ingest_rate: float, journal: dict) -> dict:
    nodes, rate, outage_s = 1000, 1.0, 24 * 3600
    per_node = int(rate * outage_s)
    keep = journal["records_kept_256k_offline"]
    live = nodes * rate
    out = {
        "nodes": nodes, "records_per_s_per_node": rate, "outage_h": 24,
        "records_made_per_node": per_node,
        "bridge_ingest_records_per_s": round(ingest_rate),
        "one_node_drain_records_per_s": round(mqtt_rate),
        "assumptions": [
            "all nodes reconnect together and drain in parallel; one batch in flight per node",
            "the bridge ingest rate is bench/results/ingest.json (one bridge, SQLite on this machine's disk,"
            " broker and publisher on the same 2 cores); live records keep arriving at nodes x rate during the drain",
            "aggregate drain rate = min(nodes x per-node rate, bridge ingest rate) - live rate",
            "journal: default 256 KB quota, offline flushes of 21 records per 4 KB block (docs/journal.md)",
        ],
    }
    for label, backlog, per_node_cap in (
        ("as_configured_256k_quota", min(per_node, keep), None),
        ("whole_outage_kept", per_node, None),
        ("whole_outage_kept_rate_limited_100rps", per_node, 100.0),
    ):
        node_rate = mqtt_rate if per_node_cap is None else min(mqtt_rate, per_node_cap)
        agg = min(nodes * node_rate, ingest_rate) - live
        total = nodes * backlog
        out[label] = {
            "backlog_records_per_node": backlog,
            "backlog_records_total": total,
            "dropped_per_node": per_node - backlog,
            "aggregate_drain_records_per_s": round(agg),
            "drain_s": round(total / agg, 1) if agg > 0 else None,
            "flash_needed_per_node_mb": round(backlog * 4096 / 21 / 1e6, 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fill-s", type=float, default=25.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "drain.json")
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # set_tcp_nodelay: without it mosquitto's Nagle holds each ack ~40 ms behind the PUBACK
        # it just sent (a delayed-ACK stall per batch); docs/store-and-forward.md
        broker = make_broker(work / "broker", extra_conf="set_tcp_nodelay true\n").start()
        try:
            image = fill(work, broker.port, a.fill_s)
            results["mqtt_unlimited"] = drain(work, "mqtt0", image, "mqtt", broker.port, 0)
            results["mqtt_default_limit"] = drain(work, "mqtt100", image, "mqtt", broker.port, 100)
            results["serial_unlimited"] = drain(work, "serial0", image, "serial", broker.port, 0)
        finally:
            broker.stop()
    ingest = json.loads((REPO / "bench" / "results" / "ingest.json").read_text())
    journal = {"records_kept_256k_offline": 256 * 1024 // 4096 * 21}
    out = {
        "bench": "drain",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": "2 shared cores, loopback, VM node (64-bit MicroPython unix port), mosquitto 2.0",
        "record_bytes": 179,
        **results,
        "sizing_24h_1000_nodes": sizing(results["mqtt_unlimited"]["records_per_s_after_boot"],
                                        ingest["bridge_records_per_s"], journal),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
