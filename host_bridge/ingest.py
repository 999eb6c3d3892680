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
import time
from collections.abc import Callable
from dataclasses import dataclass

from host_bridge import codec
from host_bridge.codec import RawRecord, raw_to_record
from host_bridge.metrics import Counters
from host_bridge.model import FLAG_CLOCK_SYNCED, FLAG_HISTORICAL, FLAG_PREVIEW, Record
from host_bridge.ratelimit import RateLimiter
from host_bridge.store import Historian, SeqConflict
from host_bridge.tags import TagStore, now_ms

log = logging.getLogger("host_bridge.ingest")

# reply(node_id, acked_seq, next_seq=0, frontier=False): an ack (docs/protocol.md section 3);
# next_seq > 0 makes it a RESYNC, frontier=True says acked_seq is the in-order frontier.
Reply = Callable[..., None]


@dataclass
class Inbound:
    payload: bytes
    source: str  # "mqtt" or "serial:<port>"
    expected_node: str | None  # node id the topic / serial session vouches for
    reply: Reply | None
    received_ms: int = 0
    decoded: tuple[str, list[RawRecord]] | None = None  # decoded on arrival (submit)
    shown: bool = False  # its records went to the tags on arrival, before the commit
    bypassed: bool = False  # left to the worker on arrival (its node's maximum is settled there)


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
        self._resync: dict[str, int] = {}  # last RESYNC next_seq per node (one reset, many resends)
        # Records above every seq seen for their node are shown on arrival (submit), before the
        # commit; _seen is the highest seq of each node seen on arrival (or held at start).
        self.apply_before_commit = True
        self.early_max_queue = 16  # ... while fewer payloads than this wait for the worker
        # ... and for at most this many payload bytes/s (burst 1/10 of it): live traffic (1,000
        # nodes at one ~190-byte record/s) is all shown early; a flood or a drain is decoded
        # by the worker, in groups, so the input's thread keeps receiving at full speed
        self.early_rate = 1_000_000.0
        self._early_tokens = 100_000.0
        self._early_t = time.monotonic()
        self._pending: dict[str, int] = {}  # node -> bypassed payloads the worker has not settled
        self._seen: dict[str, int] = {}
        self._seen_lock = threading.Lock()  # several inputs (MQTT, serial ports) submit at once
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
        fresh = False
        if self.apply_before_commit and self._take_early(msg):
            msg.decoded = self.decode_raw(msg)
            if msg.decoded is None:
                return False  # rejected and counted; nothing to store or ack
            fresh = self._fresh(*msg.decoded)  # always: it keeps the running maximum
            if fresh and self._q.qsize() >= self.early_max_queue:
                # a backlog is queued (a drain, a flood): the worker's group apply costs less
                # per record, and no one waits on this batch's latency more than on the queue
                fresh = False
            msg.shown = fresh
        try:
            self._q.put_nowait(msg)
        except queue.Full:
            self.counters.inc("ingest_queue_full")
            msg.shown = False
            if msg.bypassed:
                self._settle(msg.expected_node, None)
            return False
        if fresh:
            node_id, raws = msg.decoded
            self._apply_tags([(node_id, msg.received_ms, msg.source, raws)], None)
            self.counters.inc("batches_shown_early")
        return True

    def _take_early(self, msg: Inbound) -> bool:
        """May this payload be decoded and shown on arrival? Not while its node has bypassed
        payloads in the queue (its running maximum would miss them), and not past the early
        budget; a bypassed payload is counted against its node until the worker settles it."""
        node = msg.expected_node
        if node is None:
            return True  # the node is known only from the payload: decode it here
        with self._seen_lock:
            now = time.monotonic()
            burst = self.early_rate / 10
            self._early_tokens = min(burst, self._early_tokens + (now - self._early_t) * self.early_rate)
            self._early_t = now
            size = len(msg.payload)
            if self._early_tokens >= size and not self._pending.get(node):
                self._early_tokens -= size
                return True
            self._pending[node] = self._pending.get(node, 0) + 1
        msg.bypassed = True
        self.counters.inc("batches_bypassed_early")
        return False

    def _settle(self, node: str | None, raws: list[RawRecord] | None) -> None:
        """A bypassed payload is done (committed, refused or failed): raise its node's running
        maximum past its seqs (never lower: that only shows fewer batches early) and release
        the node for early display once none of its payloads is left in the worker's hands."""
        if node is None:
            return
        with self._seen_lock:
            n = self._pending.get(node, 0) - 1
            if n > 0:
                self._pending[node] = n
            else:
                self._pending.pop(node, None)
            if raws and node in self._seen:
                top = max(r[0] for r in raws)
                if top > self._seen[node]:
                    self._seen[node] = top

    def _fresh(self, node_id: str, raws: list[RawRecord]) -> bool:
        """Is every record of this batch above every seq seen for the node (on arrival, and
        held by the historian at start, previews included)? Then it can be neither a resend
        nor a sequence reset: it will be stored, and its values can be shown before the commit
        (which ends in an fsync: milliseconds on an SSD, tens on a disk, more while a WAL
        checkpoint runs). Only its ack waits for the commit. Every batch passes here in
        arrival order, fresh or not, so the running maximum needs nothing from the worker."""
        if not raws:
            return False
        seqs = [r[0] for r in raws]
        with self._seen_lock:
            seen = self._seen.get(node_id)
            if seen is None:
                seen = self._seen[node_id] = self.historian.max_seq(node_id, previews=True)
            top = max(seqs)
            if top > seen:
                self._seen[node_id] = top
            return min(seqs) > seen

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
        """Decode, store, apply and ack one group of inbound payloads (synchronously); then
        settle the payloads that bypassed the early display (see submit)."""
        decoded_of: dict[int, list[RawRecord]] = {}
        try:
            self._process(group, decoded_of)
        finally:
            for m in group:
                if m.bypassed:
                    self._settle(m.expected_node, decoded_of.get(id(m)))

    def _process(self, group: list[Inbound], decoded_of: dict[int, list[RawRecord]]) -> None:
        """Decode, store, apply and ack one group of inbound payloads (synchronously).

        The hot path keeps records raw (header fields + the values' wire bytes, which are also
        what the historian stores); Record objects are made only for the few records that can
        become live tag values (docs/store-and-forward.md, "Bridge ingest").
        """
        accepted: list[tuple[Inbound, str, list[RawRecord]]] = []
        n_in = 0
        for m in group:
            decoded = m.decoded if m.decoded is not None else self.decode_raw(m)
            if decoded is None:
                continue
            decoded_of[id(m)] = decoded[1]
            accepted.append((m, decoded[0], decoded[1]))
            n_in += len(decoded[1])
        if not accepted:
            return
        for node_id in {a[1] for a in accepted} - self._last_seq.keys():
            self._last_seq[node_id] = self.historian.max_seq(node_id)  # 0: a node we never saw
        batches = [(node_id, m.received_ms, m.source, raws) for m, node_id, raws in accepted]
        early = {id(b) for b, (m, _, _) in zip(batches, accepted) if m.shown}
        insert_raw = getattr(self.historian, "insert_raw", None)
        if insert_raw is not None:
            new_flags = insert_raw(batches) if n_in else None
        else:  # another Historian: the Record interface
            new_flags = self._insert_records(batches)
        refused: dict[int, SeqConflict] = {}
        if new_flags is not None:
            refused = {i: fl for i, fl in enumerate(new_flags) if isinstance(fl, SeqConflict)}
        if refused:  # sequence resets: those batches stored nothing and are answered with RESYNC
            keep = [i for i in range(len(batches)) if i not in refused]
            n_in -= sum(len(batches[i][3]) for i in refused)
            batches = [batches[i] for i in keep]
            new_flags = [new_flags[i] for i in keep]
        n_new = n_in if new_flags is None else sum(sum(fl) for fl in new_flags)
        self.counters.inc("records_in", n_in)
        self.counters.inc("records_stored", n_new)
        self.counters.inc("records_duplicate", n_in - n_new)
        self._count_gaps(batches)
        if early:  # shown before the commit already: apply only the rest
            if new_flags is None:
                new_flags = [[True] * len(b[3]) for b in batches]
            new_flags = [[False] * len(fl) if id(b) in early else fl for b, fl in zip(batches, new_flags)]
            n_new = sum(sum(fl) for fl in new_flags)
        if n_new:
            self._apply_tags(batches, new_flags)
        last_seq = self._last_seq
        for i, (m, node_id, raws) in enumerate(accepted):
            conflict = refused.get(i)
            if conflict is not None:
                self._refuse(m, node_id, raws, conflict)
                continue
            self.counters.inc("batches_ok")
            if m.reply is None:
                continue
            # The last in-order record of the batch; a batch of previews only is answered with
            # the in-order frontier (flagged so), so it never frees the node's unsent backlog.
            seq = 0
            for r in reversed(raws):
                if not r[3] & FLAG_PREVIEW:
                    seq = r[0]
                    break
            try:
                if seq:
                    m.reply(node_id, seq)
                else:
                    m.reply(node_id, last_seq.get(node_id, 0), frontier=True)
                self.counters.inc("acks_sent")
            except Exception as e:  # the link dropped; the node will resend and we dedupe
                log.warning("ack to %s via %s failed: %s", node_id, m.source, e)
                self.counters.inc("acks_failed")

    def _refuse(self, m: Inbound, node_id: str, raws: list[RawRecord], c: SeqConflict) -> None:
        """A batch reused a seq for another record: the node lost its numbering (flash wiped,
        board replaced under the same id). Acking it as a duplicate would make the node free
        records nobody stored; store nothing, tell it where to number on (docs/protocol.md 3.1)."""
        self.counters.inc("batches_seq_conflict")
        nxt = self.historian.max_seq(node_id, previews=True) + 1
        if self._resync.get(node_id) != nxt:  # one reset, however often the batch is resent
            self._resync[node_id] = nxt
            self.counters.inc("seq_resets")
            self.tags.add_seq_reset(node_id)
            log.warning(
                "node %s reused seq %d for another record (stored boot %d kind %d t=%d.%03d, got boot %d kind %d "
                "t=%d.%03d): sequence reset (flash wiped?), batch of %d refused, node told to number on from %d",
                node_id, c.seq, *c.stored[:2], *c.stored[3:5], *c.got[:2], *c.got[3:5], len(raws), nxt,
            )
        if m.reply is None:
            return
        try:
            m.reply(node_id, 0, next_seq=nxt)
            self.counters.inc("acks_resync")
        except Exception as e:
            log.warning("resync to %s via %s failed: %s", node_id, m.source, e)
            self.counters.inc("acks_failed")

    def _insert_records(self, batches) -> list[list[bool]] | None:
        recs = [raw_to_record(node, r, rcv, src) for node, rcv, src, raws in batches for r in raws]
        if not recs:
            return None
        new = {(r.node_id, r.seq) for r in self.historian.insert(recs)}
        if len(new) == len(recs):
            return None
        out, seen = [], set()
        for node, _, _, raws in batches:
            fl = []
            for r in raws:
                k = (node, r[0])
                fl.append(k in new and k not in seen)
                seen.add(k)
            out.append(fl)
        return out

    def _apply_tags(self, batches, new_flags) -> None:
        """Hand the tag store only what can change it: per node the highest seq, and per node
        and kind the newest record by (source time, seq) that may become a live value (not a
        backlog record of a boot that never synced). Counts are passed along."""
        counts: dict[str, int] = {}
        top: dict[str, tuple] = {}
        best: dict[tuple[str, int], tuple] = {}
        for i, (node, rcv, src, raws) in enumerate(batches):
            fl = None if new_flags is None else new_flags[i]
            n = 0
            for j, r in enumerate(raws):
                if fl is not None and not fl[j]:
                    continue
                n += 1
                seq, _, kind, flags = r[0], r[1], r[2], r[3]
                t = top.get(node)
                if t is None or seq > t[0][0]:
                    top[node] = (r, rcv, src)
                if flags & FLAG_HISTORICAL and not flags & FLAG_CLOCK_SYNCED:
                    continue
                key = (node, kind)
                when = (r[4] * 1000 + r[5] if flags & FLAG_CLOCK_SYNCED else rcv, seq)
                b = best.get(key)
                if b is None or when >= b[0]:
                    best[key] = (when, r, rcv, src)
            if n:
                counts[node] = counts.get(node, 0) + n
        picked: dict[tuple[str, int], Record] = {}
        for (node, _), (_, r, rcv, src) in best.items():
            picked[(node, r[0])] = raw_to_record(node, r, rcv, src)
        for node, (r, rcv, src) in top.items():
            if (node, r[0]) not in picked:
                picked[(node, r[0])] = raw_to_record(node, r, rcv, src)
        self.tags.apply(list(picked.values()), counts=counts)

    def _count_gaps(self, batches) -> None:
        """Nodes forward oldest first, so a jump in seq is records that will never come.

        Only the in-order stream counts (resends included, they change nothing): a preview is
        ahead of the stream by design and its in-order copy follows. Seqs the historian holds
        as previews (of records a cut then took from the node) are not counted as lost.
        """
        spans = []
        for node, _, _, raws in batches:
            if not raws:
                continue
            first, last = raws[0], raws[-1]
            if (first[3] | last[3]) & FLAG_PREVIEW or last[0] - first[0] + 1 != len(raws):
                seqs = [r[0] for r in raws if not r[3] & FLAG_PREVIEW]
                if seqs:
                    spans.append((node, seqs[0], seqs))
            else:
                spans.append((node, first[0], (first[0], last[0])))
        if len(spans) > 1:
            spans.sort(key=lambda s: (s[0], s[1]))
        for node, _, seqs in spans:
            if len(seqs) == 2 and isinstance(seqs, tuple):  # a contiguous run
                self._gap_step(node, seqs[0])
                if seqs[1] > self._last_seq.get(node, 0):
                    self._last_seq[node] = seqs[1]
            else:
                for s in seqs:
                    self._gap_step(node, s)

    def _gap_step(self, node: str, seq: int) -> None:
        last = self._last_seq.get(node, 0)
        if last and seq > last + 1:
            missing = seq - last - 1
            held = getattr(self.historian, "count_between", None)
            if held is not None:  # previews of records the node then lost in a cut
                missing -= held(node, last + 1, seq - 1)
            if missing > 0:
                self.counters.inc("seq_gaps", missing)
                self.tags.add_gaps(node, missing)
                log.warning("node %s skipped %d records before seq %d (seqs %d..%d)", node, missing, seq,
                            last + 1, seq - 1)
        if seq > last:
            self._last_seq[node] = seq

    def decode_raw(self, m: Inbound) -> tuple[str, list[RawRecord]] | None:
        try:
            node_id, raws = codec.decode_batch_raw(m.payload)
        except codec.CodecError as e:
            self.counters.inc(f"rejected_{e.reason}")
            self.counters.inc("batches_rejected")
            log.warning("rejected batch from %s: %s", m.source, e)
            return None
        if not self._node_ok(m, node_id):
            return None
        return node_id, raws

    def _node_ok(self, m: Inbound, node_id: str) -> bool:
        if m.expected_node is not None and node_id != m.expected_node:
            self.counters.inc("rejected_node_mismatch")
            self.counters.inc("batches_rejected")
            log.warning("rejected batch from %s: node id %r does not match %r", m.source, node_id, m.expected_node)
            return False
        if self.known_nodes is not None and node_id not in self.known_nodes:
            self.counters.inc("rejected_unknown_node")
            self.counters.inc("batches_rejected")
            log.warning("rejected batch from %s: unknown node %r (not in the config)", m.source, node_id)
            return False
        return True

    def decode(self, m: Inbound) -> tuple[str, list[Record]] | None:
        """Validate one payload into Records (for tools and tests; the pipeline stays raw)."""
        decoded = self.decode_raw(m)
        if decoded is None:
            return None
        node_id, raws = decoded
        return node_id, [raw_to_record(node_id, r, m.received_ms, m.source) for r in raws]
