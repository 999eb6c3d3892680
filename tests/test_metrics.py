"""Prometheus /metrics and the JSON API, scraped from a running bridge fed over real MQTT."""

from __future__ import annotations

import base64
import re
import time

import paho.mqtt.client as mqtt
import pytest

from host_bridge import codec
from host_bridge.config import ConfigError, WebConfig, parse_config
from host_bridge.model import FLAG_CLOCK_SYNCED, KIND_STATUS
from tests.netutil import free_port, wait_for
from tests.opsdata import feed, get, get_json, measurement, status, web_bridge

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    """A strict little parser of the text format: every line is a comment or a valid sample."""
    out: dict[tuple[str, frozenset], float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, typ = line.split()[2:4]
            assert typ in ("counter", "gauge"), line
            assert name not in typed, f"family declared twice: {name}"
            typed.add(name)
            continue
        if line.startswith("# HELP ") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        name, _, labels, value = m.groups()
        assert name in typed, f"sample before its TYPE: {line}"
        lab = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        out[(name, lab)] = float(value)
    return out


def metric(samples, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def _batch(node: str, recs) -> bytes:
    return codec.encode_batch(node, [codec.encode_record(r.seq, r.boot, r.kind, r.flags, r.ts_s, r.ts_ms, r.values)
                                     for r in recs])


def test_metrics_scrape_counts_what_the_bridge_did(tmp_path, broker):
    t = time.time()
    port = free_port()
    with web_bridge(tmp_path, ["pump-1", "fan-2"], mqtt_port=broker.port, modbus_port=port) as (bridge, url):
        wait_for(lambda: bridge.mqtt.connected.is_set(), 10, what="bridge on the broker")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="metrics-test")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            good = [measurement("pump-1", s, t - 10 + s, vel=2.0 + s, zone=2) for s in (1, 2, 3)]
            good.append(status("pump-1", 4, t, backlog=17, drops=2))
            pub.publish("vibekit/pump-1/data", _batch("pump-1", good), qos=1).wait_for_publish(5)
            # a resend (duplicates), a gap (seq 5..6 missing), and a corrupted batch
            pub.publish("vibekit/pump-1/data", _batch("pump-1", good[:2]), qos=1).wait_for_publish(5)
            pub.publish("vibekit/pump-1/data", _batch("pump-1", [measurement("pump-1", 7, t + 1, vel=3.1)]),
                        qos=1).wait_for_publish(5)
            bad = bytearray(_batch("pump-1", [measurement("pump-1", 8, t + 2)]))
            bad[-1] ^= 0xFF
            pub.publish("vibekit/pump-1/data", bytes(bad), qos=1).wait_for_publish(5)
            wait_for(lambda: bridge.counters.get("batches_rejected") == 1
                     and bridge.counters.get("records_in") == 7, 10, what="ingest of the four batches")
        finally:
            pub.loop_stop()
            pub.disconnect()

        # one Modbus read, so the output's request counter moves
        from pymodbus.client import ModbusTcpClient

        mb = ModbusTcpClient("127.0.0.1", port=port)
        assert mb.connect()
        assert not mb.read_input_registers(0, count=10, device_id=1).isError()
        mb.close()

        code, body, headers = get(url + "/metrics")
        assert code == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        s = parse_exposition(body.decode())

    assert metric(s, "vibekit_records_in_total") == 7
    assert metric(s, "vibekit_records_stored_total") == 5
    assert metric(s, "vibekit_records_duplicate_total") == 2
    assert metric(s, "vibekit_batches_rejected_total") == 1
    assert metric(s, "vibekit_rejected_total", reason="bad_crc") == 1
    assert metric(s, "vibekit_node_gaps_total", node="pump-1") == 2
    assert metric(s, "vibekit_node_last_seq", node="pump-1") == 7
    assert metric(s, "vibekit_node_journal_depth", node="pump-1") == 17
    assert metric(s, "vibekit_node_journal_dropped", node="pump-1") == 2
    assert metric(s, "vibekit_node_up", node="pump-1") == 1
    assert metric(s, "vibekit_node_quality", node="pump-1") == 0
    assert 0 <= metric(s, "vibekit_node_age_seconds", node="pump-1") < 30
    assert metric(s, "vibekit_node_velocity_rms_mm_per_second", node="pump-1", axis="x") == pytest.approx(3.1, rel=1e-6)
    # a configured node that never sent anything: waiting for data, age unknown
    assert metric(s, "vibekit_node_quality", node="fan-2") == 3
    assert metric(s, "vibekit_node_age_seconds", node="fan-2") != metric(s, "vibekit_node_age_seconds", node="fan-2")
    assert metric(s, "vibekit_modbus_requests_total") >= 1
    assert metric(s, "vibekit_events_total", event="mqtt_connects") >= 1


def test_status_api_and_trend_api(tmp_path):
    t = time.time()
    with web_bridge(tmp_path, [{"id": "pump-1", "site": "p1", "area": "h2", "asset": "P-101",
                                "iso_limits": [1.4, 2.8, 4.5]}, "fan-2"]) as (bridge, url):
        recs = [measurement("pump-1", s, t - 100 + s * 10, vel=s * 0.5, zone=3) for s in range(1, 11)]
        feed(bridge, recs + [status("pump-1", 11, t, backlog=5)])
        snap = get_json(url + "/api/status")
        trend = get_json(url + "/api/trend?node=pump-1&minutes=10")
        few = get_json(url + "/api/trend?node=pump-1&minutes=10&points=3")
        assert get(url + "/api/trend?node=nope")[0] == 404
        assert get(url + "/api/trend?node=pump-1&minutes=abc")[0] == 400
        assert get(url + "/api/status", {})[0] == 200
        assert get(url + "/nothing")[0] == 404
        assert get(url + "/healthz")[1] == b"ok\n"
    nodes = {n["id"]: n for n in snap["nodes"]}
    assert set(nodes) == {"pump-1", "fan-2"}
    p = nodes["pump-1"]
    assert (p["asset"], p["zone"], p["backlog"], p["quality"], p["online"]) == ("P-101", "C", 5, "good", True)
    assert p["iso_limits"] == [1.4, 2.8, 4.5]
    assert p["values"]["vel_rms_x"] == pytest.approx(5.0)
    assert nodes["fan-2"]["quality"] == "initial" and nodes["fan-2"]["values"] == {}
    assert trend["records"] == 10 and len(trend["t"]) == 10
    assert trend["series"]["vel_rms_x"] == pytest.approx([s * 0.5 for s in range(1, 11)])
    assert len(few["t"]) <= 4 and max(few["series"]["vel_rms_x"]) == pytest.approx(5.0)  # max survives thinning


def test_basic_auth_when_configured(tmp_path):
    web = WebConfig(enabled=True, host="127.0.0.1", port=free_port(), username="op", password="s3cret")
    with web_bridge(tmp_path, ["pump-1"], web=web) as (_bridge, url):
        code, _, headers = get(url + "/metrics")
        assert code == 401 and headers["WWW-Authenticate"].startswith("Basic")
        wrong = base64.b64encode(b"op:nope").decode()
        assert get(url + "/api/status", {"Authorization": f"Basic {wrong}"})[0] == 401
        good = base64.b64encode(b"op:s3cret").decode()
        assert get(url + "/api/status", {"Authorization": f"Basic {good}"})[0] == 200
        assert get(url + "/healthz")[0] == 200  # liveness needs no credentials


def test_web_config_refuses_open_non_loopback():
    with pytest.raises(ConfigError) as e:
        parse_config({"web": {"host": "0.0.0.0"}}, "site.toml")
    assert "web.host" in str(e.value) and "username" in str(e.value)
    with pytest.raises(ConfigError, match="web.password"):
        parse_config({"web": {"username": "op"}}, "site.toml")
    cfg = parse_config({"web": {"host": "0.0.0.0", "username": "op", "password": "x"}}, "site.toml")
    assert cfg.web.host == "0.0.0.0"
    assert parse_config({}, "x").web.host == "127.0.0.1"


def test_web_port_in_use_does_not_stop_the_bridge(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        web = WebConfig(enabled=True, host="127.0.0.1", port=taken)
        from tests.bridge_harness import BridgeThread, make_config

        cfg = make_config(tmp_path, ["pump-1"])
        cfg.web = web
        with BridgeThread(cfg) as bridge:
            assert bridge.web.port is None
            assert bridge.counters.get("web_bind_failed") == 1
            feed(bridge, [measurement("pump-1", 1, time.time())])
            assert bridge.tags.get("pump-1").last_seq == 1


def test_status_kind_constant_matches():
    # the status test record builder follows the protocol's kind 1 layout
    r = status("n", 1, 0, backlog=3, drops=1)
    assert r.kind == KIND_STATUS and r.flags == FLAG_CLOCK_SYNCED
    assert r.named()["journal_depth"] == 3 and r.named()["journal_dropped"] == 1
