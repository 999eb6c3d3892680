"""The bridge's inputs, ingest and historian against a real mosquitto and a real pty."""

from __future__ import annotations

import os
import time
import tty

import paho.mqtt.client as mqtt
import pytest

from host_bridge import codec
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for

T0 = 1795300000


def rec(seq, flags=1, temp=20.0):
    return codec.encode_record(seq, 1, 0, flags, T0 + seq, 0, [temp, 0.1, 0.2, 0.3])


class Node:
    """A scripted node speaking the protocol over paho (stands in for firmware here)."""

    def __init__(self, port, node_id, prefix="vibekit"):
        self.acks: list[int] = []
        self.node_id, self.prefix = node_id, prefix
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=node_id)
        self.c.on_message = lambda c, u, m: self.acks.append(codec.decode_ack(m.payload).acked_seq)
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"{prefix}/{node_id}/ack", 1)
        self.c.loop_start()

    def send(self, payload: bytes, topic_node=None):
        self.c.publish(f"{self.prefix}/{topic_node or self.node_id}/data", payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_mqtt_batches_stored_once_acked_and_bad_input_counted(tmp_path, broker):
    cfg = make_config(tmp_path, ["n1", "n2"], mqtt_port=broker.port)
    with BridgeThread(cfg) as bridge:
        assert bridge.mqtt.connected.wait(10)
        node = Node(broker.port, "n1")
        time.sleep(0.3)
        node.send(codec.encode_batch("n1", [rec(1), rec(2), rec(3)]))
        wait_for(lambda: 3 in node.acks, what="ack 3")
        # a resend (lost ack) is stored once and acked again
        node.send(codec.encode_batch("n1", [rec(2), rec(3)]))
        wait_for(lambda: node.acks.count(3) == 2, what="second ack 3")
        # garbage, a spoofed node id, an unknown node, an oversize message: counted, no crash
        node.send(b"\x00garbage")
        node.send(codec.encode_batch("n2", [rec(9)]))  # published on n1's topic
        node.send(codec.encode_batch("zz", [rec(1)]), topic_node="zz")
        node.send(b"VB" + b"\x01" * 20000)
        node.send(codec.encode_batch("n1", [rec(4, temp=33.0)]))
        wait_for(lambda: 4 in node.acks, what="ack 4 after bad input")
        node.close()
        c = bridge.counters.snapshot()
        assert bridge.historian.seqs("n1") == [1, 2, 3, 4]
        assert bridge.historian.seqs("n2") == []
        assert c["records_duplicate"] == 2
        assert c["rejected_truncated"] + c.get("rejected_bad_magic", 0) >= 1
        assert c["rejected_node_mismatch"] == 1
        assert c["rejected_unknown_node"] == 1
        assert c["rejected_too_large"] == 1
        assert bridge.tags.value("n1", "temperature") == pytest.approx(33.0)
        assert 9 not in node.acks


def test_historical_record_never_overwrites_newer_live_value(tmp_path, broker):
    cfg = make_config(tmp_path, ["n1"], mqtt_port=broker.port)
    with BridgeThread(cfg) as bridge:
        assert bridge.mqtt.connected.wait(10)
        node = Node(broker.port, "n1")
        time.sleep(0.3)
        node.send(codec.encode_batch("n1", [rec(10, temp=50.0)]))
        wait_for(lambda: 10 in node.acks)
        node.send(codec.encode_batch("n1", [rec(5, flags=3, temp=1.0)]))  # older, historical
        wait_for(lambda: 5 in node.acks)
        node.close()
        assert bridge.tags.value("n1", "temperature") == pytest.approx(50.0)
        hist = bridge.historian.history("n1", 0, 2**62)
        assert [r.seq for r in hist] == [5, 10]  # source-time order, backfill included


def test_serial_hello_batches_acks_and_garbage(tmp_path):
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    path = os.ttyname(slave)
    cfg = make_config(tmp_path, ["s1"], serial=[path])
    rx = codec.FrameDecoder()
    acks: list[int] = []

    def read_acks():
        import select

        while select.select([master], [], [], 0)[0]:
            for t, p in rx.feed(os.read(master, 4096)):
                assert t == codec.FRAME_ACK
                acks.append(codec.decode_ack(p).acked_seq)
        return acks

    with BridgeThread(cfg) as bridge:
        assert bridge.serial[0].wait_connected(10)
        os.write(master, b"boot noise\r\n" + codec.encode_frame(codec.FRAME_HELLO, b'{"node":"s1","boot":1}'))
        wait_for(lambda: read_acks() and acks[-1] == 0, what="hello ack")
        frame = codec.encode_frame(codec.FRAME_BATCH, codec.encode_batch("s1", [rec(1), rec(2)]))
        os.write(master, os.urandom(3000).replace(b"\xa5", b"") + frame[:10])
        os.write(master, frame[10:] + b"Traceback junk" + frame)
        wait_for(lambda: read_acks().count(2) == 2, what="two acks of seq 2")
        assert bridge.historian.seqs("s1") == [1, 2]
        assert bridge.counters.get("serial_garbage_bytes") >= 3000 - 20
        # a spoofed id on a session that said hello as s1
        os.write(master, codec.encode_frame(codec.FRAME_BATCH, codec.encode_batch("s2", [rec(3)])))
        wait_for(lambda: bridge.counters.get("rejected_node_mismatch") == 1)
    os.close(master)
    os.close(slave)


def test_sequence_gaps_are_counted_per_node(tmp_path, broker):
    cfg = make_config(tmp_path, ["n1"], mqtt_port=broker.port)
    with BridgeThread(cfg) as bridge:
        assert bridge.mqtt.connected.wait(10)
        node = Node(broker.port, "n1")
        time.sleep(0.3)
        node.send(codec.encode_batch("n1", [rec(5), rec(6)]))  # first sight: no gap
        node.send(codec.encode_batch("n1", [rec(9), rec(10), rec(14)]))  # 7, 8 and 11-13 missing
        wait_for(lambda: 14 in node.acks)
        node.send(codec.encode_batch("n1", [rec(9)]))  # a resend is no gap
        wait_for(lambda: node.acks.count(9) == 1 and len(node.acks) == 3)
        node.close()
        assert bridge.counters.get("seq_gaps") == 5
        assert bridge.tags.get("n1").gaps == 5
    # after a bridge restart the baseline comes from the historian
    with BridgeThread(cfg) as bridge:
        assert bridge.mqtt.connected.wait(10)
        node = Node(broker.port, "n1")
        time.sleep(0.3)
        node.send(codec.encode_batch("n1", [rec(16)]))
        wait_for(lambda: 16 in node.acks)
        node.close()
        assert bridge.counters.get("seq_gaps") == 1
