"""Broker authentication and ACLs (host-bridge broker-config), and the bridge's own check.

A real mosquitto runs the generated password file + ACL: a node's account may publish only its
own data/state and read only its own acks. A spoofed node (node A's credentials on node B's
topics) is refused by the broker and never reaches the bridge; a forged ack for B is refused
too. Behind a misconfigured broker (anonymous, no ACL) the bridge still rejects and counts a
batch whose node id differs from the topic's, and unknown nodes. The virtual node (firmware on
the VM) logs in with its own password; no password appears in any log.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from host_bridge.broker_acl import conf_text, load_credentials
from host_bridge.cli import main as cli_main
from host_bridge.codec import encode_ack, encode_batch, encode_record
from tests.bridge_harness import BridgeThread, make_config
from tests.brokers import Broker
from tests.netutil import free_port, wait_for
from tools.virtual_node import VirtualNode

NODES = ["nA", "nB", "nV"]


# ---- helpers shared with test_security_tls -------------------------------------------------


def batch(node_id: str, seq: int = 1, n: int = 1) -> bytes:
    now = time.time()
    recs = [encode_record(seq + i, 1, 0, 1, int(now), 0, [25.0, 0.1, 0.2, 0.3]) for i in range(n)]
    return encode_batch(node_id, recs)


def root_prelude() -> str:
    """As root, mosquitto drops to the `mosquitto` user, which cannot read a test's 0700 temp
    dirs; on a site the files are root:mosquitto 0640 instead (docs/security.md)."""
    return "user root\n" if os.geteuid() == 0 else ""


def start_broker(workdir: Path, body: str, port: int | None = None) -> Broker:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(root_prelude() + "log_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n"
                    "log_type information\n" + body)
    return Broker(port or 0, conf, workdir / "mosquitto.log").start()


class Client:
    """A paho MQTT v5 client that records connect results, PUBACK and SUBACK reason codes."""

    def __init__(self, port: int, user: str | None = None, password: str | None = None, tls=None,
                 client_id: str | None = None, host: str = "127.0.0.1") -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{time.time_ns()}",
                             protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(user, password)
        if tls:
            self.c.tls_set(**tls)
        self.connack = None
        self.failed = threading.Event()
        self.done = threading.Event()
        self.pubacks: dict[int, int] = {}
        self.subacks: list[int] = []
        self.messages: list[tuple[str, bytes]] = []
        self.c.on_connect = self._on_connect
        self.c.on_connect_fail = lambda c, u: (self.failed.set(), self.done.set())
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.done.set()
        self.c.on_publish = lambda c, u, mid, rc, props: self.pubacks.__setitem__(mid, rc.value)
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.extend(r.value for r in rcs)
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.c.connect_async(host, port, keepalive=10)
        self.c.loop_start()
        self.done.wait(10)

    def _on_connect(self, c, u, flags, rc, props) -> None:
        self.connack = rc.value
        self.done.set()

    @property
    def ok(self) -> bool:
        return self.connack == 0

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """QoS 1 publish; returns the PUBACK reason code (0 ok, 135 not authorized)."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: info.mid in self.pubacks, 10, what=f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        n = len(self.subacks)
        self.c.subscribe(topic, qos=1)
        wait_for(lambda: len(self.subacks) > n, 10, what=f"SUBACK for {topic}")
        return self.subacks[-1]

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


class LogCapture:
    """Every log record of the bridge process (all loggers, DEBUG) into a file, for greps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler = logging.FileHandler(path)
        self.handler.setLevel(logging.DEBUG)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.root = logging.getLogger()
        self.level = self.root.level

    def __enter__(self) -> LogCapture:
        self.root.addHandler(self.handler)
        self.root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc) -> None:
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.level)
        self.handler.close()

    def text(self) -> str:
        self.handler.flush()
        return self.path.read_text(errors="replace")


def assert_no_secrets(texts: dict[str, str], secrets: list[str]) -> None:
    for name, text in texts.items():
        for s in secrets:
            assert s not in text, f"a password appears in {name}"


# ---- the authenticated site --------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("site")
    toml = d / "bridge.toml"
    toml.write_text("".join(f'[[nodes]]\nid = "{n}"\n' for n in NODES))
    assert cli_main(["broker-config", "--config", str(toml), "--out", str(d / "out")]) == 0
    creds = load_credentials(d / "out" / "credentials.json")
    port = free_port()
    body = conf_text(d / "out", port=port, bind="127.0.0.1")
    broker = start_broker(d / "broker", body, port)
    logs = LogCapture(d / "bridge.log").__enter__()
    cfg = make_config(d, NODES, mqtt_port=port)
    cfg.mqtt.username, cfg.mqtt.password = "vibekit-bridge", creds["vibekit-bridge"]
    bt = BridgeThread(cfg)
    try:
        br = bt.__enter__()
        wait_for(br.mqtt.connected.is_set, 15, what="bridge connected with its account")
        yield {"dir": d, "creds": creds, "broker": broker, "bridge": br, "logs": logs, "port": port}
    finally:
        bt.__exit__(None, None, None)
        logs.__exit__(None, None, None)
        broker.stop()


def test_broker_config_files(site, tmp_path):
    out = site["dir"] / "out"
    passwd = (out / "mosquitto" / "passwd").read_text()
    creds = site["creds"]
    assert set(creds) == {"vibekit-bridge", *NODES}
    for user, pw in creds.items():
        assert f"{user}:$7$101$" in passwd
        assert pw not in passwd
    assert stat.S_IMODE((out / "credentials.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "mosquitto" / "passwd").stat().st_mode) == 0o640
    acl = (out / "mosquitto" / "acl").read_text()
    assert "user nA\ntopic write vibekit/nA/data\ntopic write vibekit/nA/state\ntopic read vibekit/nA/ack\n" in acl
    # a second run keeps every password and adds one for a new node
    toml = tmp_path / "more.toml"
    toml.write_text("".join(f'[[nodes]]\nid = "{n}"\n' for n in [*NODES, "nNew"]))
    copy = tmp_path / "out"
    copy.mkdir()
    (copy / "credentials.json").write_text((out / "credentials.json").read_text())
    assert cli_main(["broker-config", "-c", str(toml), "-o", str(copy)]) == 0
    again = load_credentials(copy / "credentials.json")
    assert {k: again[k] for k in creds} == creds and again["nNew"] not in creds.values()


def test_wrong_password_and_anonymous_are_refused(site):
    bad = Client(site["port"], "nA", "not-the-password")
    anon = Client(site["port"])
    try:
        assert bad.connack == 135 and anon.connack == 135  # Not authorized
    finally:
        bad.close()
        anon.close()


def test_spoofed_node_is_refused_by_the_broker(site):
    br = site["bridge"]
    creds = site["creds"]
    a = Client(site["port"], "nA", creds["nA"])
    spy = Client(site["port"], "nA", creds["nA"], client_id="nA-spy")
    b = Client(site["port"], "nB", creds["nB"])
    try:
        assert a.ok and spy.ok and b.ok
        assert b.subscribe("vibekit/nB/ack") == 1
        # mosquitto 2.0 grants the subscription but delivers nothing the ACL does not allow
        spy.subscribe("vibekit/nB/ack")
        # node A speaking for node B: its batch, A's batch on B's topic, B's state, a forged ack
        assert a.publish("vibekit/nB/data", batch("nB", 1)) == 135  # Not authorized
        assert a.publish("vibekit/nB/data", batch("nA", 1)) == 135
        assert a.publish("vibekit/nB/state", b'{"state":"offline"}', retain=True) == 135
        assert a.publish("vibekit/nB/ack", encode_ack(99, None)) == 135  # would free B's journal
        assert a.publish("vibekit/nA/ack", encode_ack(99, None)) == 135  # nodes never write acks
        assert a.publish("vibekit/other/thing", b"x") == 135
        # its own topics work, on the same connection, after the refused ones
        assert a.publish("vibekit/nA/data", batch("nA", 7)) == 0
        assert b.publish("vibekit/nB/data", batch("nB", 3)) == 0
        wait_for(lambda: br.historian.count("nA") == 1 and br.historian.count("nB") == 1, 10,
                 what="both nodes' own batches stored")
        wait_for(lambda: any(t == "vibekit/nB/ack" for t, _ in b.messages), 10, what="B's ack")
        time.sleep(0.3)
        assert br.historian.seqs("nB") == [3]  # the spoofed seq 1 never arrived
        c = br.counters.snapshot()
        # the spoofed messages never reached the bridge: nothing rejected there, nothing stored
        assert c.get("batches_rejected", 0) == 0 and c.get("records_in") == 2, c
        assert spy.messages == []  # A never saw B's ack
    finally:
        for cl in (a, spy, b):
            cl.close()


def test_virtual_node_logs_in_with_its_own_password(site):
    br = site["bridge"]
    d = site["dir"]
    creds = site["creds"]
    good = VirtualNode(d / "nV", "nV", mqtt_port=site["port"], interval_s=0.5, window_n=256, odr_hz=3200,
                       config={"mqtt": {"user": "nV", "password": creds["nV"]}})
    # node B's firmware with node A's password: the broker refuses the login
    wrong = VirtualNode(d / "nB", "nB", mqtt_port=site["port"], interval_s=0.5, window_n=256,
                        config={"mqtt": {"user": "nB", "password": creds["nA"]}})
    before = br.historian.count("nB")
    with good, wrong:
        wait_for(lambda: br.historian.count("nV") >= 2, 60, what="the virtual node's records stored")
        wait_for(lambda: "error mqtt_connect" in wrong.log_text(), 30, what="the refused node counts its failure")
        time.sleep(1.0)
        assert br.historian.count("nB") == before
    bridge_log = site["logs"].text()
    assert "connected to broker" in bridge_log
    assert_no_secrets(
        {"bridge log": bridge_log, "nV node log": good.log_text(), "nB node log": wrong.log_text(),
         "mosquitto log": site["broker"].log.read_text()},
        list(creds.values()),
    )


# ---- a misconfigured broker: anonymous, no ACL ------------------------------------------------


def test_bridge_rejects_spoofing_behind_an_open_broker(tmp_path, broker):
    cfg = make_config(tmp_path, ["nA", "nB"], mqtt_port=broker.port)
    with BridgeThread(cfg) as br:
        wait_for(br.mqtt.connected.is_set, 15, what="bridge connected")
        anyone = Client(broker.port)
        try:
            assert anyone.ok  # the broker lets anyone in and publish anywhere
            assert anyone.publish("vibekit/nB/data", batch("nA", 1)) == 0
            assert anyone.publish("vibekit/nX/data", batch("nX", 1)) == 0
            assert anyone.publish("vibekit/nB/data", batch("nB", 5)) == 0
            wait_for(lambda: br.historian.count("nB") == 1, 10, what="the honest batch stored")
        finally:
            anyone.close()
        c = br.counters.snapshot()
        assert c.get("rejected_node_mismatch") == 1, c
        assert c.get("rejected_unknown_node") == 1, c
        assert c.get("batches_rejected") == 2, c
        assert br.historian.count("nA") == 0 and br.historian.count("nX") == 0
        assert br.historian.seqs("nB") == [5]
