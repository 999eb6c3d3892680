"""The link reports in; a broker outage is bridged by the node's flash journal, nothing lost."""

from __future__ import annotations

import time

from tools.commission import check


def _contiguous(seqs):
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_link_reports_in(running):
    rig = running
    v = check(rig.node, 30, historian=rig.bridge.cfg.data_dir)
    assert v.ok, v.reason
    seqs = rig.historian.seqs(rig.node)
    assert seqs[0] == 1 and _contiguous(seqs)


def test_link_loss_and_recovery(running):
    rig = running
    before = rig.max_seq()
    rig.broker.stop()
    outage_s = 4.0
    time.sleep(outage_s)  # the node keeps measuring into its journal
    rig.broker.start()
    # at ~1 window/s the outage leaves >= 3 records to backfill, then live ones follow
    # Live windows come first (as previews) and the backlog fills in behind them, so the stored
    # sequence has a hole until the backfill is through; then it must have none.
    rig.wait(lambda: rig.max_seq() >= before + outage_s + 2 and _contiguous(rig.historian.seqs(rig.node)), 60,
             "backfill after the broker came back, without a gap")
    seqs = rig.historian.seqs(rig.node)
    assert _contiguous(seqs), "gap in the stored sequence after the outage"
    backfilled = [r for r in rig.measurements(before) if r.historical]
    assert backfilled, "records from the outage should arrive flagged HISTORICAL"
