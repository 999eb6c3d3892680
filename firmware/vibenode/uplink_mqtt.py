# MQTT uplink: umqtt.simple (the mechanism, fetched at install time) plus the policy it
# lacks: socket timeouts on every call, TCP_NODELAY, keepalive pings and a dead-link check,
# reconnect with exponential backoff and jitter, a retained online state with an offline
# last will, a persistent session subscribed to the bridge's ack topic at QoS 1, TLS.
#
# Interface shared with uplink_serial: connected, reconnects, on_ack(seq, time_ms, next_seq, frontier),
# service(), send(batch) -> bool, wait(timeout_ms), close().
import json
import random
import select
import socket
import time

from umqtt import simple

from vibenode.codec import CodecError, decode_ack

from micropython import const

_ETIMEDOUT = const(110)
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)
_PID_WRAP = const(65000)  # umqtt.simple never wraps its packet id (u16 on the wire)


class _Sock:
    """The socket umqtt.simple sees: bounded reads/writes, timestamps for the keepalive.

    umqtt calls setblocking(True) after every check_msg(), which would clear a timeout on
    the raw socket: here that restores the timeout instead. A short read (timeout after
    part of a packet) raises, so umqtt never parses half a packet.
    """

    def __init__(self, link, tls):
        self._link = link
        self._tls = tls
        self._timeout = link.timeout_s
        self.raw = socket.socket()
        self.raw.settimeout(self._timeout)
        try:
            self.raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError) as e:
            link.health.error("mqtt_nodelay", e)
        self._io = self.raw
        self.got = False
        self._blocking = True

    def connect(self, addr):
        self.raw.connect(addr)
        if self._tls is not None:
            self._io = _wrap_tls(self.raw, self._tls, self._link.host)

    def setblocking(self, flag):
        self._blocking = flag
        if self._io is not self.raw:
            self._io.setblocking(flag)
        if flag:
            self.raw.settimeout(self._timeout)
        else:
            self.raw.setblocking(False)

    def read(self, n):
        d = self._io.read(n)
        if d:
            self.got = True
            self._link.rx_ms = time.ticks_ms()
            if self._blocking and len(d) < n:
                raise OSError(_ETIMEDOUT)
        elif d is not None and self._blocking:
            raise OSError(-1)  # peer closed
        return d

    def write(self, buf, n=None):
        if n is None:
            n = len(buf)
            w = self._io.write(buf)
        else:
            w = self._io.write(memoryview(buf)[:n])
        if w is None or w < n:
            raise OSError(_ETIMEDOUT)
        self._link.tx_ms = time.ticks_ms()
        return w

    def close(self):
        try:
            self._io.close()
        finally:
            if self._io is not self.raw:
                self.raw.close()


def _wrap_tls(raw, tls, host):
    try:  # imported here: a build without TLS (Debian's 32-bit unix port) still runs plain MQTT
        import ssl
    except ImportError:
        raise OSError("TLS configured, but this MicroPython build has no ssl module")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.get("ca"):
        with open(tls["ca"], "rb") as f:
            ctx.load_verify_locations(cadata=f.read())
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if tls.get("cert"):
        ctx.load_cert_chain(tls["cert"], tls.get("key"))
    return ctx.wrap_socket(raw, server_hostname=tls.get("server_hostname") or host)


class MqttUplink:
    def __init__(self, cfg, health, boot, board_name, fw_version, now_ms=time.ticks_ms):
        m = cfg["mqtt"]
        self.health = health
        self.node_id = cfg["node_id"]
        self.host = m["host"]
        self.port = m["port"]
        self.client_id = m["client_id"] or self.node_id
        self.user = m["user"]
        self.password = m["password"]
        self.keepalive_s = m["keepalive_s"]
        self.timeout_s = m["timeout_s"]
        self.tls = m["tls"]
        if self.tls is None:
            _BOOT_ONLY.append("_wrap_tls")  # no TLS configured: the node never wraps a socket
        self.backoff_min_ms = int(m["backoff_min_s"] * 1000)
        self.backoff_max_ms = int(m["backoff_max_s"] * 1000)
        base = m["prefix"] + "/" + self.node_id
        self.topic_data = base + "/data"
        self.topic_ack = base + "/ack"
        self.topic_state = base + "/state"
        self.state_online = json.dumps({"state": "online", "boot": boot, "fw": fw_version, "board": board_name})
        self._now = now_ms
        self.on_ack = None
        self.connected = False
        self.connects = 0
        self.reconnects = 0  # successful connects after the first
        self.sent = 0
        self.rx_ms = self.tx_ms = now_ms()
        self._client = None
        self._sock = None  # the _Sock of the current (or last) connection
        self._poller = None
        self._delay_ms = 0
        self._next_try = now_ms()

    # -- link management -------------------------------------------------------------------

    def service(self):
        """Connect when due, keep the link alive; returns connected. Bounded by timeouts."""
        now = self._now()
        if not self.connected:
            if time.ticks_diff(self._next_try, now) <= 0:
                self._connect()
            return self.connected
        if self.keepalive_s:
            ka = self.keepalive_s * 1000
            if time.ticks_diff(now, self.rx_ms) > ka + ka // 2:
                self._drop("mqtt_dead_link", None)  # half-open: nothing heard for 1.5 keepalives
            elif time.ticks_diff(now, self.tx_ms) >= ka // 2:
                try:
                    self._client.ping()
                except Exception as e:
                    self._drop("mqtt_ping", e)
        return self.connected

    def _connect(self):
        c = simple.MQTTClient(self.client_id, self.host, self.port, self.user, self.password, self.keepalive_s)
        c.set_callback(self._on_message)
        c.set_last_will(self.topic_state, '{"state":"offline"}', retain=True, qos=1)
        simple.socket = self  # umqtt.simple opens its socket through us (socket(), getaddrinfo())
        self._client = c
        try:
            c.connect(clean_session=False)
            self.rx_ms = self.tx_ms = self._now()
            c.subscribe(self.topic_ack, qos=1)
            c.publish(self.topic_state, self.state_online, retain=True, qos=1)
        except Exception as e:
            self._sock and self._close_sock()
            self._client = None
            self._fail("mqtt_connect", e)
            return
        self.connected = True
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self._delay_ms = 0
        self._poller = select.poll()
        self._poller.register(self._sock.raw, select.POLLIN)

    # umqtt.simple's socket module: the uplink itself (simple.socket = self in _connect)
    def socket(self):
        self._sock = _Sock(self, self.tls)
        return self._sock

    def getaddrinfo(self, host, port):
        return socket.getaddrinfo(host, port)

    def _fail(self, what, exc):
        self.health.error(what, exc)
        # exponential backoff with jitter: wait in [d/2, d], d doubling up to the maximum
        d = self._delay_ms * 2 if self._delay_ms else self.backoff_min_ms
        if d > self.backoff_max_ms:
            d = self.backoff_max_ms
        self._delay_ms = d
        wait = d // 2 + (random.getrandbits(16) * (d - d // 2)) // 65536
        self._next_try = time.ticks_add(self._now(), wait)

    def _close_sock(self):
        s = self._sock
        self._sock = None
        if s is not None:
            try:
                s.close()
            except Exception as e:
                self.health.error("mqtt_close", e)

    def _drop(self, what, exc):
        """The link failed: close it (the broker publishes our will) and back off."""
        self.connected = False
        self._poller = None
        self._close_sock()
        self._client = None
        self._fail(what, exc)

    # -- data ------------------------------------------------------------------------------

    def send(self, batch):
        """Publish one batch at QoS 1 (returns after PUBACK). False if the link failed."""
        if not self.connected:
            return False
        c = self._client
        if c.pid >= _PID_WRAP:
            c.pid = 0
        try:
            c.publish(self.topic_data, batch, qos=1)
        except Exception as e:
            self._drop("mqtt_publish", e)
            return False
        self.sent += 1
        return True

    def wait(self, timeout_ms):
        """Wait up to timeout_ms for incoming traffic and dispatch it (acks)."""
        if not self.connected:
            if timeout_ms > 0:
                until_try = time.ticks_diff(self._next_try, self._now())
                time.sleep_ms(max(0, min(timeout_ms, until_try)))
            return
        if timeout_ms > 0 and not self._poller.poll(timeout_ms):
            return
        s = self._sock
        try:
            for _ in range(32):  # bounded: never starve the sampling loop
                s.got = False
                self._client.check_msg()
                if not s.got:
                    break
        except Exception as e:
            self._drop("mqtt_receive", e)

    def _on_message(self, topic, msg):
        try:
            a = decode_ack(msg)
        except CodecError as e:
            self.health.error("ack_" + e.reason, None)
            return
        if self.on_ack:
            self.on_ack(*a)  # (acked seq, time_ms or None, RESYNC next_seq or 0, frontier)

    def close(self):
        """Graceful stop: offline state, DISCONNECT (the will is not published)."""
        if self.connected:
            try:
                self._client.publish(self.topic_state, '{"state":"offline"}', retain=True, qos=1)
                self._client.disconnect()
            except Exception as e:
                self.health.error("mqtt_close", e)
        self.connected = False
        self._close_sock()


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = [("MqttUplink", "__init__")]
