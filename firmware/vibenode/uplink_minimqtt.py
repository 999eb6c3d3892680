# MQTT uplink for CircuitPython: adafruit_minimqtt (the mechanism, installed with circup or
# from PyPI, never copied here) plus the same policy as uplink_mqtt.py: no call blocks longer
# than timeout_s, TCP_NODELAY, keepalive pings and a dead-link check, reconnect with
# exponential backoff and jitter, a retained online state with an offline last will, a
# persistent session subscribed to the bridge's ack topic at QoS 1, TLS.
#
# Same interface as uplink_mqtt.MqttUplink, so node.py uses either: connected, reconnects,
# on_ack(seq, time_ms, next_seq, frontier), service(), send(batch) -> bool, wait(timeout_ms), close().
#
# The socket pool is the port's (socketpool.SocketPool(wifi.radio) on a board, the `socket`
# module on CPython). minimqtt sees it through _Pool, whose sockets keep their own timeouts:
# a wait for the next packet ends at our deadline, a read inside a packet or a write gets
# timeout_s, so minimqtt's own (1 s granular, keep_alive long) waits never decide how long the
# node sits in the uplink. minimqtt's connect retries (with sleeps up to 32 s) are turned off:
# one attempt per service(), the backoff is ours.
import json
import random

try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:  # CircuitPython: no ticks in time (ports/circuitpython.py installs them)
    import time as _t

    from adafruit_ticks import ticks_add, ticks_diff, ticks_ms

    def sleep_ms(ms):
        _t.sleep(ms / 1000)


import adafruit_minimqtt.adafruit_minimqtt as minimqtt
from adafruit_connection_manager import get_connection_manager

from vibenode.codec import CodecError, decode_ack

_ECONNRESET = 104
_IPPROTO_TCP = 6
_TCP_NODELAY = 1
_SOCKET_TIMEOUT = 0.01  # minimqtt's loop() granularity; our sockets ignore it (see _Sock)
_OFFLINE = '{"state":"offline"}'


class _Sock:
    """A pool socket as minimqtt sees it: our timeouts, rx/tx timestamps, peer close raised.

    It follows MQTT framing (fixed header, remaining length, body) in what minimqtt reads,
    so it knows when minimqtt waits for the start of a packet (bounded by the link's
    `rx_deadline`, or timeout_s) and when it is inside one (timeout_s, then an error).
    """

    def __init__(self, link, raw):
        self._link = link
        self.raw = raw
        self._io = raw
        self._state = 0  # 0: between packets, 1: in the remaining length, 2: in the body
        self._need = 0
        self._shift = 0
        try:
            raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError, TypeError) as e:
            link.health.error("mqtt_nodelay", e)

    # connection manager / minimqtt API

    def settimeout(self, t):
        pass  # minimqtt's socket_timeout: ours are set per call

    def wrap_tls(self, ctx, host):
        self._io = ctx.wrap_socket(self.raw, server_hostname=host)
        return self

    def connect(self, addr):
        self._io.settimeout(self._link.timeout_s)
        self._io.connect(addr)

    def send(self, buf):
        self._io.settimeout(self._link.timeout_s)
        n = self._io.send(buf)
        self._link.tx_ms = ticks_ms()
        return n

    def recv_into(self, buf, nbytes=0):
        n = nbytes or len(buf)
        t = self._link.timeout_s
        dl = self._link.rx_deadline
        if self._state == 0 and dl is not None:
            left = ticks_diff(dl, ticks_ms())
            t = left / 1000 if left > 1 else 0.001
        self._io.settimeout(t)
        got = self._io.recv_into(buf, n)
        if not got:
            raise OSError(_ECONNRESET)  # the peer closed: minimqtt would spin on 0-byte reads
        self._link.rx_ms = ticks_ms()
        self._track(buf, got)
        return got

    def close(self):
        try:
            self._io.close()
        finally:
            if self._io is not self.raw:
                self.raw.close()

    def _track(self, buf, got):
        i = 0
        while i < got:
            s = self._state
            if s == 0:
                self._state = 1
                self._need = 0
                self._shift = 0
                i += 1
            elif s == 1:
                b = buf[i]
                i += 1
                self._need |= (b & 0x7F) << self._shift
                self._shift += 7
                if not b & 0x80:
                    self._state = 2 if self._need else 0
            else:
                k = got - i
                if k > self._need:
                    k = self._need
                self._need -= k
                i += k
                if not self._need:
                    self._state = 0


class _Pool:
    """The socket pool minimqtt and the connection manager get: the port's, our sockets."""

    def __init__(self, link, pool):
        self._link = link
        self._pool = pool
        self.AF_INET = pool.AF_INET
        self.SOCK_STREAM = pool.SOCK_STREAM
        if hasattr(pool, "timeout"):  # CPython's socket module: minimqtt catches this class
            self.timeout = pool.timeout
        self.last = None

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        return self._pool.getaddrinfo(host, port, family, type, proto, flags)

    def socket(self, family=None, type=None, proto=0):
        raw = self._pool.socket(self.AF_INET if family is None else family, self.SOCK_STREAM if type is None else type)
        self.last = _Sock(self._link, raw)
        return self.last


class _Tls:
    """An ssl context for the connection manager: wraps our socket's raw socket in place."""

    def __init__(self, ctx):
        self._ctx = ctx

    def wrap_socket(self, sock, server_hostname=None):
        return sock.wrap_tls(self._ctx, server_hostname)


def _tls_context(tls):
    import ssl

    ctx = ssl.create_default_context()
    if tls.get("ca"):
        with open(tls["ca"]) as f:
            ctx.load_verify_locations(cadata=f.read())
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.get("cert"):
        ctx.load_cert_chain(tls["cert"], tls.get("key"))
    return ctx


class MqttUplink:
    def __init__(self, cfg, health, boot, board_name, fw_version, now_ms=ticks_ms, pool=None, ssl_context=None):
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
        self.backoff_min_ms = int(m["backoff_min_s"] * 1000)
        self.backoff_max_ms = int(m["backoff_max_s"] * 1000)
        base = m["prefix"] + "/" + self.node_id
        self.topic_data = base + "/data"
        self.topic_ack = base + "/ack"
        self.topic_state = base + "/state"
        self.state_online = json.dumps({"state": "online", "boot": boot, "fw": fw_version, "board": board_name})
        if pool is None:
            import socket as pool  # CPython (tests); a board's port passes its SocketPool
        self._pool = _Pool(self, pool)
        self._ssl = ssl_context
        self._now = now_ms
        self.on_ack = None
        self.connected = False
        self.connects = 0
        self.reconnects = 0  # successful connects after the first
        self.sent = 0
        self.rx_ms = self.tx_ms = now_ms()
        self.rx_deadline = None  # ticks: a wait for the next packet ends here (None: timeout_s)
        self._client = None
        self._delay_ms = 0
        self._next_try = now_ms()

    # -- link management -------------------------------------------------------------------

    def service(self):
        """Connect when due, keep the link alive; returns connected. Bounded by timeouts."""
        now = self._now()
        if not self.connected:
            if ticks_diff(self._next_try, now) <= 0:
                self._connect()
            return self.connected
        if self.keepalive_s:
            ka = self.keepalive_s * 1000
            if ticks_diff(now, self.rx_ms) > ka + ka // 2:
                self._drop("mqtt_dead_link", None)  # half-open: nothing heard for 1.5 keepalives
            elif ticks_diff(now, self.tx_ms) >= ka // 2:
                self._ping()
        return self.connected

    def _ping(self):
        c = self._client
        # minimqtt waits keep_alive seconds for PINGRESP: hold it to our timeout
        c.keep_alive = self.timeout_s
        self.rx_deadline = ticks_add(self._now(), int(self.timeout_s * 1000))
        try:
            c.ping()
        except Exception as e:
            self._drop("mqtt_ping", e)
        finally:
            self.rx_deadline = None
            c.keep_alive = self.keepalive_s

    def _new_client(self):
        ssl_ctx = None
        if self.tls is not None:
            ssl_ctx = _Tls(self._ssl or _tls_context(self.tls))
        c = minimqtt.MQTT(
            broker=self.host,
            port=self.port,
            username=self.user,
            password=self.password,
            client_id=self.client_id,
            is_ssl=self.tls is not None,
            keep_alive=self.keepalive_s,
            recv_timeout=self.timeout_s,
            socket_pool=self._pool,
            ssl_context=ssl_ctx,
            use_binary_mode=True,
            socket_timeout=_SOCKET_TIMEOUT,
            connect_retries=1,
        )
        c.will_set(self.topic_state, _OFFLINE, qos=1, retain=True)
        c.on_message = self._on_message
        return c

    def _connect(self):
        try:
            c = self._new_client()
            self._client = c
            c.connect(clean_session=False)
            self.rx_ms = self.tx_ms = self._now()
            c.subscribe(self.topic_ack, qos=1)
            c.publish(self.topic_state, self.state_online, retain=True, qos=1)
        except Exception as e:
            self._close_sock()
            self._client = None
            self._fail("mqtt_connect", e)
            return
        self.connected = True
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self._delay_ms = 0

    def _fail(self, what, exc):
        self.health.error(what, exc)
        # exponential backoff with jitter: wait in [d/2, d], d doubling up to the maximum
        d = self._delay_ms * 2 if self._delay_ms else self.backoff_min_ms
        if d > self.backoff_max_ms:
            d = self.backoff_max_ms
        self._delay_ms = d
        wait = d // 2 + (random.getrandbits(16) * (d - d // 2)) // 65536
        self._next_try = ticks_add(self._now(), wait)

    def _close_sock(self):
        s = self._pool.last
        self._pool.last = None
        if s is None:
            return
        try:  # through the connection manager, or it refuses the next socket to this broker
            get_connection_manager(self._pool).close_socket(s)
        except RuntimeError:  # never registered (the connect failed): close it ourselves
            try:
                s.close()
            except Exception as e:
                self.health.error("mqtt_close", e)
        except Exception as e:
            self.health.error("mqtt_close", e)

    def _drop(self, what, exc):
        """The link failed: close it without DISCONNECT (the broker publishes our will)."""
        self.connected = False
        self._close_sock()
        self._client = None
        self._fail(what, exc)

    # -- data ------------------------------------------------------------------------------

    def send(self, batch):
        """Publish one batch at QoS 1 (returns after PUBACK). False if the link failed."""
        if not self.connected:
            return False
        try:
            # minimqtt takes bytes only (not a memoryview): one copy of the batch per send
            self._client.publish(self.topic_data, bytes(batch), qos=1)
        except Exception as e:
            self._drop("mqtt_publish", e)
            return False
        self.sent += 1
        return True

    def wait(self, timeout_ms):
        """Wait up to timeout_ms for incoming traffic and dispatch it (acks)."""
        if not self.connected:
            if timeout_ms > 0:
                until_try = ticks_diff(self._next_try, self._now())
                sleep_ms(max(0, min(timeout_ms, until_try)))
            return
        if timeout_ms < 0:
            timeout_ms = 0
        self.rx_deadline = ticks_add(self._now(), timeout_ms)
        try:
            t = timeout_ms / 1000
            self._client.loop(timeout=t if t > _SOCKET_TIMEOUT else _SOCKET_TIMEOUT)
        except Exception as e:
            self._drop("mqtt_receive", e)
        finally:
            self.rx_deadline = None

    def _on_message(self, client, topic, msg):
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
                self._client.publish(self.topic_state, _OFFLINE, retain=True, qos=1)
                self._client.disconnect()
            except Exception as e:
                self.health.error("mqtt_close", e)
        self.connected = False
        self._close_sock()
