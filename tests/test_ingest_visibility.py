"""Live values are shown before their commit; acks still wait for it (host_bridge/ingest.py).

The real SqliteHistorian (WAL, synchronous=FULL) with its commit held open by a gate, so what
the tag store shows and what the node is told can be checked while the commit is in flight.
"""

from __future__ import annotations

import threading
import time

import pytest

from host_bridge.codec import encode_batch, encode_record
from host_bridge.ingest import Inbound, Ingest
from host_bridge.metrics import Counters
from host_bridge.store import SqliteHistorian
from host_bridge.tags import TagStore

T0 = 1795300000


class GatedHistorian(SqliteHistorian):
    """insert_raw waits for `gate` (a commit taking an fsync, made as long as the test likes)."""

    def __init__(self, path):
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def insert_raw(self, batches):
        self.entered.set()
        assert self.gate.wait(10)
        return super().insert_raw(batches)


def batch(node, seqs, temp0=20.0):
    return encode_batch(node, [encode_record(s, 1, 0, 1, T0 + s, 0, [temp0 + s, 0.1, 0.2, 0.3]) for s in seqs])


@pytest.fixture
def pipeline(tmp_path):
    hist = GatedHistorian(tmp_path / "h.db")
    tags = TagStore(["n1"])
    ing = Ingest(hist, tags, Counters())
    ing.start()
    yield hist, tags, ing
    hist.gate.set()
    ing.stop()
    hist.close()


class Acks(list):
    def __call__(self, node, seq, **kw):
        self.append(seq)


def submit(ing, hist, payloads):
    """Hand payloads to the pipeline as an input would; returns once the worker is inside
    the commit of the first of them (held open by the gate)."""
    acks = Acks()
    hist.entered.clear()
    hist.gate.clear()
    for p in payloads:
        assert ing.submit(Inbound(p, "mqtt", "n1", acks))
    assert hist.entered.wait(5)
    return acks


def finish(hist, ing, acks, n):
    hist.gate.set()
    deadline = time.monotonic() + 5
    while len(acks) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # nothing more arrives


def test_new_records_are_visible_before_the_commit_and_acked_after(pipeline):
    hist, tags, ing = pipeline
    acks = submit(ing, hist, [batch("n1", [1, 2, 3])])
    # the commit has not happened: the value is shown, nothing is acknowledged
    assert tags.value("n1", "temperature") == pytest.approx(23.0)
    assert tags.get("n1").last_seq == 3 and tags.get("n1").records == 3
    assert acks == [] and hist.max_seq("n1") == 0
    finish(hist, ing, acks, 1)
    assert acks == [3] and hist.max_seq("n1") == 3
    assert tags.get("n1").records == 3  # applied once, not again after the commit


def test_resends_and_overlaps_wait_for_the_commit_and_count_once(pipeline):
    hist, tags, ing = pipeline
    acks = submit(ing, hist, [batch("n1", [1, 2, 3])])
    finish(hist, ing, acks, 1)
    # a resend of 2..3 plus the new 4 (a lost ack): 2 and 3 are held, so the batch could be a
    # duplicate or a sequence reset; it is shown only once the historian has judged it
    acks = submit(ing, hist, [batch("n1", [2, 3, 4])])
    assert tags.get("n1").last_seq == 3 and tags.value("n1", "temperature") == pytest.approx(23.0)
    finish(hist, ing, acks, 1)
    assert acks == [4] and tags.get("n1").last_seq == 4 and tags.value("n1", "temperature") == pytest.approx(24.0)
    assert tags.get("n1").records == 4  # 2 and 3 were duplicates: counted once
    # a batch and its resend (the node resent while the first sat in the queue): the first
    # is shown on arrival, the copy after the commit, as a duplicate
    acks = submit(ing, hist, [batch("n1", [5, 6]), batch("n1", [5, 6])])
    assert tags.get("n1").last_seq == 6 and tags.get("n1").records == 6
    finish(hist, ing, acks, 2)
    assert acks == [6, 6] and tags.get("n1").records == 6


def test_a_sequence_reset_is_never_shown(pipeline):
    hist, tags, ing = pipeline
    acks = submit(ing, hist, [batch("n1", [1, 2, 3])])
    finish(hist, ing, acks, 1)
    # a wiped node starts at 1 again with other readings: refused whole, values not shown
    acks = submit(ing, hist, [batch("n1", [1, 2, 3, 4, 5], temp0=60.0)])
    assert tags.value("n1", "temperature") == pytest.approx(23.0)
    finish(hist, ing, acks, 1)
    assert tags.value("n1", "temperature") == pytest.approx(23.0) and tags.get("n1").last_seq == 3
    assert acks == [0] and ing.counters.get("seq_resets") == 1


def test_with_a_backlog_queued_new_batches_wait_for_the_group_commit(pipeline):
    """Early display is for live traffic; once payloads queue up (a drain, a flood) the
    worker's grouped apply is cheaper per record, so later batches are shown after the commit."""
    hist, tags, ing = pipeline
    ing.early_max_queue = 4
    acks = submit(ing, hist, [batch("n1", [1])])  # the worker now sits in this commit
    for s in range(2, 12):
        assert ing.submit(Inbound(batch("n1", [s]), "mqtt", "n1", acks))
    # 2..5 were shown on arrival (queue shorter than 4), 6..11 wait for their commit
    assert tags.get("n1").last_seq == 5 and tags.get("n1").records == 5
    finish(hist, ing, acks, 11)
    assert tags.get("n1").last_seq == 11 and tags.get("n1").records == 11
    assert sorted(acks) == list(range(1, 12)) and hist.max_seq("n1") == 11


def test_batches_past_the_early_budget_go_to_the_worker_and_keep_the_node_maximum(pipeline):
    """Past the early budget (a flood) payloads are decoded by the worker; while one of a
    node's is there, the node's later batches are not shown early either (the running maximum
    would miss it), and once the worker has settled it a resend is still recognised."""
    hist, tags, ing = pipeline
    ing.early_rate, ing._early_tokens = 0.0, 0.0  # budget spent
    acks = submit(ing, hist, [batch("n1", [1, 2, 3])])
    assert tags.get("n1").records == 0  # not shown before its commit
    ing.early_rate, ing._early_tokens = 1e6, 1e5  # budget back, but n1 has a payload in the worker's hands
    assert ing.submit(Inbound(batch("n1", [2, 3, 4]), "mqtt", "n1", acks))
    assert tags.get("n1").records == 0
    finish(hist, ing, acks, 2)
    assert tags.get("n1").records == 4 and tags.get("n1").last_seq == 4 and ing._pending == {}
    acks = submit(ing, hist, [batch("n1", [3, 4]), batch("n1", [5])])  # a resend, then a new one
    assert tags.get("n1").last_seq == 5 and tags.get("n1").records == 5  # only 5 shown early
    finish(hist, ing, acks, 2)
    assert sorted(acks) == [4, 5] and tags.get("n1").records == 5
