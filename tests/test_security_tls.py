"""TLS between nodes, broker and bridge, with certificates verified on both sides.

A test CA (tests/pki.py) signs the broker's server certificate (broker.vibekit.test and
127.0.0.1) and one client certificate per account. mosquitto runs a TLS listener with
require_certificate plus the generated password file and ACL. The bridge (paho tls_set) and
the virtual node (the firmware's ssl.SSLContext on the MicroPython VM) connect; an untrusted
CA, a client certificate from another CA, no client certificate, or a wrong host name fails,
on the bridge's side and on the node's. No password or key appears in a log.
"""

from __future__ import annotations

import ssl
import time

import pytest

from host_bridge.broker_acl import conf_text, load_credentials, write_broker_files
from host_bridge.config import MqttConfig, parse_config
from host_bridge.inputs.mqtt import MqttInput
from host_bridge.metrics import Counters
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import free_port, wait_for
from tests.pki import TestCA
from tests.test_security_auth import Client, LogCapture, assert_no_secrets, batch, start_broker
from tools.virtual_node import VirtualNode

NODES = ["t1", "t2", "t3", "t4"]


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca = TestCA(d / "pki")
    rogue = TestCA(d / "rogue", name="rogue-ca")
    server = ca.issue("broker", dns=["broker.vibekit.test"], ips=["127.0.0.1"], server=True)
    certs = {n: ca.issue(n) for n in [*NODES, "vibekit-bridge"]}
    rogue_client = rogue.issue("t3")
    cfg = parse_config({"nodes": [{"id": n} for n in NODES]})
    paths = write_broker_files(cfg, d / "out")
    creds = load_credentials(paths["credentials"])
    port = free_port()
    body = conf_text(d / "out", port=port, bind="127.0.0.1",
                     tls={"ca": str(ca.cert), "cert": str(server.cert), "key": str(server.key)})
    broker = start_broker(d / "broker", body, port)
    try:
        yield {"dir": d, "ca": ca, "rogue": rogue, "certs": certs, "rogue_client": rogue_client,
               "creds": creds, "port": port, "broker": broker}
    finally:
        broker.stop()


def _mqtt_input(site, host="127.0.0.1", ca=None, cert=None) -> tuple[MqttInput, Counters]:
    c = cert or site["certs"]["vibekit-bridge"]
    cfg = MqttConfig(host=host, port=site["port"], client_id=f"b-{time.time_ns()}", username="vibekit-bridge",
                     password=site["creds"]["vibekit-bridge"], tls_ca=str(ca or site["ca"].cert),
                     tls_cert=str(c.cert), tls_key=str(c.key))
    counters = Counters()
    return MqttInput(cfg, None, None, counters), counters


def test_bridge_and_node_connect_over_verified_tls(tls_site, tmp_path):
    s = tls_site
    bc = s["certs"]["vibekit-bridge"]
    cfg = make_config(tmp_path, NODES, mqtt_port=s["port"])
    m = cfg.mqtt
    m.username, m.password = "vibekit-bridge", s["creds"]["vibekit-bridge"]
    m.tls_ca, m.tls_cert, m.tls_key = str(s["ca"].cert), str(bc.cert), str(bc.key)
    nc = s["certs"]["t1"]
    with LogCapture(tmp_path / "bridge.log") as logs, BridgeThread(cfg) as br:
        wait_for(br.mqtt.connected.is_set, 15, what="bridge connected over TLS")
        node = VirtualNode(tmp_path / "t1", "t1", mqtt_port=s["port"], interval_s=0.5, window_n=256,
                           config={"mqtt": {"user": "t1", "password": s["creds"]["t1"],
                                            "tls": {"ca": str(s["ca"].cert_der), "cert": str(nc.cert_der),
                                                    "key": str(nc.key_der)}}})
        with node:
            try:
                wait_for(lambda: br.historian.count("t1") >= 2, 60, what="the TLS node's records stored")
            except TimeoutError:
                raise AssertionError(node.log_text()[-1500:]) from None
            # acks flow back over TLS: the node frees its journal (journal_depth in status falls)
            wait_for(lambda: br.counters.get("acks_sent") >= 2, 10, what="acks sent")
        assert "error" not in node.log_text()
    assert_no_secrets({"bridge log": logs.text(), "node log": node.log_text(),
                       "mosquitto log": s["broker"].log.read_text()},
                      [s["creds"]["vibekit-bridge"], s["creds"]["t1"], nc.key.read_text().splitlines()[1]])


@pytest.mark.parametrize("case", ["untrusted_ca", "rogue_client_cert", "wrong_host"])
def test_bridge_refuses_or_is_refused_with_a_wrong_certificate(tls_site, case):
    s = tls_site
    if case == "untrusted_ca":  # the broker's certificate is not signed by the CA we trust
        inp, counters = _mqtt_input(s, ca=s["rogue"].cert)
    elif case == "rogue_client_cert":  # our certificate is not signed by the broker's CA
        inp, counters = _mqtt_input(s, cert=s["rogue_client"])
    else:  # the broker's certificate does not name "localhost"
        inp, counters = _mqtt_input(s, host="localhost")
    inp.start()
    try:
        wait_for(lambda: counters.get("mqtt_connect_failed") + counters.get("mqtt_disconnects") >= 1, 15,
                 what="the TLS connection to fail")
        time.sleep(0.5)
        assert not inp.connected.is_set() and counters.get("mqtt_connects") == 0
    finally:
        inp.client.disconnect()
        inp.client.loop_stop()


def test_client_without_certificate_is_refused(tls_site):
    s = tls_site
    c = Client(s["port"], "t2", s["creds"]["t2"], tls={"ca_certs": str(s["ca"].cert)})
    try:
        assert not c.ok
    finally:
        c.close()
    # a plain-TCP client gets nowhere either
    plain = Client(s["port"], "t2", s["creds"]["t2"])
    try:
        assert not plain.ok
    finally:
        plain.close()
    # and the correct client certificate works (the negative cases are not a broken broker)
    good = s["certs"]["t2"]
    ok = Client(s["port"], "t2", s["creds"]["t2"], tls={"ca_certs": str(s["ca"].cert), "certfile": str(good.cert),
                                                        "keyfile": str(good.key), "cert_reqs": ssl.CERT_REQUIRED})
    try:
        assert ok.ok and ok.publish("vibekit/t2/data", batch("t2")) == 0
    finally:
        ok.close()


def test_node_refuses_or_is_refused_with_a_wrong_certificate(tls_site, tmp_path):
    s = tls_site
    ca, rogue = str(s["ca"].cert_der), str(s["rogue"].cert_der)  # the node reads DER
    good = {n: s["certs"][n] for n in NODES}
    rc = s["rogue_client"]
    cases = {
        # node trusts another CA: the broker's certificate fails verification on the node
        "t2": {"ca": rogue, "cert": str(good["t2"].cert_der), "key": str(good["t2"].key_der)},
        # node's certificate is from another CA: the broker refuses it
        "t3": {"ca": ca, "cert": str(rc.cert_der), "key": str(rc.key_der)},
        # node expects another host name than the broker's certificate carries
        "t4": {"ca": ca, "cert": str(good["t4"].cert_der), "key": str(good["t4"].key_der),
               "server_hostname": "plc.example"},
    }
    spy = Client(s["port"], "vibekit-bridge", s["creds"]["vibekit-bridge"],
                 tls={"ca_certs": str(s["ca"].cert), "certfile": str(s["certs"]["vibekit-bridge"].cert),
                      "keyfile": str(s["certs"]["vibekit-bridge"].key)})
    nodes = [VirtualNode(tmp_path / n, n, mqtt_port=s["port"], interval_s=0.5, window_n=256,
                         config={"mqtt": {"user": n, "password": s["creds"][n], "tls": t}})
             for n, t in cases.items()]
    try:
        assert spy.ok
        spy.subscribe("vibekit/+/data")
        for n in nodes:
            n.start()
        for n in nodes:
            wait_for(lambda n=n: n.log_text().count("error mqtt_connect") >= 2, 40,
                     what=f"{n.node_id} to fail its TLS connection twice; log:\n{n.log_text()[-800:]}")
        assert [t for t, _ in spy.messages if not t.endswith("/t2/data")] == []
    finally:
        for n in nodes:
            n.close()
        spy.close()
