"""Records and running bridges for the operator-tool tests (status, web, metrics, plot, export)."""

from __future__ import annotations

import contextlib
import json
import math
import time
import urllib.request

from host_bridge.model import FLAG_CLOCK_SYNCED, KIND_STATUS, Record
from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import free_port

N_VALUES = 29 + 12  # fixed values + 4 bands x 3 axes


def measurement(node: str, seq: int, t_s: float, vel: float = 1.0, temp: float = 40.0, zone: int = 1,
                boot: int = 1, flags: int = FLAG_CLOCK_SYNCED) -> Record:
    vals = [math.nan] * N_VALUES
    vals[0] = temp
    vals[1:4] = [0.10, 0.12, 0.08]
    vals[4:7] = [vel, vel * 0.8, vel * 0.5]
    vals[7:28] = [0.3] * 21
    vals[28] = float(zone)
    vals[29:] = [0.01] * 12
    ts = int(t_s)
    return Record(node, seq, boot, 0, flags, ts, int((t_s - ts) * 1000), tuple(vals), received_ms=int(t_s * 1000))


def status(node: str, seq: int, t_s: float, backlog: float = 0, drops: float = 0) -> Record:
    vals = (120.0, 48000.0, 1.0, -61.0, float(backlog), float(drops), 0.0, 0.0, 10000.0, 1.0, 100.0)
    return Record(node, seq, 1, KIND_STATUS, FLAG_CLOCK_SYNCED, int(t_s), 0, vals, received_ms=int(t_s * 1000))


def severity_ramp(node: str, n: int, end_s: float, step_s: float = 10.0, limits=(2.8, 4.5, 7.1)) -> list[Record]:
    """n measurements up to end_s whose velocity climbs through all four ISO zones."""
    out = []
    for i in range(n):
        v = 0.5 + (limits[2] * 1.2 - 0.5) * i / max(1, n - 1) + 0.15 * math.sin(i / 7)
        zone = 1 + sum(v > lim for lim in limits)
        out.append(measurement(node, i + 1, end_s - (n - 1 - i) * step_s, vel=v, temp=40 + 3 * math.sin(i / 40),
                               zone=zone))
    return out


def feed(bridge, records: list[Record]) -> None:
    """What ingest does after decoding: commit, then apply to the tags."""
    new = bridge.historian.insert(records)
    bridge.counters.inc("records_in", len(records))
    bridge.counters.inc("records_stored", len(new))
    bridge.tags.apply(new)


@contextlib.contextmanager
def web_bridge(tmp_path, nodes, **kw):
    """A running in-process bridge with its web server on a free loopback port."""
    web = kw.pop("web", None)
    cfg = make_config(tmp_path, nodes, web_port=free_port(), **kw)
    if web is not None:
        cfg.web = web
    with BridgeThread(cfg) as bridge:
        assert bridge.web is not None and bridge.web.port, "web server did not start"
        yield bridge, f"http://127.0.0.1:{bridge.web.port}"


def get(url: str, headers: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def get_json(url: str) -> dict:
    code, body, _ = get(url)
    assert code == 200, (code, body[:200])
    return json.loads(body)


def now_s() -> float:
    return time.time()
