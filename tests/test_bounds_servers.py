"""Bounds on the bridge's servers and on message sizes.

Modbus TCP and OPC UA accept at most `max_connections` clients: connection N+1 is closed at
once (and counted for Modbus), the first N keep working, and a slot freed is usable again.
A batch over MAX_BATCH (16384 bytes) is rejected and counted by the bridge; the generated
broker config (max_packet_size) makes the broker drop a client that sends a bigger packet.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import paho.mqtt.client as mqtt
from asyncua import Client as UaClient

from host_bridge.broker_acl import conf_text
from host_bridge.codec import MAX_BATCH, CodecError, decode_batch, encode_batch, encode_record
from host_bridge.config import parse_config
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import free_port, wait_for
from tests.test_security_auth import Client, start_broker

READ_REQ = struct.pack(">HHHBBHH", 7, 0, 6, 1, 4, 0, 4)  # MBAP tid 7, unit 1, fc 4, 4 input registers


def _modbus_read(s: socket.socket) -> bytes:
    s.sendall(READ_REQ)
    return s.recv(256)


def _closed_by_peer(s: socket.socket, timeout: float = 3.0) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_modbus_connection_limit(tmp_path):
    cfg = make_config(tmp_path, ["n1"], modbus_port=free_port())
    cfg.modbus.max_connections = 2
    with BridgeThread(cfg) as br:
        port = br.modbus.port
        a, b = socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port))
        try:
            for s in (a, b):
                s.settimeout(3)
                assert _modbus_read(s)[:2] == b"\x00\x07"
            c = socket.create_connection(("127.0.0.1", port))
            assert _closed_by_peer(c), "connection 3 of 2 stayed open"
            c.close()
            assert br.modbus.stats["connections_refused"] == 1
            assert _modbus_read(a)[:2] == b"\x00\x07"  # the first two still work
            a.close()
            time.sleep(0.3)
            d = socket.create_connection(("127.0.0.1", port))  # a freed slot is usable again
            d.settimeout(3)
            assert _modbus_read(d)[:2] == b"\x00\x07"
            d.close()
        finally:
            a.close()
            b.close()


def test_opcua_connection_limit(tmp_path):
    port = free_port()
    cfg = make_config(tmp_path, ["n1"], opcua_port=port)
    cfg.opcua.max_connections = 2
    with BridgeThread(cfg):
        raw = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            extra = socket.create_connection(("127.0.0.1", port))
            assert _closed_by_peer(extra), "connection 3 of 2 stayed open"
            extra.close()
            assert not _closed_by_peer(raw[0], 0.3)
            raw.pop().close()
            time.sleep(0.3)

            async def read_one():  # a real client gets the freed slot
                async with UaClient(f"opc.tcp://127.0.0.1:{port}", timeout=10) as c:
                    return await c.nodes.server_state.read_value()

            assert asyncio.run(read_one()) == 0  # ServerState.Running
        finally:
            for s in raw:
                s.close()


def test_config_rejects_bad_connection_limits():
    import pytest

    from host_bridge.config import ConfigError

    with pytest.raises(ConfigError, match="modbus.max_connections"):
        parse_config({"modbus": {"max_connections": 0}})
    assert parse_config({"opcua": {"max_connections": 5}}).opcua.max_connections == 5


def test_oversized_batch_is_rejected_and_counted(tmp_path, broker):
    cfg = make_config(tmp_path, ["n1"], mqtt_port=broker.port)
    rec = encode_record(1, 1, 0, 1, 1795300000, 0, [1.0] * 255)  # 1035 bytes
    with BridgeThread(cfg) as br:
        wait_for(br.mqtt.connected.is_set, 15, what="bridge connected")
        c = Client(broker.port)
        try:
            big = b"VB" + bytes(MAX_BATCH)  # one byte over: refused before it is decoded
            assert c.publish("vibekit/n1/data", big) == 0
            ok = encode_batch("n1", [encode_record(s, 1, 0, 1, 1795300000, 0, [1.0] * 255) for s in range(1, 15)])
            assert len(ok) <= MAX_BATCH
            assert c.publish("vibekit/n1/data", ok) == 0
            wait_for(lambda: br.historian.count("n1") == 14, 10, what="the largest legal batch stored")
        finally:
            c.close()
        assert br.counters.get("rejected_too_large") == 1 and br.counters.get("batches_rejected") == 1
    try:
        encode_batch("n1", [rec] * 16)
        raise AssertionError("encode_batch built a batch over MAX_BATCH")
    except CodecError as e:
        assert e.reason == "too_large"
    try:
        decode_batch(b"VB\x01" + bytes(MAX_BATCH))
        raise AssertionError("decode_batch took a batch over MAX_BATCH")
    except CodecError as e:
        assert e.reason == "too_large"


def test_broker_drops_a_client_sending_an_oversized_packet(tmp_path):
    out = tmp_path / "out"
    (out / "mosquitto").mkdir(parents=True)
    port = free_port()
    body = conf_text(out, port=port, bind="127.0.0.1").replace("allow_anonymous false", "allow_anonymous true")
    body = "\n".join(line for line in body.splitlines() if not line.startswith(("password_file", "acl_file")))
    broker = start_broker(tmp_path / "broker", body + "\n", port)
    try:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="big", protocol=mqtt.MQTTv5)
        gone = []
        c.on_disconnect = lambda *a: gone.append(a[3])
        c.connect("127.0.0.1", port)
        c.loop_start()
        try:
            c.publish("vibekit/n1/data", bytes(30000), qos=1)
            wait_for(lambda: gone, 10, what="the broker to drop the client")
        finally:
            c.loop_stop()
    finally:
        broker.stop()
