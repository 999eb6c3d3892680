"""MQTT input (paho-mqtt 2.x): `{prefix}/+/data` batches in, acks out, node state from the will.

Topic layout: docs/protocol.md section 4. The bridge keeps a persistent session (fixed client
id, clean_session false) so QoS 1 batches published while it was away are delivered when it
comes back (MQTT 5 with a session expiry interval, `session_expiry_s`); paho reconnects by
itself. Two bridges split one broker's nodes by prefix: each subscribes only under its own.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from host_bridge import codec
from host_bridge.config import MqttConfig
from host_bridge.ingest import Inbound, Ingest
from host_bridge.metrics import Counters
from host_bridge.tags import TagStore, now_ms

log = logging.getLogger("host_bridge.mqtt")

MAX_PAYLOAD = codec.MAX_BATCH


class MqttInput:
    def __init__(self, cfg: MqttConfig, ingest: Ingest, tags: TagStore, counters: Counters) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self.tags = tags
        self.counters = counters
        self.prefix = cfg.prefix
        self._levels = len(self.prefix.split("/"))
        self.connected = threading.Event()
        # MQTT 5 by default (session expiry); 3.1.1 for brokers that speak only that (amqtt).
        self._v5 = cfg.protocol == 5
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else False,
        )
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.tls_ca:  # verify the broker's certificate and host name; our cert if configured
            c.tls_set(ca_certs=cfg.tls_ca, certfile=cfg.tls_cert, keyfile=cfg.tls_key,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_socket_open = _nodelay
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.max_queued_messages_set(0)
        self.client = c

    def start(self) -> None:
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            self.client.connect_async(
                self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # -- paho callbacks (paho's network thread) -------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counters.inc("mqtt_connect_refused")
            log.error("broker %s:%d refused the bridge: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        client.subscribe([(f"{self.prefix}/+/data", 1), (f"{self.prefix}/+/state", 1)])
        self.counters.inc("mqtt_connects")
        self.connected.set()
        log.info("connected to broker %s:%d, prefix %s", self.cfg.host, self.cfg.port, self.prefix)

    def _on_connect_fail(self, client, userdata) -> None:
        # TCP refused, or the TLS handshake failed (untrusted certificate, wrong host name)
        self.counters.inc("mqtt_connect_failed")
        n = self.counters.get("mqtt_connect_failed")
        if n & (n - 1) == 0:  # the first, then at powers of two
            log.warning("cannot connect to broker %s:%d (TCP or TLS failure)", self.cfg.host, self.cfg.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.counters.inc("mqtt_disconnects")
        log.warning("disconnected from broker: %s", reason_code)

    def _node_of(self, topic: str) -> tuple[str, str] | None:
        parts = topic.split("/")
        if len(parts) != self._levels + 2:
            return None
        return parts[-2], parts[-1]

    def _on_message(self, client, userdata, msg) -> None:
        where = self._node_of(msg.topic)
        if where is None:
            self.counters.inc("mqtt_bad_topic")
            return
        node_id, kind = where
        if kind == "data":
            if len(msg.payload) > MAX_PAYLOAD:
                self.counters.inc("rejected_too_large")
                self.counters.inc("batches_rejected")
                log.warning("rejected %d-byte message on %s: over %d", len(msg.payload), msg.topic, MAX_PAYLOAD)
                return
            self.ingest.submit(Inbound(bytes(msg.payload), "mqtt", node_id, self._reply, now_ms()))
        elif kind == "state":
            self._on_state(node_id, msg.payload)

    def _on_state(self, node_id: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            state = json.loads(payload.decode("utf-8"))
            online = state["state"] == "online"
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self.counters.inc("mqtt_bad_state")
            log.warning("bad state message from %s: %r", node_id, payload[:80])
            return
        if self.ingest.known_nodes is not None and node_id not in self.ingest.known_nodes:
            self.counters.inc("rejected_unknown_node")
            return
        self.tags.set_online(node_id, online)

    def _reply(self, node_id: str, seq: int, next_seq: int = 0, frontier: bool = False) -> None:
        self.client.publish(f"{self.prefix}/{node_id}/ack", codec.encode_ack(seq, now_ms(), next_seq, frontier), qos=1)


def _nodelay(client, userdata, sock) -> None:
    """paho leaves Nagle on: an ack written right after a PUBACK then waits for the broker's
    delayed ACK (~40 ms per batch; a node's backlog drained 5x slower, bench/bench_drain.py)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # not a TCP socket (e.g. a websocket wrapper)
