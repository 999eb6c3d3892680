"""MQTT links that never hang: the real firmware against mosquitto through a fault-injecting
TCP proxy (tests/tcp_proxy.py), with the real bridge and its historian at the other end.

Each scenario runs two nodes side by side, each through its own proxy:
- `vm`: the firmware on the MicroPython VM with the umqtt uplink (vibenode/uplink_mqtt.py);
- `cp`: the same firmware on CPython with the CircuitPython port and fakes
  (tests/circuitpython_fakes.py) and the minimqtt uplink (vibenode/uplink_minimqtt.py).

Scenarios: broker restart, broker unreachable for two minutes (refused, then accepting but
silent), a half-open connection (traffic silently dropped), a slow broker (delay each way).
Every scenario checks: the node process never dies, windows keep coming on time (no gap in
the records' device time longer than a window plus two socket timeouts), the node tries
again within its backoff bounds, data flows again, and the historian holds every seq once.

The four scenarios are independent (own broker, proxy, bridge, nodes) and run concurrently in
one test so the two-minute outage sets the wall time. VIBEKIT_LINK_SCENARIOS=restart,slow
runs a subset.
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback

import pytest

from tests.bridge_harness import BridgeThread, make_config
from tests.brokers import make_broker
from tests.circuitpython_fakes import CircuitPythonNode
from tests.netutil import wait_for
from tests.tcp_proxy import TcpProxy
from tools.virtual_node import VirtualNode

KA, TO = 4, 2.0  # node keepalive_s and timeout_s
BMIN, BMAX = 0.2, 2.0  # node backoff bounds (the outage scenario uses BMAX_OUTAGE)
BMAX_OUTAGE = 5.0
INTERVAL = 0.5  # window period
SLACK = 3.0  # scheduling slack on a shared 2-core machine
OUTAGE_S = float(os.environ.get("VIBEKIT_OUTAGE_S", "120"))
STATUS_NAMES = ("uptime", "free_heap", "reset_cause", "rssi", "journal_depth", "journal_dropped",
                "fifo_overruns", "sensor_faults", "fw_version", "link_reconnects", "windows")


class Rig:
    """One broker, one bridge, and per node kind a proxy and a node."""

    def __init__(self, tmp, name: str, backoff_max: float = BMAX, interval: float = INTERVAL) -> None:
        self.name = name
        self.tmp = tmp / name
        self.broker = make_broker(self.tmp / "broker").start()
        self.ids = {"vm": f"{name}-vm", "cp": f"{name}-cp"}
        cfg = make_config(self.tmp, list(self.ids.values()), mqtt_port=self.broker.port)
        cfg.mqtt.client_id = f"bridge-{name}"
        self.bt = BridgeThread(cfg)
        self.bridge = self.bt.__enter__()
        self.proxies = {k: TcpProxy(self.broker.port) for k in self.ids}
        self.nodes = {}
        self.interval = interval
        for kind, nid in self.ids.items():
            vn = VirtualNode(self.tmp / nid, nid, mqtt_port=self.proxies[kind].port, window_n=512,
                             interval_s=interval, status_interval_s=2.0,
                             sim={"tones": [[0, 80.0, 0.5]], "noise_g": 0.0, "temp_c": 30.0},
                             config={"mqtt": {"keepalive_s": KA, "timeout_s": TO, "backoff_min_s": BMIN,
                                              "backoff_max_s": backoff_max},
                                     "batch": {"ack_timeout_s": 3.0},
                                     "wifi": {"ssid": "plant", "password": "x"} if kind == "cp" else None})
            self.nodes[kind] = vn if kind == "vm" else CircuitPythonNode(vn)
        for n in self.nodes.values():
            n.start()

    # -- observations ----------------------------------------------------------------------

    def seqs(self, kind: str) -> list[int]:
        return self.bridge.historian.seqs(self.ids[kind])

    def top(self, kind: str) -> int:
        """The gapless frontier: every seq up to it is stored (live previews sent ahead of a
        backlog do not count until the backlog has caught up with them)."""
        n = 0
        for i, s in enumerate(self.seqs(kind), 1):
            if s != i:
                break
            n = i
        return n

    def alive(self) -> None:
        for kind, n in self.nodes.items():
            assert n.alive(), f"{self.name}/{kind} node died:\n{n.log_text()[-3000:]}"

    def wait_flow(self, more: int, timeout: float, what: str) -> None:
        base = {k: self.top(k) for k in self.nodes}

        def ok():
            self.alive()
            return all(self.top(k) >= base[k] + more for k in self.nodes)

        wait_for(ok, timeout=timeout, interval=0.2, what=f"{self.name}: {what}")

    def first_connect_after(self, kind: str, t: float) -> float | None:
        ts = [c for c in self.proxies[kind].connect_times if c >= t]
        return ts[0] if ts else None

    def wait_reconnect(self, t: float, bound: float, what: str) -> dict[str, float]:
        """Every node opens a new connection through its proxy within `bound` s of t."""
        wait_for(lambda: all(self.first_connect_after(k, t) for k in self.nodes), timeout=bound + 5,
                 interval=0.05, what=f"{self.name}: {what}")
        took = {k: self.first_connect_after(k, t) - t for k in self.nodes}
        assert all(v <= bound for v in took.values()), f"{self.name}: {what}: {took} > {bound:.1f} s"
        return took

    def check_complete(self) -> None:
        """Every seq from 1 to the newest stored exactly once, windows never late by a hang."""
        self.alive()
        wait_for(lambda: all(self.top(k) == len(self.seqs(k)) for k in self.ids), timeout=30, interval=0.2,
                 what=f"{self.name}: backlog caught up with the live previews")
        for kind, nid in self.ids.items():
            seqs = self.seqs(kind)
            assert seqs == list(range(1, len(seqs) + 1)), f"{self.name}/{kind}: gap or duplicate in {seqs}"
            assert self.bridge.historian.count(nid) == len(seqs)
            recs = [r for r in self.bridge.historian.history(nid, 0, 2**62, kind=0) if r.clock_synced]
            ts = sorted(r.device_time_ms for r in recs)
            gaps = [b - a for a, b in zip(ts, ts[1:])]
            worst = max(gaps) / 1000 if gaps else 0.0
            assert worst <= self.interval + 2 * TO + SLACK, f"{self.name}/{kind}: windows stalled {worst:.1f} s"

    def close(self) -> None:
        for n in self.nodes.values():
            n.close() if hasattr(n, "close") else n.stop()
        for p in self.proxies.values():
            p.close()
        self.bt.__exit__(None, None, None)
        self.broker.stop()


# -- scenarios -----------------------------------------------------------------------------


def scenario_restart(rig: Rig, out: dict) -> None:
    rig.wait_flow(4, 60, "first records")
    rig.broker.stop()
    time.sleep(3.0)  # records taken meanwhile wait in the journals
    rig.broker.start()
    t = time.monotonic()
    out["reconnect_s"] = rig.wait_reconnect(t, BMAX + TO + SLACK, "reconnect after the broker restart")
    rig.wait_flow(4, 40, "flow after the restart")
    rig.check_complete()
    # the status record (kind 1) reaches the bridge's tags with every field, reconnect counted
    for kind, nid in rig.ids.items():
        wait_for(lambda nid=nid: rig.bridge.tags.get(nid).status.get("link_reconnects", 0) >= 1, timeout=20,
                 what=f"{nid}: status counting the reconnect")
        st = rig.bridge.tags.get(nid).status
        assert all(k in st for k in STATUS_NAMES), st
        assert st["uptime"] > 1 and st["free_heap"] > 0 and st["fw_version"] == 100 and st["reset_cause"] == 1
        assert st["sensor_faults"] == 0 and st["journal_dropped"] == 0 and st["windows"] >= 8
        assert st["journal_depth"] >= 0 and st["fifo_overruns"] >= 0
        assert math.isnan(st["rssi"]) if kind == "vm" else st["rssi"] == -61  # no WiFi on the VM
    out["status"] = {k: rig.bridge.tags.get(n).status for k, n in rig.ids.items()}


def scenario_outage(rig: Rig, out: dict) -> None:
    rig.wait_flow(4, 60, "first records")
    before = {k: rig.top(k) for k in rig.nodes}
    t0 = time.monotonic()
    for p in rig.proxies.values():
        p.set_mode("refuse")  # broker unreachable: connections reset
    while time.monotonic() - t0 < OUTAGE_S / 2:
        time.sleep(2)
        rig.alive()
    for p in rig.proxies.values():
        p.set_mode("blackhole")  # then: connections accepted, nothing ever answers
    while time.monotonic() - t0 < OUTAGE_S:
        time.sleep(2)
        rig.alive()
    out["stored_during_outage"] = {k: rig.top(k) - before[k] for k in rig.nodes}  # at most a batch in flight
    for p in rig.proxies.values():
        p.set_mode("pass")
    t = time.monotonic()
    # a connect that started in the blackhole may still wait out its timeout, then backoff
    out["reconnect_s"] = rig.wait_reconnect(t, TO + BMAX_OUTAGE + SLACK, "reconnect after the outage")
    windows = int(OUTAGE_S / rig.interval)
    t = time.monotonic()
    try:  # the drain is paced by the node's backfill (one batch in flight, batch.backfill_rps)
        rig.wait_flow(int(windows * 0.8), 90, "backlog of the outage drained")
    finally:
        out["drain_s"] = round(time.monotonic() - t, 1)
        out["frontier"] = {k: (rig.top(k), len(rig.seqs(k))) for k in rig.nodes}
    rig.check_complete()
    for nid in rig.ids.values():
        hist = [r for r in rig.bridge.historian.history(nid, 0, 2**62, kind=0) if r.historical]
        assert len(hist) >= windows * 0.5, f"{nid}: {len(hist)} historical records after the outage"


def scenario_half_open(rig: Rig, out: dict) -> None:
    rig.wait_flow(4, 60, "first records")
    wait_for(lambda: all(rig.bridge.tags.get(n).online for n in rig.ids.values()), timeout=10, what="online")
    for p in rig.proxies.values():
        p.set_mode("blackhole")  # silently drop: no FIN, no RST, the sockets stay open
    t = time.monotonic()
    # the node notices (PUBACK timeout, or 1.5 keepalives of silence) and tries a new connection
    out["detect_s"] = rig.wait_reconnect(t, 1.5 * KA + TO + BMIN + SLACK, "half-open link detected")
    # the broker sees the silence too and publishes the last will: the bridge marks it offline
    wait_for(lambda: all(rig.bridge.tags.get(n).online is False for n in rig.ids.values()), timeout=1.5 * KA + 6,
             what=f"{rig.name}: offline from the last will")
    time.sleep(max(0.0, 12 - (time.monotonic() - t)))
    for p in rig.proxies.values():
        p.set_mode("pass")
    t = time.monotonic()
    out["reconnect_s"] = rig.wait_reconnect(t, TO + BMAX + SLACK, "reconnect after the half-open link")
    wait_for(lambda: all(rig.bridge.tags.get(n).online for n in rig.ids.values()), timeout=15,
             what=f"{rig.name}: online again")
    rig.wait_flow(4, 40, "flow after the half-open link")
    rig.check_complete()


def scenario_slow(rig: Rig, out: dict) -> None:
    rig.wait_flow(4, 60, "first records")
    delay = 0.4  # each way: a 0.8 s round trip, under the nodes' 2 s timeout
    for p in rig.proxies.values():
        p.set_mode("pass", delay_s=delay)
    t = time.monotonic()
    base = {k: rig.top(k) for k in rig.nodes}
    time.sleep(20)
    rig.alive()
    assert all(rig.first_connect_after(k, t) is None for k in rig.nodes), "a slow broker is not a dead one"
    got = {k: rig.top(k) - base[k] for k in rig.nodes}
    out["records_in_20s"] = got
    assert all(v >= 20 / INTERVAL * 0.5 for v in got.values()), f"flow under a slow broker: {got}"
    for p in rig.proxies.values():
        p.set_mode("pass", delay_s=0.0)
    rig.wait_flow(3, 30, "flow after the slow phase")
    rig.check_complete()


SCENARIOS = {
    "restart": (scenario_restart, BMAX),  # (scenario, backoff_max_s[, window interval_s])
    "outage": (scenario_outage, BMAX_OUTAGE, 1.0),  # a window a second: 2 minutes of backlog stays small
    "half_open": (scenario_half_open, BMAX),
    "slow": (scenario_slow, BMAX),
}


@pytest.mark.timeout(420)
def test_mqtt_links_ride_through_faults(tmp_path):
    names = [n for n in os.environ.get("VIBEKIT_LINK_SCENARIOS", ",".join(SCENARIOS)).split(",") if n]
    rigs: dict[str, Rig] = {}
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}

    def run(name):
        fn, bmax, *interval = SCENARIOS[name]
        out: dict = {}
        results[name] = out
        t0 = time.monotonic()
        try:
            rigs[name] = rig = Rig(tmp_path, name, backoff_max=bmax, interval=interval[0] if interval else INTERVAL)
            fn(rig, out)
        except BaseException:  # noqa: BLE001 - reported below with the scenario's name
            errors[name] = traceback.format_exc()
        out["wall_s"] = round(time.monotonic() - t0, 1)

    threads = [threading.Thread(target=run, args=(n,), name=n) for n in names]
    try:
        for th in threads:
            th.start()
            time.sleep(1.0)  # stagger the start-up (compiles, imports) on a small machine
        for th in threads:
            th.join()
    finally:
        for rig in rigs.values():
            try:
                rig.close()
            except Exception:  # noqa: BLE001
                traceback.print_exc()
    for name, out in results.items():
        print(f"{name}: {out}")
    assert not errors, "\n".join(f"--- {n}\n{e}" for n, e in errors.items())
