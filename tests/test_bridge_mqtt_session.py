"""Bridge MQTT behaviour: persistent session, prefix split between bridges, node state."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt

from host_bridge import codec
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tests.test_bridge_ingest import Node, rec


def _cfg(tmp_path, name, port, nodes, prefix="vibekit"):
    cfg = make_config(tmp_path / name, nodes, mqtt_port=port)
    cfg.mqtt.prefix = prefix
    cfg.mqtt.client_id = f"bridge-{name}"
    return cfg


def test_batches_published_while_bridge_is_down_arrive_after_restart(tmp_path, broker):
    cfg = _cfg(tmp_path, "b", broker.port, ["n1"])
    with BridgeThread(cfg) as bridge:
        assert bridge.mqtt.connected.wait(10)
    node = Node(broker.port, "n1")
    time.sleep(0.2)
    node.send(codec.encode_batch("n1", [rec(1), rec(2)]))  # nobody is listening: the broker queues it
    with BridgeThread(cfg) as bridge:
        wait_for(lambda: 2 in node.acks, what="ack of the batch queued while the bridge was down")
        assert bridge.historian.seqs("n1") == [1, 2]
    node.close()


def test_two_bridges_split_one_broker_by_prefix(tmp_path, broker):
    a = _cfg(tmp_path, "a", broker.port, ["p1", "p2"], prefix="plant/hall1")
    b = _cfg(tmp_path, "b", broker.port, ["p1", "p2"], prefix="plant/hall2")
    with BridgeThread(a) as ba, BridgeThread(b) as bb:
        assert ba.mqtt.connected.wait(10) and bb.mqtt.connected.wait(10)
        n1 = Node(broker.port, "p1", prefix="plant/hall1")
        n2 = Node(broker.port, "p2", prefix="plant/hall2")
        time.sleep(0.3)
        n1.send(codec.encode_batch("p1", [rec(1)]))
        n2.send(codec.encode_batch("p2", [rec(1), rec(2)]))
        wait_for(lambda: n1.acks and n2.acks, what="acks from both bridges")
        time.sleep(0.3)
        assert ba.historian.nodes() == ["p1"] and bb.historian.nodes() == ["p2"]
        assert ba.counters.get("batches_ok") == 1 and bb.counters.get("batches_ok") == 1
        n1.close()
        n2.close()


def test_node_state_from_retained_online_and_last_will(tmp_path, broker):
    cfg = _cfg(tmp_path, "s", broker.port, ["w1"])
    with BridgeThread(cfg) as bridge:
        assert bridge.mqtt.connected.wait(10)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="w1")
        c.will_set("vibekit/w1/state", json.dumps({"state": "offline"}), qos=1, retain=True)
        c.connect("127.0.0.1", broker.port, keepalive=2)
        c.loop_start()
        c.publish("vibekit/w1/state", json.dumps({"state": "online", "boot": 1}), qos=1, retain=True)
        wait_for(lambda: bridge.tags.get("w1").online is True, what="online")
        c.publish("vibekit/w1/state", b"{not json", qos=1)
        wait_for(lambda: bridge.counters.get("mqtt_bad_state") == 1)
        c.loop_stop()
        c.socket().close()  # dies without DISCONNECT: the broker publishes the will
        wait_for(lambda: bridge.tags.get("w1").online is False, timeout=15, what="offline from last will")
