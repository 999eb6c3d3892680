"""SIGTERM on `host-bridge run`: stop taking input, commit and ack what is queued, exit 0, promptly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from host_bridge import codec
from host_bridge.model import FLAG_CLOCK_SYNCED
from tests.netutil import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
PROMPT_S = 5.0
BATCHES = 300
PER_BATCH = 20


def test_sigterm_commits_queued_records_and_exits_0(tmp_path, broker):
    web_port = free_port()
    cfg = tmp_path / "bridge.toml"
    # One node floods 300 batches at once: raise its rate-limit burst so none is refused.
    cfg.write_text(
        f'[bridge]\ndata_dir = "var"\nrate_limit_burst = 10000.0\n[mqtt]\nport = {broker.port}\nclient_id = "sigterm-bridge"\n'
        f'[modbus]\nenabled = false\n[opcua]\nenabled = false\n[web]\nport = {web_port}\n'
        '[[nodes]]\nid = "pump-1"\n'
    )
    log_path = tmp_path / "bridge.log"
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "host_bridge.cli", "run", "-c", str(cfg), "--log-format", "json"],
            stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    acks: list[int] = []
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sigterm-node")
    pub.on_message = lambda c, u, m: acks.append(codec.decode_ack(m.payload).acked_seq)
    try:
        wait_for(lambda: "connected to broker" in log_path.read_text(), 20, what="the bridge on the broker")
        pub.connect("127.0.0.1", broker.port)
        pub.subscribe("vibekit/pump-1/ack", qos=1)
        pub.loop_start()
        t = int(time.time())
        seq = 0
        infos = []
        for _ in range(BATCHES):
            recs = []
            for _ in range(PER_BATCH):
                seq += 1
                recs.append(codec.encode_record(seq, 1, 0, FLAG_CLOCK_SYNCED, t, seq % 1000, [1.0] * 41))
            infos.append(pub.publish("vibekit/pump-1/data", codec.encode_batch("pump-1", recs), qos=1))
        # SIGTERM as soon as the bridge has some of it: the rest is still queued or in flight
        wait_for(lambda: acks, 20, what="a first ack")
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
        took = time.monotonic() - sent_at
        for i in infos:
            i.wait_for_publish(5)
        time.sleep(0.3)  # acks the bridge sent while stopping
    finally:
        pub.loop_stop()
        pub.disconnect()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

    assert rc == 0, log_path.read_text()[-3000:]
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    stopped = [x for x in lines if x["msg"].startswith("bridge stopped")]
    assert stopped, "no 'bridge stopped' line"
    db = sqlite3.connect(tmp_path / "var" / "historian.sqlite3")
    seqs = {r[0] for r in db.execute("SELECT seq FROM records WHERE node='pump-1'")}
    db.close()
    # everything the bridge decoded before it stopped is committed, and nothing is acked that is not
    assert len(seqs) == stopped[-1]["records_stored"] > 0
    assert acks and max(acks) <= max(seqs)
    assert seqs >= set(range(1, max(acks) + 1)), "an acked record is missing from the historian"
    assert stopped[-1]["acks_sent"] >= len(seqs) // PER_BATCH
    assert took < PROMPT_S, f"shutdown under traffic took {took:.1f}s"
