"""Bridge ingest rate into the historian, beside the raw ceilings measured in the same run.

Three measurements over the SAME messages (batches of records from many nodes):
  1. raw paho receive: a bare paho subscriber counting the messages a publisher process sends
     through mosquitto (QoS 1 both ways);
  2. raw SQLite insert: the same records inserted with executemany into a WAL database with
     synchronous=FULL, committed in groups of the same size the bridge uses;
  3. the bridge: MQTT input -> validation -> historian commit -> tags -> acks, the records
     counted in the historian.
Goal: bridge >= 0.5 x min(raw paho, raw SQLite). Writes bench/results/ingest.json.

Run: .venv/bin/python bench/bench_ingest.py [--nodes 100] [--batches 40] [--records 25]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sqlite3
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402

from host_bridge import codec  # noqa: E402
from host_bridge.store import _SCHEMA  # noqa: E402
from tests.bridge_harness import BridgeThread, make_config  # noqa: E402
from tests.brokers import make_broker  # noqa: E402

T0 = 1795300000


def make_messages(nodes: int, batches: int, per_batch: int) -> list[tuple[str, bytes]]:
    msgs = []
    vals = [21.0] + [0.1 * i for i in range(1, 41)]
    for b in range(batches):
        for n in range(nodes):
            node = f"bench-{n:04d}"
            seq0 = b * per_batch + 1
            recs = [codec.encode_record(seq0 + i, 1, 0, 1, T0 + seq0 + i, 0, vals) for i in range(per_batch)]
            msgs.append((node, codec.encode_batch(node, recs)))
    return msgs


def _publisher(port: int, prefix: str, msgs: list[tuple[str, bytes]], start_evt) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    start_evt.wait()
    infos = [c.publish(f"{prefix}/{node}/data", payload, qos=1) for node, payload in msgs]
    for i in infos:
        i.wait_for_publish(60)
    c.loop_stop()
    c.disconnect()


def publish_in_child(port: int, prefix: str, msgs) -> tuple[mp.Process, object]:
    ctx = mp.get_context("fork")
    evt = ctx.Event()
    p = ctx.Process(target=_publisher, args=(port, prefix, msgs, evt), daemon=True)
    p.start()
    time.sleep(0.5)  # connected
    return p, evt


def bench_raw_paho(port: int, msgs) -> float:
    got = 0
    done = threading.Event()
    first = [0.0]

    def on_message(c, u, m):
        nonlocal got
        if got == 0:
            first[0] = time.perf_counter()
        got += 1
        if got == len(msgs):
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("rawbench/+/data", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    p, evt = publish_in_child(port, "rawbench", msgs)
    t = time.perf_counter()
    evt.set()
    done.wait(300)
    dt = time.perf_counter() - t
    p.join(30)
    sub.loop_stop()
    sub.disconnect()
    return got / dt


def bench_raw_sqlite(msgs, group: int, schema: str | None = None) -> float:
    """Pre-built rows, executemany, WAL + synchronous=FULL. schema None: a bare table with the
    primary key only (the ceiling the goal is defined against); else that schema (e.g. the
    historian's, with its time index), to show what the storage itself costs."""
    rows = []
    for node, payload in msgs:
        _, recs = codec.decode_batch(payload)  # decoding is not part of the raw ceiling
        for r in recs:
            rows.append((node, r.seq, r.boot, r.kind, r.flags, r.ts_s, r.ts_ms, r.device_time_ms, 0, "raw",
                         struct.pack(f"<{len(r.values)}f", *r.values)))
    per_msg = len(rows) // len(msgs)
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(str(Path(d) / "raw.sqlite3"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if schema is None:
            db.execute(
                "CREATE TABLE records (node TEXT, seq INTEGER, boot INTEGER, kind INTEGER, flags INTEGER, ts_s INTEGER,"
                " ts_ms INTEGER, source_ms INTEGER, received_ms INTEGER, source TEXT, vals BLOB,"
                " PRIMARY KEY (node, seq)) WITHOUT ROWID"
            )
        else:
            db.executescript(schema)
        step = group * per_msg
        t = time.perf_counter()
        for i in range(0, len(rows), step):
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows[i : i + step])
            db.execute("COMMIT")
        dt = time.perf_counter() - t
        db.close()
    return len(rows) / dt


def bench_bridge(port: int, msgs, nodes: int, tmp: Path) -> tuple[float, dict]:
    node_ids = sorted({n for n, _ in msgs})
    cfg = make_config(tmp, node_ids, mqtt_port=port)
    cfg.mqtt.client_id = "bench-bridge"
    total = sum(len(codec.decode_batch(p)[1]) for _, p in msgs)
    with BridgeThread(cfg) as bridge:
        bridge.mqtt.connected.wait(10)
        time.sleep(0.3)
        p, evt = publish_in_child(port, cfg.mqtt.prefix, msgs)
        t = time.perf_counter()
        evt.set()
        deadline = time.monotonic() + 300
        while bridge.counters.get("records_stored") < total and time.monotonic() < deadline:
            time.sleep(0.01)
        dt = time.perf_counter() - t
        p.join(30)
        stored = bridge.counters.get("records_stored")
        counters = bridge.counters.snapshot()
    return stored / dt, {"stored": stored, "expected": total, "counters": counters}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--records", type=int, default=25, help="records per batch")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest.json")
    a = ap.parse_args()
    msgs = make_messages(a.nodes, a.batches, a.records)
    n_records = len(msgs) * a.records
    with tempfile.TemporaryDirectory() as d:
        broker = make_broker(Path(d) / "broker").start()
        try:
            raw_paho_msgs = bench_raw_paho(broker.port, msgs)
            raw_sqlite = bench_raw_sqlite(msgs, group=64)
            raw_sqlite_schema = bench_raw_sqlite(msgs, group=64, schema=_SCHEMA)
            bridge_rate, detail = bench_bridge(broker.port, msgs, a.nodes, Path(d))
        finally:
            broker.stop()
    raw_paho = raw_paho_msgs * a.records
    slower = min(raw_paho, raw_sqlite)
    result = {
        "bench": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "messages": len(msgs),
        "records": n_records,
        "records_per_message": a.records,
        "nodes": a.nodes,
        "raw_paho_records_per_s": round(raw_paho),
        "raw_paho_messages_per_s": round(raw_paho_msgs),
        "raw_sqlite_records_per_s": round(raw_sqlite),
        "raw_sqlite_historian_schema_records_per_s": round(raw_sqlite_schema),
        "bridge_records_per_s": round(bridge_rate),
        "bridge_vs_slower_raw": round(bridge_rate / slower, 3),
        "goal": ">= 0.5",
        "bridge_vs_raw_sqlite_historian_schema": round(bridge_rate / raw_sqlite_schema, 3),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "bridge_stored": detail["stored"],
        "bridge_duplicates": detail["counters"].get("records_duplicate", 0),
        "bridge_rejected": detail["counters"].get("batches_rejected", 0),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
