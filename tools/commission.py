"""Commissioning check: wait for a node's first good measurement at the bridge; print PASS or FAIL.

Two ways to watch, both read-only (nothing is sent to the node or the bridge):
  --mqtt HOST:PORT   subscribe to {prefix}/{node}/data and decode the batches with
                     host_bridge.codec (the same broker the bridge reads)
  --historian FILE   poll the bridge's SQLite historian for records of the node that arrived
                     after the check started

A record is good when it is a measurement (kind 0) with no ACCEL_FAULT / TEMP_FAULT flag,
its clock synced (CLOCK_SYNCED: the bridge's ack set the node's time), and plausible values
(finite, within physical limits). Until the timeout every record is judged; the verdict is
PASS on the first good one, else FAIL with the reason of the last record seen ("no data" when
nothing came). Exit code: 0 PASS, 1 FAIL, 2 usage error.

    python -m tools.commission NODE --mqtt 127.0.0.1:1883 [--prefix vibekit] [--timeout 60]
    python -m tools.commission NODE --historian /var/lib/vibekit/historian.db
"""

from __future__ import annotations

import argparse
import math
import queue
import sqlite3
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

from host_bridge.codec import CodecError, decode_batch  # noqa: E402
from host_bridge.model import (  # noqa: E402
    FLAG_ACCEL_FAULT,
    FLAG_CLOCK_SYNCED,
    FLAG_TEMP_FAULT,
    KIND_MEASUREMENT,
    Record,
)

# Plausibility limits: what a retrofit sensor on a running machine can report.
TEMP_RANGE_C = (-40.0, 150.0)
ACC_MAX_G = 200.0  # above any MEMS accelerometer's range
VEL_MAX_MM_S = 1000.0
ACC_MIN_G = 1e-5  # an axis reading exactly nothing: sensor not sampling (or not mounted)


@dataclass
class Verdict:
    ok: bool
    reason: str
    record: Record | None = None
    seen: int = 0  # records judged
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self, node: str) -> str:
        word = "PASS" if self.ok else "FAIL"
        extra = f" (seq {self.record.seq}, {self.seen} record(s) seen, {self.elapsed_s:.1f} s)" if self.record else ""
        return f"{word} {node}: {self.reason}{extra}"


def judge(r: Record) -> list[str]:
    """Problems with one record; [] = a good first record."""
    if r.kind != KIND_MEASUREMENT:
        return ["status record only (no measurement yet)"]
    p: list[str] = []
    if r.flags & FLAG_ACCEL_FAULT:
        p.append("sensor fault: accelerometer (ACCEL_FAULT flag) - check wiring, address, power")
    if r.flags & FLAG_TEMP_FAULT:
        p.append("sensor fault: temperature (TEMP_FAULT flag) - check wiring, 1-Wire pull-up, address")
    if not r.flags & FLAG_CLOCK_SYNCED:
        p.append("clock not synced (no ack from the bridge yet, or NTP unreachable): timestamps are seconds since boot")
    v = r.named()
    t = v.get("temperature", math.nan)
    if not r.flags & FLAG_TEMP_FAULT and not (math.isfinite(t) and TEMP_RANGE_C[0] <= t <= TEMP_RANGE_C[1]):
        p.append(f"bad value: temperature {t!r} degC outside {TEMP_RANGE_C}")
    if not r.flags & FLAG_ACCEL_FAULT:
        for a in "xyz":
            rms = v.get(f"acc_rms_{a}", math.nan)
            vel = v.get(f"vel_rms_{a}", math.nan)
            if not math.isfinite(rms) or rms < 0 or rms > ACC_MAX_G:
                p.append(f"bad value: acc_rms_{a} {rms!r} g")
            if not math.isfinite(vel) or vel < 0 or vel > VEL_MAX_MM_S:
                p.append(f"bad value: vel_rms_{a} {vel!r} mm/s")
        if all(abs(v.get(f"acc_peak_{a}", 0.0)) < ACC_MIN_G for a in "xyz"):
            p.append("bad value: all axes read zero (sensor not sampling, or a constant signal)")
        zone = v.get("iso_zone", math.nan)
        if not (math.isfinite(zone) and 1 <= zone <= 4):
            p.append(f"bad value: iso_zone {zone!r}")
    return p


class Watcher:
    """Judge records as they come until the first good one or the deadline."""

    def __init__(self, node: str, timeout_s: float) -> None:
        self.node = node
        self.timeout_s = timeout_s

    def records(self):  # yields lists of new records (possibly empty) until closed
        raise NotImplementedError

    def close(self) -> None:
        pass

    def run(self) -> Verdict:
        t0 = time.monotonic()
        seen = 0
        last: Verdict | None = None
        try:
            for recs in self.records():
                for r in recs:
                    if r.node_id != self.node:
                        continue
                    seen += 1
                    probs = judge(r)
                    last = Verdict(not probs, "first good record" if not probs else "; ".join(probs), r, seen,
                                   time.monotonic() - t0, probs)
                    if not probs:
                        return last
                if time.monotonic() - t0 >= self.timeout_s:
                    break
        finally:
            self.close()
        el = time.monotonic() - t0
        if last is None:
            return Verdict(False, f"no data from {self.node} within {self.timeout_s:.0f} s "
                                  "(node powered? config node_id, broker address, WiFi? bridge running?)",
                           None, 0, el)
        last.ok = False
        last.elapsed_s = el
        last.seen = seen
        last.reason = f"no good record within {self.timeout_s:.0f} s; last: {last.reason}"
        return last


class MqttWatcher(Watcher):
    def __init__(self, node: str, timeout_s: float, host: str = "127.0.0.1", port: int = 1883,
                 prefix: str = "vibekit", user: str | None = None, password: str | None = None) -> None:
        super().__init__(node, timeout_s)
        import paho.mqtt.client as mqtt

        self.topic = f"{prefix}/{node}/data"
        self.errors: list[str] = []
        self._q: queue.Queue = queue.Queue()
        self._subscribed = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"commission-{node}-{time.time_ns() % 10**9}")
        if user:
            c.username_pw_set(user, password)
        c.on_connect = lambda cl, ud, fl, rc, pr=None: cl.subscribe(self.topic, qos=1)
        c.on_subscribe = lambda *a: self._subscribed.put(True)
        c.on_message = self._on_message
        self._c = c
        c.connect(host, port, keepalive=30)
        c.loop_start()
        try:
            self._subscribed.get(timeout=min(10.0, timeout_s + 1))
        except queue.Empty:
            self.close()
            raise ConnectionError(f"no SUBACK from the broker at {host}:{port} for {self.topic}") from None

    def _on_message(self, client, userdata, msg) -> None:
        try:
            node_id, recs = decode_batch(msg.payload)
        except CodecError as e:
            self.errors.append(str(e))
            self._q.put([])
            return
        self._q.put(recs if node_id == self.node else [])

    def records(self):
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            try:
                yield self._q.get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                yield []

    def close(self) -> None:
        self._c.loop_stop()
        self._c.disconnect()


class HistorianWatcher(Watcher):
    """Reads the bridge's historian file (read-only); only records received after the start count."""

    def __init__(self, node: str, timeout_s: float, path: str | Path, since_ms: int | None = None) -> None:
        super().__init__(node, timeout_s)
        self.path = Path(path)
        if self.path.is_dir():  # the bridge's data_dir
            self.path = self.path / "historian.sqlite3"
        self.since_ms = int(time.time() * 1000) - 1000 if since_ms is None else since_ms
        self._db: sqlite3.Connection | None = None
        self._last_seq = -1

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None and self.path.exists():
            try:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2)
            except sqlite3.Error:
                self._db = None
        return self._db

    def records(self):
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            db = self._open()
            recs: list[Record] = []
            if db is not None:
                try:
                    rows = db.execute(
                        "SELECT node, seq, boot, kind, flags, ts_s, ts_ms, vals, received_ms FROM records "
                        "WHERE node=? AND seq>? AND received_ms>=? ORDER BY seq LIMIT 500",
                        (self.node, self._last_seq, self.since_ms)).fetchall()
                except sqlite3.Error:
                    rows = []  # the bridge has not created its schema yet
                for node, seq, boot, kind, flags, ts_s, ts_ms, vals, rx in rows:
                    values = struct.unpack(f"<{len(vals) // 4}f", vals)
                    recs.append(Record(node, seq, boot, kind, flags, ts_s, ts_ms, values, rx, "historian"))
                    self._last_seq = max(self._last_seq, seq)
            yield recs
            if not recs:
                time.sleep(0.2)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def check(node: str, timeout_s: float = 60.0, mqtt: str | None = None, prefix: str = "vibekit",
          historian: str | Path | None = None, user: str | None = None, password: str | None = None) -> Verdict:
    if historian:
        w: Watcher = HistorianWatcher(node, timeout_s, historian)
    elif mqtt:
        host, _, port = mqtt.rpartition(":")
        w = MqttWatcher(node, timeout_s, host or "127.0.0.1", int(port or 1883), prefix, user, password)
    else:
        raise ValueError("give --mqtt HOST:PORT or --historian FILE")
    return w.run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Commissioning: wait for the node's first good record; PASS or FAIL.")
    ap.add_argument("node", help="node_id as in the node's config.json")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--mqtt", metavar="HOST:PORT", help="the broker the node and the bridge use")
    src.add_argument("--historian", metavar="FILE", help="the bridge's historian (SQLite) file, or its data_dir")
    ap.add_argument("--prefix", default="vibekit", help="MQTT topic prefix (default vibekit)")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    args = ap.parse_args(argv)
    try:
        v = check(args.node, args.timeout, args.mqtt, args.prefix, args.historian, args.user, args.password)
    except (OSError, ValueError) as e:
        print(f"FAIL {args.node}: cannot watch: {e}")
        return 1
    print(v.line(args.node))
    if v.record is not None:
        named = v.record.named()
        keys = ("temperature", "acc_rms_x", "acc_rms_y", "acc_rms_z", "vel_rms_x", "dom_freq_x", "iso_zone")
        print("  " + "  ".join(f"{k}={named[k]:.4g}" for k in keys if k in named))
    return 0 if v.ok else 1


if __name__ == "__main__":
    sys.exit(main())
