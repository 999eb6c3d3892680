"""The historian: every accepted record, durably, once per (node, seq).

SQLite in WAL mode with synchronous=FULL: when insert() returns, the records survive a crash
of the process or of the machine, so the bridge may acknowledge them. Another store can
replace this one by implementing the Historian protocol.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Protocol

from host_bridge.codec import RawRecord
from host_bridge.model import FLAG_CLOCK_SYNCED, FLAG_PREVIEW, Record


class Historian(Protocol):
    def insert(self, records: Sequence[Record]) -> list[Record]: ...
    def max_seq(self, node_id: str, previews: bool = False) -> int: ...
    def history(
        self, node_id: str, start_ms: int, end_ms: int, kind: int = 0, limit: int | None = None
    ) -> list[Record]: ...
    def close(self) -> None: ...


# Two copies of one record may differ in time only when the node converted its uptime stamp
# to Unix time at each send with a clock re-estimated in between (ms, plus crystal drift over
# a long outage: ~2 s after 10 h at 50 ppm). docs/protocol.md section 3.1.
SAME_RECORD_TIME_TOLERANCE_MS = 10_000


def same_record(stored: Sequence, got: Sequence) -> bool:
    """Is `got` a resend of the stored record with the same (node, seq)? Both as
    (boot, kind, flags, ts_s, ts_ms, value bytes). A resend carries the journal's bytes: boot,
    kind and values are identical; flags differ by what is set at send time (HISTORICAL,
    PREVIEW, CLOCK_SYNCED with a converted time). Anything else is another record under a
    reused seq: the node lost its numbering (flash wiped) -- a sequence reset."""
    if stored[0] != got[0] or stored[1] != got[1] or bytes(stored[5]) != bytes(got[5]):
        return False
    s_sync, g_sync = stored[2] & FLAG_CLOCK_SYNCED, got[2] & FLAG_CLOCK_SYNCED
    if s_sync and g_sync:
        return abs((stored[3] - got[3]) * 1000 + stored[4] - got[4]) <= SAME_RECORD_TIME_TOLERANCE_MS
    if not s_sync and not g_sync:
        return stored[3] == got[3] and stored[4] == got[4]  # uptime stamps are never rewritten
    return True  # converted once, sent as stamped another time (a later boot): values decide


@dataclass(frozen=True)
class SeqConflict:
    """A batch refused whole: it carries `seq`, which the historian holds as another record."""

    seq: int
    stored: tuple  # (boot, kind, flags, ts_s, ts_ms) of the stored record
    got: tuple  # the same fields of the record in the batch


def source_time_ms(r: Record) -> int:
    """The record's time: the device's clock when it was synced, else when the bridge got it."""
    return r.device_time_ms if r.flags & FLAG_CLOCK_SYNCED else r.received_ms


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    node TEXT NOT NULL,
    seq INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    ts_s INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    source_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    vals BLOB NOT NULL,
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_time ON records (node, kind, source_ms);
"""


class SqliteHistorian:
    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # A bigger page cache keeps the B-tree pages of every node's insertion point in RAM.
        self._db.execute("PRAGMA cache_size=-65536")
        # Checkpoints (WAL -> database file, with their fsyncs) run in a thread of their own,
        # not inside the ingest commit that happens to cross the threshold.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._ckpt_stop = threading.Event()
        self._ckpt = threading.Thread(target=self._checkpointer, name="historian-checkpoint", daemon=True)
        self._ckpt_db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()  # one writer; readers use their own connection
        self._reader = sqlite3.connect(str(self.path), check_same_thread=False)
        self._rlock = threading.Lock()
        self._ckpt.start()

    def _checkpointer(self, every_s: float = 1.0, min_pages: int = 1000) -> None:
        """PASSIVE checkpoints (never block the writer) once the WAL holds min_pages frames;
        a TRUNCATE now and then keeps the WAL file from growing without bound."""
        n = 0
        while not self._ckpt_stop.wait(every_s):
            try:
                busy, frames, done = self._ckpt_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                n += 1
                if frames > 50 * min_pages or n % 60 == 0:
                    self._ckpt_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # busy or closing: the next round retries

    def insert(self, records: Sequence[Record]) -> list[Record]:
        """Store records in one transaction; returns those that were new (not duplicates)."""
        if not records:
            return []
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                cur.executemany("INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)", _rows(records))
                if self._db.total_changes - before == len(records):
                    new = list(records)  # the usual case: no duplicates
                else:  # some were resends: redo the transaction knowing which are new
                    cur.execute("ROLLBACK")
                    cur.execute("BEGIN IMMEDIATE")
                    new = self._only_new(cur, records)
                    cur.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)", _rows(new))
                    # A preview's in-order copy arrived: the stored row now counts as in order.
                    fresh = {id(r) for r in new}
                    cur.executemany(
                        f"UPDATE records SET flags = flags & ~{FLAG_PREVIEW} WHERE node=? AND seq=? AND flags & {FLAG_PREVIEW}",
                        [(r.node_id, r.seq) for r in records if id(r) not in fresh and not r.flags & FLAG_PREVIEW],
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return new

    def insert_raw(
        self, batches: Sequence[tuple[str, int, str, Sequence[RawRecord]]]
    ) -> list[list[bool] | SeqConflict] | None:
        """The ingest hot path: batches of raw records (node, received_ms, source, raws), the
        values stored as the wire bytes. One transaction. Returns None when every record was
        new (the usual case), else per batch a list of flags: True where the record was new,
        or a SeqConflict when the batch reuses a seq for another record (nothing of it is
        stored; docs/protocol.md section 3.1).
        """
        rows = []
        extend = rows.extend
        for node, rcv, src, raws in batches:
            extend([(node, s, b, k, f, ts * 1000 + tm if f & 1 else rcv, ts, tm, rcv, src, v)
                    for s, b, k, f, ts, tm, v in raws])
        if not rows:
            return None
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                # Multi-row statements: one sqlite3_step (and one GIL release) per _MULTI rows
                # instead of per row; ~25 % faster than a plain executemany (bench_ingest).
                full = len(rows) - len(rows) % _MULTI
                if full:
                    cur.executemany(_INSERT_MULTI, [tuple(chain.from_iterable(rows[j : j + _MULTI]))
                                                    for j in range(0, full, _MULTI)])
                if full < len(rows):
                    cur.executemany(_INSERT_RAW, rows[full:])
                if self._db.total_changes - before == len(rows):
                    cur.execute("COMMIT")
                    return None
                cur.execute("ROLLBACK")  # some were resends: redo it knowing which are new
                cur.execute("BEGIN IMMEDIATE")
                flags = self._new_flags(cur, batches)
                new_rows, in_order_again = [], []
                i = 0
                for fl, b in zip(flags, batches):
                    n = len(b[3])
                    if not isinstance(fl, SeqConflict):  # a refused batch stores nothing
                        for row, isnew in zip(rows[i : i + n], fl):
                            if isnew:
                                new_rows.append(row)
                            elif not row[4] & FLAG_PREVIEW:
                                in_order_again.append((row[0], row[1]))
                    i += n
                cur.executemany(_INSERT_RAW.replace("OR IGNORE ", ""), new_rows)
                cur.executemany(
                    f"UPDATE records SET flags = flags & ~{FLAG_PREVIEW} WHERE node=? AND seq=? AND flags & {FLAG_PREVIEW}",
                    in_order_again,
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return flags

    @staticmethod
    def _new_flags(cur: sqlite3.Cursor, batches) -> list[list[bool] | SeqConflict]:
        """Per batch, which raw records are not stored yet (first copy of each key), or a
        SeqConflict when a record differs from the one stored under its seq."""
        seen: dict[str, set[int]] = {}
        q = "SELECT seq, boot, kind, flags, ts_s, ts_ms, vals FROM records WHERE node=? AND seq BETWEEN ? AND ?"
        out: list[list[bool] | SeqConflict] = []
        for node, _, _, raws in batches:
            have = seen.get(node)
            if have is None:
                have = seen[node] = set()
            if raws:
                stored = {row[0]: row[1:] for row in cur.execute(q, (node, raws[0][0], raws[-1][0]))}
                conflict = None
                if stored:
                    for r in raws:
                        st = stored.get(r[0])
                        if st is not None and not same_record(st, r[1:]):
                            conflict = SeqConflict(r[0], tuple(st[:5]), tuple(r[1:6]))
                            break
                if conflict is not None:
                    out.append(conflict)
                    continue
                have.update(stored)
            fl = []
            for r in raws:
                fl.append(r[0] not in have)
                have.add(r[0])
            out.append(fl)
        return out

    @staticmethod
    def _only_new(cur: sqlite3.Cursor, records: Sequence[Record]) -> list[Record]:
        """Records not stored yet (first copy of each key): one range query per node."""
        by_node: dict[str, list[Record]] = {}
        for r in records:
            by_node.setdefault(r.node_id, []).append(r)
        new: list[Record] = []
        for node, recs in by_node.items():
            lo, hi = min(r.seq for r in recs), max(r.seq for r in recs)
            q = "SELECT seq FROM records WHERE node=? AND seq BETWEEN ? AND ?"
            have = {row[0] for row in cur.execute(q, (node, lo, hi))}
            for r in recs:
                if r.seq not in have:
                    have.add(r.seq)
                    new.append(r)
        return new

    def max_seq(self, node_id: str, previews: bool = False) -> int:
        """The highest seq of this node stored in order: what an ack (or a HELLO answer) may
        name. Previews (live records sent ahead of a backlog) do not count until their
        in-order copy arrives: acking one would free the node's unsent backlog. With
        previews=True: the highest seq held at all (a RESYNC must go past every one)."""
        q = (f"SELECT seq FROM records WHERE node=? AND (flags & {FLAG_PREVIEW}) = 0 ORDER BY seq DESC LIMIT 1"
             if not previews else "SELECT MAX(seq) FROM records WHERE node=?")
        with self._rlock:
            row = self._reader.execute(q, (node_id,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def count_between(self, node_id: str, lo: int, hi: int) -> int:
        """Rows of this node with lo <= seq <= hi (the writer's view: call from the writer)."""
        with self._lock:
            q = "SELECT COUNT(*) FROM records WHERE node=? AND seq BETWEEN ? AND ?"
            return int(self._db.execute(q, (node_id, lo, hi)).fetchone()[0])

    def count(self, node_id: str | None = None) -> int:
        with self._rlock:
            if node_id is None:
                return int(self._reader.execute("SELECT COUNT(*) FROM records").fetchone()[0])
            return int(self._reader.execute("SELECT COUNT(*) FROM records WHERE node=?", (node_id,)).fetchone()[0])

    def seqs(self, node_id: str) -> list[int]:
        with self._rlock:
            return [r[0] for r in self._reader.execute("SELECT seq FROM records WHERE node=? ORDER BY seq", (node_id,))]

    def nodes(self) -> list[str]:
        with self._rlock:
            return [r[0] for r in self._reader.execute("SELECT DISTINCT node FROM records ORDER BY node")]

    def history(
        self, node_id: str, start_ms: int, end_ms: int, kind: int = 0, limit: int | None = None
    ) -> list[Record]:
        q = (
            "SELECT node, seq, boot, kind, flags, ts_s, ts_ms, received_ms, source, vals FROM records "
            "WHERE node=? AND kind=? AND source_ms>=? AND source_ms<=? ORDER BY source_ms, seq"
        )
        args: list = [node_id, kind, start_ms, end_ms]
        if limit:
            q += " LIMIT ?"
            args.append(int(limit))
        with self._rlock:
            rows = self._reader.execute(q, args).fetchall()
        return [_row_record(row) for row in rows]

    def close(self) -> None:
        self._ckpt_stop.set()
        self._ckpt.join(10)
        with self._lock, self._rlock:
            try:
                self._ckpt_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._ckpt_db.close()
            self._db.close()
            self._reader.close()


# column order of the table, with source_ms computed as in source_time_ms()
_INSERT_RAW = ("INSERT OR IGNORE INTO records (node, seq, boot, kind, flags, source_ms, ts_s, ts_ms, received_ms,"
               " source, vals) VALUES (?,?,?,?,?,?,?,?,?,?,?)")


_MULTI = 64  # rows per multi-row INSERT (64 x 11 = 704 variables, under every SQLite limit)
_INSERT_MULTI = _INSERT_RAW.split(" VALUES ")[0] + " VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?,?,?)"] * _MULTI)


def _rows(records: Sequence[Record]) -> Iterable[tuple]:
    for r in records:
        yield (
            r.node_id, r.seq, r.boot, r.kind, r.flags, r.ts_s, r.ts_ms, source_time_ms(r), r.received_ms, r.source,
            struct.pack(f"<{len(r.values)}f", *r.values),
        )


def _row_record(row: Iterable) -> Record:
    node, seq, boot, kind, flags, ts_s, ts_ms, received_ms, source, vals = row
    values = struct.unpack(f"<{len(vals) // 4}f", vals)
    return Record(node, seq, boot, kind, flags, ts_s, ts_ms, values, received_ms, source)
