"""The bridge's read-only HTTP side: a status page, a JSON API and Prometheus /metrics.

Endpoints (GET only; everything else is 405):

    /                   the status page (HTML; app.js and style.css beside it, no CDN)
    /api/status         every node: online, quality, age, last values, zone, backlog, drops
    /api/trend?node=ID&minutes=60&names=vel_rms_x,...   a node's history from the historian
    /metrics            Prometheus text exposition format 0.0.4
    /healthz            "ok" (for a load balancer or a watchdog; no auth)

Served by the standard library's threading HTTP server on its own thread, so a slow browser
never delays ingest. Loopback by default; bound to any other address it requires HTTP basic
auth (config.py refuses a non-loopback host without credentials). It only reads: the tag
store, the counters, the outputs' `stats` and the historian through its reader connection.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from host_bridge import __version__, webpage
from host_bridge.codec import valid_node_id
from host_bridge.model import FLAG_CLOCK_SYNCED, FLAG_HISTORICAL, KIND_MEASUREMENT, Record, quantity
from host_bridge.tags import Quality, now_ms

log = logging.getLogger("host_bridge.web")

ZONES = {1: "A", 2: "B", 3: "C", 4: "D"}
DEFAULT_TREND = ("vel_rms_x", "vel_rms_y", "vel_rms_z")
MAX_TREND_POINTS = 600
MAX_TREND_MINUTES = 7 * 24 * 60
MAX_TREND_RECORDS = 200_000


def source_time_ms(r: Record) -> int:
    """The time the historian orders by: the node's clock when synced, else the bridge's receipt."""
    return r.device_time_ms if r.flags & FLAG_CLOCK_SYNCED else r.received_ms


def _num(v: Any) -> float | None:
    """JSON has no NaN: not-available values become null."""
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def zone_letter(z: float | None) -> str | None:
    if z is None or z != z:
        return None
    return ZONES.get(int(z))


def online_state(st, quality: Quality) -> bool | None:
    """Reachable: the state message says online, or (no state message) data is not offline-old."""
    if st.online is False or quality == Quality.OFFLINE:
        return False
    if st.online is True:
        return True
    if quality in (Quality.GOOD, Quality.STALE):
        return True
    return None


# ---- the data behind the page, the API, `host-bridge status` and /metrics -------------------


def snapshot(bridge, at_ms: int | None = None) -> dict:
    t = at_ms if at_ms is not None else now_ms()
    cfg = bridge.cfg
    nodes = []
    for node_id, st in sorted(bridge.tags.snapshot().items()):
        q = bridge.tags.quality(st, t)
        nc = cfg.node(node_id)
        vel = [st.values.get(f"vel_rms_{a}", math.nan) for a in "xyz"]
        vel = [v for v in vel if v == v]
        status = st.status
        nodes.append(
            {
                "id": node_id,
                "configured": nc is not None,
                "site": nc.site if nc else "",
                "area": nc.area if nc else "",
                "asset": nc.asset if nc else "",
                "description": nc.description if nc else "",
                "iso_limits": list(nc.iso_limits) if nc else None,
                "online": online_state(st, q),
                "quality": q.name.lower(),
                "age_s": None if st.server_ms is None else max(0.0, (t - st.server_ms) / 1000.0),
                "source_ms": st.source_ms,
                "server_ms": st.server_ms,
                "last_seq": st.last_seq,
                "boot": st.boot,
                "records": st.records,
                "gaps": st.gaps,
                "seq_resets": st.seq_resets,
                "historical": bool(st.flags & FLAG_HISTORICAL),
                "flags": st.flags,
                "values": {k: _num(v) for k, v in st.values.items()},
                "zone": zone_letter(st.values.get("iso_zone")),
                "vel_rms_max": max(vel) if vel else None,
                "status": {k: _num(v) for k, v in status.items()},
                "status_ms": st.status_ms,
                "backlog": _num(status.get("journal_depth")),
                "drops": _num(status.get("journal_dropped")),
            }
        )
    outputs = {}
    for name in ("modbus", "opcua"):
        o = getattr(bridge, name, None)
        stats = getattr(o, "stats", None) if o is not None else None
        if isinstance(stats, dict):
            outputs[name] = dict(stats)
    return {
        "bridge": {
            "version": __version__,
            "now_ms": t,
            "started_ms": getattr(bridge.web, "started_ms", None) if bridge.web else None,
            "stale_after_s": cfg.stale_after_s,
            "offline_after_s": cfg.offline_after_s,
            "counters": bridge.counters.snapshot(),
            "outputs": outputs,
        },
        "nodes": nodes,
    }


def trend(bridge, node_id: str, minutes: float = 60.0, names=DEFAULT_TREND, end_ms: int | None = None,
          max_points: int = MAX_TREND_POINTS) -> dict:
    """A node's measurement history, bucketed to at most max_points (max per bucket: the
    severity that matters survives the thinning)."""
    end = end_ms if end_ms is not None else now_ms()
    start = end - int(minutes * 60_000)
    recs = bridge.historian.history(node_id, start, end, KIND_MEASUREMENT, limit=MAX_TREND_RECORDS)
    nc = bridge.cfg.node(node_id)
    series: dict[str, list[float | None]] = {n: [] for n in names}
    times: list[int] = []
    width = max(1, end - start) / max_points if len(recs) > max_points else 0
    bucket: list = []  # records of the bucket being filled

    def flush() -> None:
        times.append(source_time_ms(bucket[-1]))
        for n in names:
            vals = [v for v in (r.value(n) for r in bucket) if v == v]
            series[n].append(_num(max(vals)) if vals else None)
        bucket.clear()

    cur = None
    for r in recs:
        b = int((source_time_ms(r) - start) // width) if width else r.seq
        if bucket and b != cur:
            flush()
        cur = b
        bucket.append(r)
    if bucket:
        flush()
    return {
        "node": node_id,
        "start_ms": start,
        "end_ms": end,
        "records": len(recs),
        "t": times,
        "series": series,
        "units": {n: quantity(n).unit for n in names},
        "iso_limits": list(nc.iso_limits) if nc else None,
    }


# ---- Prometheus text exposition -----------------------------------------------------------

_NAMED_COUNTERS = {
    "records_in": "Records decoded from valid batches",
    "records_stored": "Records committed to the historian (new)",
    "records_duplicate": "Records received again and ignored (already stored: resends)",
    "batches_ok": "Batches accepted",
    "batches_rejected": "Batches rejected whole (see vibekit_rejected_total by reason)",
    "acks_sent": "Acknowledgements sent after commit",
    "acks_failed": "Acknowledgements that could not be sent (the node resends)",
    "ingest_queue_full": "Batches dropped because the ingest queue was full (the node resends)",
    "ingest_errors": "Ingest groups that failed (nothing acked; the nodes resend)",
}


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(v: float | int | None) -> str:
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, typ: str, help_: str, samples) -> None:
        """samples: iterable of (labels dict, value); a family with no samples is still declared."""
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {typ}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{lab}}} {_fmt(value)}" if lab else f"{name} {_fmt(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def prometheus(bridge, at_ms: int | None = None) -> str:
    snap = snapshot(bridge, at_ms)
    counters: dict[str, int] = snap["bridge"]["counters"]
    e = _Exposition()
    e.family("vibekit_bridge_info", "gauge", "Bridge version", [({"version": __version__}, 1)])
    started = snap["bridge"]["started_ms"]
    e.family("vibekit_bridge_start_time_seconds", "gauge", "When the bridge started, Unix seconds",
             [({}, started / 1000.0 if started else None)])
    for key, help_ in _NAMED_COUNTERS.items():
        e.family(f"vibekit_{key}_total", "counter", help_, [({}, counters.get(key, 0))])
    rejected = sorted((k[len("rejected_"):], v) for k, v in counters.items() if k.startswith("rejected_"))
    e.family("vibekit_rejected_total", "counter", "Rejected batches and messages by reason",
             [({"reason": r}, v) for r, v in rejected])
    other = sorted((k, v) for k, v in counters.items() if k not in _NAMED_COUNTERS and not k.startswith("rejected_"))
    e.family("vibekit_events_total", "counter", "Other bridge events (links, serial framing, web)",
             [({"event": k}, v) for k, v in other])

    nodes = snap["nodes"]

    def per_node(name: str, typ: str, help_: str, fn) -> None:
        e.family(name, typ, help_, [({"node": n["id"]}, fn(n)) for n in nodes])

    per_node("vibekit_node_up", "gauge", "1 when the node is reachable, 0 when offline, NaN unknown",
             lambda n: None if n["online"] is None else int(n["online"]))
    per_node("vibekit_node_quality", "gauge", "Tag quality: 0 good, 1 stale, 2 offline, 3 waiting for data",
             lambda n: int(Quality[n["quality"].upper()]))
    per_node("vibekit_node_age_seconds", "gauge", "Seconds since the bridge received the node's last values",
             lambda n: n["age_s"])
    per_node("vibekit_node_last_seq", "gauge", "Highest record sequence number received", lambda n: n["last_seq"])
    per_node("vibekit_node_records_total", "counter", "Records received since the bridge started",
             lambda n: n["records"])
    per_node("vibekit_node_gaps_total", "counter", "Missing sequence numbers seen in live order",
             lambda n: n["gaps"])
    per_node("vibekit_node_journal_depth", "gauge", "Records in the node's journal not yet acknowledged (node report)",
             lambda n: n["backlog"])
    per_node("vibekit_node_journal_dropped", "gauge", "Records the node dropped by its flash quota (node report)",
             lambda n: n["drops"])
    per_node("vibekit_node_fifo_overruns", "gauge", "Sensor FIFO overruns since the node booted (node report)",
             lambda n: n["status"].get("fifo_overruns"))
    per_node("vibekit_node_link_reconnects", "gauge", "Uplink reconnects since the node booted (node report)",
             lambda n: n["status"].get("link_reconnects"))
    per_node("vibekit_node_iso_zone", "gauge", "ISO 10816-3 zone of the worst axis, 1=A .. 4=D",
             lambda n: n["values"].get("iso_zone"))
    per_node("vibekit_node_temperature_celsius", "gauge", "Temperature", lambda n: n["values"].get("temperature"))
    e.family(
        "vibekit_node_velocity_rms_mm_per_second", "gauge", "Velocity RMS in the velocity band, per axis",
        [({"node": n["id"], "axis": a}, n["values"].get(f"vel_rms_{a}")) for n in nodes for a in "xyz"],
    )
    for out, stats in sorted(snap["bridge"]["outputs"].items()):
        for key, v in sorted(stats.items()):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                e.family(f"vibekit_{out}_{key}_total", "counter", f"{out} output: {key.replace('_', ' ')}",
                         [({}, v)])
    return e.text()


# ---- HTTP ---------------------------------------------------------------------------------


_STATIC = {
    "/": (webpage.INDEX_HTML, "text/html; charset=utf-8"),
    "/index.html": (webpage.INDEX_HTML, "text/html; charset=utf-8"),
    "/app.js": (webpage.APP_JS, "text/javascript; charset=utf-8"),
    "/style.css": (webpage.STYLE_CSS, "text/css; charset=utf-8"),
}

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Handler(BaseHTTPRequestHandler):
    server_version = f"vibekit-bridge/{__version__}"
    protocol_version = "HTTP/1.1"
    web: WebServer  # set on the subclass made per server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, code: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**_SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, code: int = 200) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":")).encode(), "application/json")

    def _error(self, code: int, msg: str) -> None:
        self._json({"error": msg}, code)

    def _authorized(self) -> bool:
        w = self.web.cfg
        if not w.password:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, pw = "", ""
            ok_user = hmac.compare_digest(user.encode(), (w.username or "").encode())
            ok_pw = hmac.compare_digest(pw.encode(), w.password.encode())
            if ok_user and ok_pw:
                return True
        self.web.count("web_auth_failed")
        log.warning("web: unauthorized request from %s for %s", self.client_address[0], self.path)
        self._send(401, b"authentication required\n", "text/plain; charset=utf-8",
                   {"WWW-Authenticate": 'Basic realm="vibekit bridge", charset="UTF-8"'})
        return False

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        self.web.count("web_requests")
        url = urlsplit(self.path)
        path = url.path
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
            return
        if not self._authorized():
            return
        try:
            if path in _STATIC:
                body, ctype = _STATIC[path]
                self._send(200, body.encode("utf-8"), ctype)
            elif path == "/api/status":
                self._json(snapshot(self.web.bridge))
            elif path == "/api/trend":
                self._trend(parse_qs(url.query))
            elif path == "/metrics":
                self._send(200, prometheus(self.web.bridge).encode(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._error(404, f"no such page: {path}")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # noqa: BLE001 - a page error must never take the bridge down
            log.exception("web: %s failed", path)
            self.web.count("web_errors")
            self._error(500, "internal error (see the bridge log)")

    def _trend(self, q: dict[str, list[str]]) -> None:
        node = q.get("node", [""])[0]
        if not valid_node_id(node) or self.web.bridge.tags.get(node) is None:
            self._error(404, f"unknown node {node!r}")
            return
        try:
            minutes = float(q.get("minutes", ["60"])[0])
            points = int(q.get("points", [str(MAX_TREND_POINTS)])[0])
        except ValueError:
            self._error(400, "minutes and points must be numbers")
            return
        if not 0 < minutes <= MAX_TREND_MINUTES or not 2 <= points <= 5000:
            self._error(400, f"minutes must be 0..{MAX_TREND_MINUTES}, points 2..5000")
            return
        names = [n for n in q.get("names", [",".join(DEFAULT_TREND)])[0].split(",") if n][:12]
        self._json(trend(self.web.bridge, node, minutes, names, max_points=points))

    def do_POST(self) -> None:  # noqa: N802
        self._error(405, "read-only")

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815


class WebServer:
    """The HTTP server on its own thread; start() never raises for a port in use."""

    def __init__(self, bridge) -> None:
        self.bridge = bridge
        self.cfg = bridge.cfg.web
        self.port: int | None = None
        self.started_ms = now_ms()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def count(self, name: str) -> None:
        self.bridge.counters.inc(name)

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> bool:
        handler = type("Handler", (_Handler,), {"web": self})
        server_cls = ThreadingHTTPServer
        if ":" in self.cfg.host:
            import socket

            server_cls = type("V6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        try:
            self._httpd = server_cls((self.cfg.host, self.cfg.port), handler)
        except OSError as e:
            self.count("web_bind_failed")
            log.error("web status page not started: cannot listen on %s:%d: %s", self.cfg.host, self.cfg.port, e)
            return False
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="web", daemon=True)
        self._thread.start()
        auth = "basic auth" if self.cfg.password else "no auth (loopback)"
        log.info("web status page on %s (%s)", self.url, auth)
        return True

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)
        self._httpd = None
        self._thread = None


def wait_for_status(url: str, timeout: float = 10.0) -> dict:
    """Fetch /api/status until it answers (used by `host-bridge status` and tests)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/api/status", timeout=2) as r:
                return json.loads(r.read())
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise TimeoutError(f"no status from {url}: {last}")
