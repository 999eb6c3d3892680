"""Reading the historian from outside the daemon: time ranges, CSV export, progress.

The historian is SQLite in WAL mode, so these readers open it read-only next to a running
bridge without blocking its writer (and without creating anything when the path is wrong).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import sqlite3
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from host_bridge.model import FLAG_CLOCK_SYNCED, FLAG_HISTORICAL, KIND_MEASUREMENT, KIND_STATUS, Record, value_names

KINDS = {"measurement": KIND_MEASUREMENT, "status": KIND_STATUS}
_REL = re.compile(r"^-?(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Unix ms from 'now', a duration back from now ('90s', '15m', '2h', '7d', '-2h'),
    Unix seconds ('1717000000') or ISO 8601 ('2024-06-01T12:00', '2024-06-01 12:00:00+02:00';
    without an offset: local time)."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    t = text.strip()
    if t == "now":
        return now
    m = _REL.match(t)
    if m:
        return now - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1000)
    if re.fullmatch(r"\d{9,11}(\.\d+)?", t):
        return int(float(t) * 1000)
    try:
        d = dt.datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use now, 15m / 2h / 7d (back from now), Unix seconds or ISO 8601"
        ) from None
    if d.tzinfo is None:
        d = d.astimezone()  # local time, as an operator reads the wall clock
    return int(d.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HistorianReader:
    """Read-only view of a bridge's historian file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no historian at {self.path} (is bridge.data_dir right?)")
        self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistorianReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def nodes(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT node FROM records ORDER BY node")]

    def count(self, node_id: str, start_ms: int, end_ms: int, kind: int = KIND_MEASUREMENT) -> int:
        q = "SELECT COUNT(*) FROM records WHERE node=? AND kind=? AND source_ms>=? AND source_ms<=?"
        return int(self._db.execute(q, (node_id, kind, start_ms, end_ms)).fetchone()[0])

    def iter_range(
        self, node_id: str, start_ms: int, end_ms: int, kind: int = KIND_MEASUREMENT
    ) -> Iterator[tuple[int, Record]]:
        """(source_ms, record) in source-time order, streamed (constant memory)."""
        q = (
            "SELECT source_ms, seq, boot, kind, flags, ts_s, ts_ms, received_ms, source, vals FROM records "
            "WHERE node=? AND kind=? AND source_ms>=? AND source_ms<=? ORDER BY source_ms, seq"
        )
        for src_ms, seq, boot, k, flags, ts_s, ts_ms, rx, source, vals in self._db.execute(
            q, (node_id, kind, start_ms, end_ms)
        ):
            values = struct.unpack(f"<{len(vals) // 4}f", vals)
            yield src_ms, Record(node_id, seq, boot, k, flags, ts_s, ts_ms, values, rx, source)

    def range(self, node_id: str, start_ms: int, end_ms: int, kind: int = KIND_MEASUREMENT) -> list[Record]:
        return [r for _, r in self.iter_range(node_id, start_ms, end_ms, kind)]


class Progress:
    """A one-line progress bar on a terminal's stderr (silent when stderr is not a terminal)."""

    def __init__(self, total: int, label: str, stream: IO[str] | None = None, force: bool = False) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.done = 0
        self._last = 0.0
        self._t0 = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(1.0, self.done / self.total)
        width = 30
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        rate = self.done / max(now - self._t0, 1e-6)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {frac:4.0%} {rate:,.0f}/s ")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


_F32 = struct.Struct("<f")


def f32_text(v: float) -> str:
    """The shortest decimal that reads back as the same float32 (0.1, not 0.10000000149)."""
    if v != v:
        return "NaN"
    for digits in range(6, 10):
        t = f"{v:.{digits}g}"
        if _F32.pack(float(t)) == _F32.pack(v):
            return t
    return repr(v)


CSV_HEAD = ["node", "seq", "boot", "source_time", "source_ms", "received_ms", "clock_synced", "historical", "flags"]


def export_csv(
    reader: HistorianReader,
    node_ids: list[str],
    start_ms: int,
    end_ms: int,
    out: IO[str],
    kind: int = KIND_MEASUREMENT,
    progress: Progress | None = None,
) -> int:
    """Write the records of these nodes in [start_ms, end_ms] as CSV; returns the row count.

    One row per record: identity and times first (source_time is ISO 8601 UTC), then one column
    per value name; a value the record does not carry (an older node) is an empty cell, NaN
    (not available on the node) is written as NaN.
    """
    width = 0
    for nid in node_ids:
        for _, r in reader.iter_range(nid, start_ms, end_ms, kind):
            width = max(width, len(r.values))
    names = value_names(kind, width)
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEAD + names)
    rows = 0
    for nid in node_ids:
        for src_ms, r in reader.iter_range(nid, start_ms, end_ms, kind):
            vals = [f32_text(v) for v in r.values] + [""] * (width - len(r.values))
            w.writerow(
                [
                    nid, r.seq, r.boot, iso_ms(src_ms), src_ms, r.received_ms,
                    int(bool(r.flags & FLAG_CLOCK_SYNCED)), int(bool(r.flags & FLAG_HISTORICAL)), r.flags,
                    *vals,
                ]
            )
            rows += 1
            if progress:
                progress.update()
    if progress:
        progress.finish()
    return rows
