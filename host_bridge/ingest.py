"""The ingest pipeline: batches from any input -> validate -> historian -> tags -> ack.

Inputs hand raw payloads to `submit()` from their own threads. One worker thread decodes them,
commits everything it has in one transaction (group commit), applies the new records to the
tag store and only then acknowledges each batch through the input's `reply` callback.
Nothing is acknowledged that is not committed; a bad batch is counted and dropped whole.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from host_bridge import codec
from host_bridge.metrics import Counters
from host_bridge.model import FLAG_PREVIEW, Record
from host_bridge.ratelimit import RateLimiter
from host_bridge.store import Historian
from host_bridge.tags import TagStore, now_ms

log = logging.getLogger("host_bridge.ingest")

Reply = Callable[[str, int], None]  # reply(node_id, acked_seq)


@dataclass
class Inbound:
    payload: bytes
    source: str  # "mqtt" or "serial:<port>"
    expected_node: str | None  # node id the topic / serial session vouches for
    reply: Reply | None
    received_ms: int = 0


class Ingest:
    def __init__(
        self,
        historian: Historian,
        tags: TagStore,
        counters: Counters,
        known_nodes: set[str] | None = None,
        max_queue: int = 20000,
        max_group: int = 512,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.historian = historian
        self.tags = tags
        self.counters = counters
        self.known_nodes = known_nodes  # None: accept any node id
        self._q: queue.Queue[Inbound | None] = queue.Queue(maxsize=max_queue)
        self._max_group = max_group
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_seq: dict[str, int] = {}  # highest stored seq per node, for gap detection
        # per-node token bucket before the queue (host_bridge/ratelimit.py); RateLimiter(0): off
        self.limiter = rate_limiter if rate_limiter is not None else RateLimiter()

    # -- inputs call this -----------------------------------------------------------------

    def submit(self, msg: Inbound) -> bool:
        """Queue a payload; False (and a counter) when the queue is full."""
        if not msg.received_ms:
            msg.received_ms = now_ms()
        node = msg.expected_node
        if self.known_nodes is not None and node is not None and node not in self.known_nodes:
            # the topic names a node we do not serve: refuse before it takes queue space
            self.counters.inc("rejected_unknown_node")
            self.counters.inc("batches_rejected")
            n = self.counters.get("rejected_unknown_node")
            if n & (n - 1) == 0:  # the first, then at powers of two: a flood cannot flood the log
                log.warning("rejected batch from %s: unknown node %r (not in the config), %d so far",
                            msg.source, node, n)
            return False
        if not self.limiter.allow(node or msg.source):
            self.counters.inc("rate_limited")  # not acked: an honest node resends later
            n = self.counters.get("rate_limited")
            if n & (n - 1) == 0:
                log.warning("%s over its rate limit (%g batches/s): dropped, not acked; %d so far",
                            node or msg.source, self.limiter.rate, n)
            return False
        try:
            self._q.put_nowait(msg)
            return True
        except queue.Full:
            self.counters.inc("ingest_queue_full")
            return False

    # -- worker ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (commit and ack it), then stop."""
        if self._thread is None:
            return
        self._stopping.set()
        self._q.put(None)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while True:
            first = self._q.get()
            group: list[Inbound] = [] if first is None else [first]
            stopping = stopping or first is None
            while len(group) < self._max_group:
                try:
                    m = self._q.get_nowait()
                except queue.Empty:
                    break
                if m is None:
                    stopping = True
                else:
                    group.append(m)
            if group:
                try:
                    self.process(group)
                except Exception:  # keep the bridge up; the nodes will resend
                    log.exception("ingest group of %d failed; nothing acked", len(group))
                    self.counters.inc("ingest_errors")
            if stopping:
                # Finish only what was queued when told to stop: inputs may still deliver,
                # and whatever comes later is resent by the nodes (nothing was acked).
                self._drain_once()
                return

    def _drain_once(self) -> None:
        left = self._q.qsize()
        while left > 0:
            group: list[Inbound] = []
            while left > 0 and len(group) < self._max_group:
                left -= 1
                try:
                    m = self._q.get_nowait()
                except queue.Empty:
                    left = 0
                    break
                if m is not None:
                    group.append(m)
            if group:
                try:
                    self.process(group)
                except Exception:
                    log.exception("ingest group of %d failed at shutdown; nothing acked", len(group))
                    self.counters.inc("ingest_errors")

    def process(self, group: list[Inbound]) -> None:
        """Decode, store, apply and ack one group of inbound payloads (synchronously)."""
        accepted: list[tuple[Inbound, str, list[Record]]] = []
        records: list[Record] = []
        for m in group:
            decoded = self.decode(m)
            if decoded is None:
                continue
            node_id, recs = decoded
            accepted.append((m, node_id, recs))
            records.extend(recs)
        for node_id in {a[1] for a in accepted} - self._last_seq.keys():
            self._last_seq[node_id] = self.historian.max_seq(node_id)  # 0: a node we never saw
        new = self.historian.insert(records) if records else []
        self.counters.inc("records_stored", len(new))
        self.counters.inc("records_duplicate", len(records) - len(new))
        self._count_gaps(records)
        if new:
            self.tags.apply(new)
        for m, node_id, recs in accepted:
            self.counters.inc("batches_ok")
            if m.reply is None:
                continue
            # The last in-order record of the batch; a batch of previews only is answered with
            # the in-order frontier, so it never frees the node's unsent backlog.
            seq = 0
            for r in reversed(recs):
                if not r.flags & FLAG_PREVIEW:
                    seq = r.seq
                    break
            if not seq:
                seq = self._last_seq.get(node_id, 0)
            try:
                m.reply(node_id, seq)
                self.counters.inc("acks_sent")
            except Exception as e:  # the link dropped; the node will resend and we dedupe
                log.warning("ack to %s via %s failed: %s", node_id, m.source, e)
                self.counters.inc("acks_failed")

    def _count_gaps(self, records: list[Record]) -> None:
        """Nodes forward oldest first, so a jump in seq is records that will never come.

        Only the in-order stream counts (resends included, they change nothing): a preview is
        ahead of the stream by design and its in-order copy follows.
        """
        inorder = [r for r in records if not r.flags & FLAG_PREVIEW]
        if len(inorder) > 1:
            inorder.sort(key=lambda r: (r.node_id, r.seq))
        for r in inorder:
            last = self._last_seq.get(r.node_id, 0)
            if last and r.seq > last + 1:
                missing = r.seq - last - 1
                held = getattr(self.historian, "count_between", None)
                if held is not None:  # previews of records the node then lost in a cut
                    missing -= held(r.node_id, last + 1, r.seq - 1)
                if missing <= 0:
                    self._last_seq[r.node_id] = r.seq
                    continue
                self.counters.inc("seq_gaps", missing)
                self.tags.add_gaps(r.node_id, missing)
                log.warning("node %s skipped %d records before seq %d (seqs %d..%d)", r.node_id, missing, r.seq,
                            last + 1, r.seq - 1)
            if r.seq > last:
                self._last_seq[r.node_id] = r.seq

    def decode(self, m: Inbound) -> tuple[str, list[Record]] | None:
        try:
            node_id, recs = codec.decode_batch(m.payload, m.received_ms, m.source)
        except codec.CodecError as e:
            self.counters.inc(f"rejected_{e.reason}")
            self.counters.inc("batches_rejected")
            log.warning("rejected batch from %s: %s", m.source, e)
            return None
        if m.expected_node is not None and node_id != m.expected_node:
            self.counters.inc("rejected_node_mismatch")
            self.counters.inc("batches_rejected")
            log.warning("rejected batch from %s: node id %r does not match %r", m.source, node_id, m.expected_node)
            return None
        if self.known_nodes is not None and node_id not in self.known_nodes:
            self.counters.inc("rejected_unknown_node")
            self.counters.inc("batches_rejected")
            log.warning("rejected batch from %s: unknown node %r (not in the config)", m.source, node_id)
            return None
        self.counters.inc("records_in", len(recs))
        return node_id, recs
