"""Power cut while the node runs: it boots again, counts the boot, reuses no seq.

What the journal promises (docs/journal.md): everything flushed to flash before the cut
reaches the bridge; records still staged in RAM (at most journal.flush_records) are lost, and
the next boot skips their seqs so none is ever reused: the bridge sees that as a counted gap.
"""

from __future__ import annotations

FLUSH_RECORDS = 8  # vibenode.config default journal.flush_records


def test_power_cut(running):
    rig = running
    before = rig.historian.seqs(rig.node)
    boot = rig.measurements()[-1].boot
    how = rig.dut.power_cut()
    recs = rig.wait_reporting(60, boot=boot + 1)
    assert recs[-1].boot == boot + 1, how
    seqs = rig.historian.seqs(rig.node)
    assert seqs[: len(before)] == before, "records stored before the cut changed"
    assert seqs == sorted(set(seqs)), "a seq was reused after the power cut"
    gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    assert len(gaps) <= 1, f"more than one gap: {gaps} ({how})"
    for a, b in gaps:
        assert b - a - 1 <= FLUSH_RECORDS, f"lost {b - a - 1} records at the cut, more than flush_records ({how})"
