"""`host-bridge status`: the live terminal view of a running bridge, from its /api/status.

Pure rendering (render_status) plus a small HTTP client; the daemon's own state is never
touched, so the view works against a bridge in another process or on another host.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field

ANSI = {"green": "\x1b[32m", "yellow": "\x1b[33m", "red": "\x1b[31;1m", "grey": "\x1b[90m", "bold": "\x1b[1m",
        "reset": "\x1b[0m"}
QUALITY_COLOR = {"good": "green", "stale": "yellow", "offline": "red", "initial": "grey"}
ZONE_COLOR = {"A": "green", "B": "green", "C": "yellow", "D": "red"}


SMALL_BACKLOG = 10  # records: below this a backlog is the batch in flight, not an outage


class StatusError(RuntimeError):
    pass


def fetch_status(url: str, user: str | None = None, password: str | None = None, timeout: float = 3.0) -> dict:
    req = urllib.request.Request(url.rstrip("/") + "/api/status", headers={"Accept": "application/json"})
    if password is not None:
        token = base64.b64encode(f"{user or ''}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise StatusError(f"{url}: authentication required or wrong (--user, VIBEKIT_WEB_PASSWORD)") from None
        raise StatusError(f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StatusError(f"bridge unreachable at {url}: {reason}") from None
    except ValueError as e:
        raise StatusError(f"{url}: not a bridge status answer ({e})") from None


@dataclass
class Drain:
    """Backlog drain of one node: the peak since the backlog was last empty, and recent samples."""

    peak: float = 0.0
    samples: deque = field(default_factory=lambda: deque(maxlen=30))  # (t_s, backlog)

    def add(self, t: float, backlog: float | None) -> None:
        if backlog is None:
            return
        if backlog <= 0:
            self.peak = 0.0
            self.samples.clear()
            return
        self.peak = max(self.peak, backlog)
        self.samples.append((t, backlog))

    def rate(self) -> float | None:
        """Records per second the backlog shrinks by (over the recent samples)."""
        if len(self.samples) < 2:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b0 - b1) / (t1 - t0) if t1 > t0 else None

    def text(self, backlog: float | None, width: int = 10) -> str:
        if backlog is None:
            return "-"
        if backlog <= 0 or self.peak <= 0:
            return "drained" if backlog == 0 else "-"
        if self.peak < SMALL_BACKLOG:
            return "live"  # a batch or two in flight: normal, nothing to drain
        done = max(0.0, min(1.0, (self.peak - backlog) / self.peak))
        bar = "#" * round(done * width) + "." * (width - round(done * width))
        r = self.rate()
        tail = f" {r:.0f}/s eta {backlog / r:.0f}s" if r and r > 0 else ""
        return f"[{bar}]{tail}"


def _c(text: str, color: str | None, on: bool) -> str:
    return f"{ANSI[color]}{text}{ANSI['reset']}" if on and color else text


def _f(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def render_status(snap: dict, drains: dict[str, Drain] | None = None, url: str = "", color: bool = False,
                  now_s: float | None = None) -> str:
    drains = drains if drains is not None else {}
    t = now_s if now_s is not None else time.monotonic()
    b = snap["bridge"]
    nodes = snap["nodes"]
    online = sum(1 for n in nodes if n["online"])
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b["now_ms"] / 1000))
    lines = [
        _c(f"vibekit bridge {b['version']}  {url}  {stamp}", "bold", color),
        f"{len(nodes)} nodes, {online} online",
        "",
    ]
    head = (f"{'node':<18} {'online':<6} {'quality':<8} {'age s':>7} {'seq':>8} {'zone':>4} {'v_rms':>7} "
            f"{'temp C':>7} {'backlog':>7} {'drops':>6} {'gaps':>5}  backlog drain")
    lines += [head, "-" * len(head)]
    for n in nodes:
        d = drains.setdefault(n["id"], Drain())
        d.add(t, n["backlog"])
        on = {True: "yes", False: "NO", None: "?"}[n["online"]]
        q = n["quality"]
        zone = n["zone"] or "-"
        row = (
            f"{n['id']:<18.18} {_c(f'{on:<6}', 'red' if n['online'] is False else None, color)} "
            f"{_c(f'{q:<8}', QUALITY_COLOR.get(q), color)} {_f(n['age_s'], '{:7.1f}'):>7} {n['last_seq']:>8} "
            f"{_c(f'{zone:>4}', ZONE_COLOR.get(zone), color)} {_f(n['vel_rms_max'], '{:7.2f}'):>7} "
            f"{_f(n['values'].get('temperature'), '{:7.1f}'):>7} {_f(n['backlog'], '{:7.0f}'):>7} "
            f"{_f(n['drops'], '{:6.0f}'):>6} {n['gaps']:>5}  {d.text(n['backlog'])}"
        )
        lines.append(row)
    c = b["counters"]
    rejected = {k[len("rejected_"):]: v for k, v in sorted(c.items()) if k.startswith("rejected_") and v}
    lines += [
        "",
        f"records stored {c.get('records_stored', 0)}, duplicates {c.get('records_duplicate', 0)}, "
        f"batches rejected {c.get('batches_rejected', 0)}"
        + (f" ({', '.join(f'{k} {v}' for k, v in rejected.items())})" if rejected else "")
        + f", queue full {c.get('ingest_queue_full', 0)}, acks {c.get('acks_sent', 0)}",
    ]
    outs = b.get("outputs", {})
    if outs:
        lines.append("  ".join(f"{name}: {s.get('requests', 0)} requests, {s.get('exceptions', 0)} exceptions"
                               for name, s in sorted(outs.items())))
    lines.append("v_rms: worst axis velocity RMS mm/s; zone: ISO 10816-3; backlog: node journal records "
                 "not yet acked; drops: records the node dropped (flash quota)")
    return "\n".join(lines)
