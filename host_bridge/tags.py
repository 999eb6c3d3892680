"""Live tag values per node, with quality and timestamps (pure state; thread-safe).

Inputs write here through the ingest pipeline; the Modbus and OPC UA outputs only read.
A historical (backfilled) record never overwrites a newer live value: values are applied
only when their device time is not older than what the tag already holds.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from host_bridge.model import KIND_MEASUREMENT, KIND_STATUS, Record


class Quality(enum.IntEnum):
    """Tag quality, ordered from best to worst; maps to OPC UA status codes."""

    GOOD = 0  # Good
    STALE = 1  # Uncertain_LastUsableValue
    OFFLINE = 2  # Bad_NoCommunication
    INITIAL = 3  # Bad_WaitingForInitialData


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class NodeState:
    node_id: str
    values: dict[str, float] = field(default_factory=dict)
    source_ms: int | None = None  # device time of the values (never rewritten)
    server_ms: int | None = None  # bridge time when the values were applied
    flags: int = 0
    last_seq: int = 0
    boot: int = 0
    status: dict[str, float] = field(default_factory=dict)
    status_ms: int | None = None
    online: bool | None = None  # None: unknown (no state message yet)
    records: int = 0
    gaps: int = 0  # sequence numbers skipped by the node (quota drops, losses)
    seq_resets: int = 0  # times the node reused seqs for new records (flash wiped) and was resynced
    version: int = 0  # bumps on every change

    def copy(self) -> NodeState:
        c = NodeState(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        c.values = dict(self.values)
        c.status = dict(self.status)
        return c


class TagStore:
    def __init__(
        self,
        node_ids: Iterable[str] = (),
        stale_after_s: float = 30.0,
        offline_after_s: float = 120.0,
    ) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeState] = {n: NodeState(n) for n in node_ids}
        self.stale_after_ms = int(stale_after_s * 1000)
        self.offline_after_ms = int(offline_after_s * 1000)
        self._listeners: list[Callable[[set[str]], None]] = []

    # -- writers ---------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[set[str]], None]) -> None:
        """fn(changed_node_ids) is called after each applied change (from the writer's thread)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[set[str]], None]) -> None:
        """Stop calling fn (compared with ==, so a bound method works; no error if absent).

        The list is replaced, not mutated: a _notify running in the writer's thread finishes
        over the old list."""
        self._listeners = [f for f in self._listeners if f != fn]

    def ensure_node(self, node_id: str) -> None:
        with self._lock:
            self._nodes.setdefault(node_id, NodeState(node_id))

    def apply(
        self, records: Iterable[Record], received_ms: int | None = None, counts: dict[str, int] | None = None
    ) -> set[str]:
        """Apply stored records (any order); returns the nodes whose tags changed.

        `counts` (records stored per node) lets a caller pass only the records that can change
        a tag (per node the highest seq and the newest per kind) and still count them all.
        """
        changed: set[str] = set()
        t = received_ms if received_ms is not None else now_ms()
        # Only the newest record of each node and kind can become the live value.
        newest: dict[tuple[str, int], tuple[int, int, Record]] = {}
        given = counts is not None
        counts = dict(counts) if given else {}
        top: dict[str, Record] = {}
        for r in records:
            if not given:
                counts[r.node_id] = counts.get(r.node_id, 0) + 1
            if r.node_id not in top or r.seq > top[r.node_id].seq:
                top[r.node_id] = r
            if r.historical and not r.clock_synced:
                continue  # backlog from a boot that never synced: its time is unknown, history only
            src = r.device_time_ms if r.clock_synced else (r.received_ms or t)
            k = (r.node_id, r.kind)
            if k not in newest or (src, r.seq) >= newest[k][:2]:
                newest[k] = (src, r.seq, r)
        with self._lock:
            for node_id, n in counts.items():
                st = self._nodes.get(node_id)
                if st is None:
                    st = self._nodes[node_id] = NodeState(node_id)
                st.records += n
                r = top[node_id]
                if r.seq > st.last_seq:
                    st.last_seq = r.seq
                    st.boot = r.boot
            for src, _, r in newest.values():
                st = self._nodes[r.node_id]
                if r.kind == KIND_MEASUREMENT:
                    if st.source_ms is not None and src < st.source_ms:
                        continue  # older than what we show: history only
                    st.values = r.named()
                    st.source_ms = src
                    st.server_ms = t
                    st.flags = r.flags
                elif r.kind == KIND_STATUS:
                    if st.status_ms is not None and src < st.status_ms:
                        continue
                    st.status = r.named()
                    st.status_ms = src
                else:
                    continue
                st.version += 1
                changed.add(r.node_id)
        self._notify(changed)
        return changed

    def add_gaps(self, node_id: str, missing: int) -> None:
        """Count sequence numbers that will never arrive (found by the ingest pipeline)."""
        with self._lock:
            st = self._nodes.setdefault(node_id, NodeState(node_id))
            st.gaps += missing
            st.version += 1
        self._notify({node_id})

    def add_seq_reset(self, node_id: str) -> None:
        """Count a sequence reset of the node (docs/protocol.md 3.1; found by the ingest)."""
        with self._lock:
            st = self._nodes.setdefault(node_id, NodeState(node_id))
            st.seq_resets += 1
            st.version += 1
        self._notify({node_id})

    def set_online(self, node_id: str, online: bool) -> None:
        with self._lock:
            st = self._nodes.setdefault(node_id, NodeState(node_id))
            if st.online == online:
                return
            st.online = online
            st.version += 1
        self._notify({node_id})

    def _notify(self, changed: set[str]) -> None:
        if changed:
            for fn in self._listeners:
                fn(changed)

    # -- readers ---------------------------------------------------------------------------

    def node_ids(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    def get(self, node_id: str) -> NodeState | None:
        with self._lock:
            st = self._nodes.get(node_id)
            return st.copy() if st else None

    def snapshot(self) -> dict[str, NodeState]:
        with self._lock:
            return {k: v.copy() for k, v in self._nodes.items()}

    def quality(self, st: NodeState, at_ms: int | None = None) -> Quality:
        if st.server_ms is None:
            return Quality.INITIAL
        t = at_ms if at_ms is not None else now_ms()
        age = t - st.server_ms
        if st.online is False or age > self.offline_after_ms:
            return Quality.OFFLINE
        if age > self.stale_after_ms:
            return Quality.STALE
        return Quality.GOOD

    def value(self, node_id: str, name: str) -> float:
        st = self.get(node_id)
        return st.values.get(name, math.nan) if st else math.nan
