# heap: 96K
# Journal on littlefs on a file-backed image (the virtual board's flash), on the real VM.
import os

import mptest
import vfs
from ports.unix_flash import mount_flash
from vibenode.journal import Journal

MP = "/flash"
ROOT = "/flash/journal"
_img = [0]


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def fresh(blocks=64):
    """Unmount the previous image, mount a new empty one."""
    try:
        vfs.umount(MP)
    except OSError:
        pass
    _img[0] += 1
    name = "j%d.img" % _img[0]
    try:
        os.remove(name)
    except OSError:
        pass
    return mount_flash(name, MP, blocks=blocks)


def remount():
    vfs.umount(MP)
    return mount_flash("j%d.img" % _img[0], MP)


def rec(seq, n=40):
    b = bytearray(n)
    b[0] = seq & 0xFF
    b[1] = (seq >> 8) & 0xFF
    b[2] = (seq >> 16) & 0xFF
    b[3] = (seq >> 24) & 0xFF
    for i in range(4, n):
        b[i] = (seq * 7 + i) & 0xFF
    return bytes(b)


def seqs(recs):
    return [r[0] | (r[1] << 8) | (r[2] << 16) | (r[3] << 24) for r in recs]


def fill(j, count, n=40):
    for _ in range(count):
        j.append(rec(j.next_seq, n))


def segment_files():
    return sorted(n for n in os.listdir(ROOT) if "-" in n)


def test_append_flush_pending_ack():
    fresh()
    clock = Clock()
    j = Journal(ROOT, flush_records=4, flush_ms=1000, now_ms=clock)
    assert j.next_seq == 1 and j.depth == 0 and j.pending(1000) == []
    assert j.append(rec(1)) == 1
    assert j.staged == 1 and segment_files() == []
    assert seqs(j.pending(1000)) == [1]  # staged records are pending too
    fill(j, 3)  # 4th record reaches flush_records: written
    assert j.staged == 0 and segment_files() == ["00000001-00000004"]
    fill(j, 2)
    assert j.depth == 6 and seqs(j.pending(10000)) == [1, 2, 3, 4, 5, 6]
    assert seqs(j.pending(100)) == [1, 2]  # 40-byte records, byte limit
    assert seqs(j.pending(10)) == [1]  # at least one record
    assert seqs(j.pending(10000, max_records=3)) == [1, 2, 3]
    assert j.pending(1000)[0] == rec(1)
    mptest.raises(ValueError, j.append, rec(99))  # wrong seq
    mptest.raises(ValueError, j.append, b"\x07\x00")  # too short
    j.ack(2)
    assert seqs(j.pending(10000)) == [3, 4, 5, 6] and j.depth == 4
    j.ack(1)  # stale ack: no effect
    assert j.depth == 4
    j.ack(4)  # segment fully acked: file removed
    assert segment_files() == [] and j.bytes_used == 0
    assert seqs(j.pending(10000)) == [5, 6]
    j.ack(6)  # staged records acked before a flush are never written
    assert j.depth == 0 and j.staged == 0
    j.flush()
    assert segment_files() == []
    j.ack(1000)  # beyond next_seq: clamped
    assert j.acked == 6
    j.close()


def test_poll_flushes_after_flush_ms():
    fresh()
    clock = Clock()
    j = Journal(ROOT, flush_records=100, flush_ms=500, now_ms=clock)
    fill(j, 2)
    clock.t = 499
    j.poll()
    assert j.staged == 2
    clock.t = 500
    j.poll()
    assert j.staged == 0 and segment_files() == ["00000001-00000002"]
    j.close()


def test_stage_full_flushes():
    fresh()
    j = Journal(ROOT, flush_records=100, stage_bytes=512)
    fill(j, 10, n=100)  # 106 bytes each stored: 4 fit in 512
    assert len(segment_files()) == 2 and j.staged == 2 and j.depth == 10
    assert seqs(j.pending(5000)) == list(range(1, 11))
    j.close()


def test_reboot_recovery():
    fresh()
    j = Journal(ROOT, flush_records=5)
    assert j.boot == 1
    fill(j, 12)
    j.ack(3)
    j.flush()
    j.close()
    remount()
    j = Journal(ROOT, flush_records=5)
    assert j.boot == 2
    assert j.next_seq == 13 and j.depth == 9
    got = j.pending(100000)
    assert seqs(got) == list(range(4, 13))
    assert got[-1] == rec(12)
    fill(j, 3)
    assert seqs(j.pending(100000)) == list(range(4, 16))
    j.close()
    remount()
    j = Journal(ROOT)
    assert j.boot == 3 and seqs(j.pending(100000)) == list(range(4, 16))
    j.close()


def test_unclean_reboot_never_reuses_staged_seqs():
    fresh()
    j = Journal(ROOT, flush_records=4)
    fill(j, 6)  # 1..4 on flash, 5..6 staged (and maybe already sent by the uplink)
    # power cut: no close()
    remount()
    j = Journal(ROOT, flush_records=4)
    assert seqs(j.pending(10000)) == [1, 2, 3, 4]
    assert j.next_seq > 6  # 5 and 6 were lost, their seqs stay unused
    j.close()


def test_next_seq_after_full_ack_and_reboot():
    fresh()
    j = Journal(ROOT, flush_records=4)
    fill(j, 10)
    j.ack(10)
    assert j.depth == 0 and segment_files() == []
    j.close()
    remount()
    j = Journal(ROOT, flush_records=4)
    assert j.next_seq == 11 and j.depth == 0
    j.append(rec(11))
    j.ack(11)
    # cut with nothing on flash: the cursor and the seq floor still move next_seq on
    remount()
    j = Journal(ROOT, flush_records=4)
    assert j.next_seq >= 12
    n = j.next_seq
    j.close()
    remount()
    j = Journal(ROOT, flush_records=4)
    assert j.next_seq == n  # clean close: no gap
    j.close()


def test_boot_counter_increments():
    fresh()
    for i in range(1, 5):
        j = Journal(ROOT)
        assert j.boot == i
        j.close()
        remount()
    j = Journal(ROOT)  # unclean end of the previous boot counts the same
    remount()
    j = Journal(ROOT)
    assert j.boot == 6
    j.close()


def test_quota_drops_oldest_and_counts():
    fresh()
    # 4 KB blocks: each 8-record segment of 100-byte records takes one block; quota = 3 blocks
    j = Journal(ROOT, flush_records=8, quota_bytes=3 * 4096, stage_bytes=1024)
    fill(j, 24, n=100)
    assert len(segment_files()) == 3 and j.dropped == 0 and j.bytes_used == 3 * 4096
    j.ack(2)
    fill(j, 8, n=100)  # a 4th segment: the oldest (1..8, of which 3..8 unacked) goes
    assert segment_files()[0] == "00000009-00000010"
    assert j.dropped == 6 and j.depth == 24
    assert seqs(j.pending(100000))[0] == 9
    fill(j, 16, n=100)
    assert j.dropped == 22 and seqs(j.pending(100000)) == list(range(25, 49))
    j.close()
    remount()
    j = Journal(ROOT, flush_records=8, quota_bytes=3 * 4096, stage_bytes=1024)
    assert j.dropped == 22 and j.next_seq == 49 and j.depth == 24
    j.close()


def _newest_path():
    return ROOT + "/" + segment_files()[-1]


def test_torn_tail_truncated():
    fresh()
    j = Journal(ROOT, flush_records=5)
    fill(j, 10)
    j.close()
    path = _newest_path()
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:  # cut in the middle of the 3rd record of segment 6..10
        f.write(data[: 2 * 46 + 20])
    remount()
    j = Journal(ROOT, flush_records=5)
    assert seqs(j.pending(100000)) == [1, 2, 3, 4, 5, 6, 7]
    assert segment_files() == ["00000001-00000005", "00000006-00000007"]
    assert j.next_seq > 10 and j.depth == 7
    fill(j, 5)
    got = seqs(j.pending(100000))
    assert got[:7] == [1, 2, 3, 4, 5, 6, 7] and len(got) == 12 and got == sorted(got)
    j.close()


def test_torn_tail_garbled():
    fresh()
    j = Journal(ROOT, flush_records=5)
    fill(j, 10)
    j.close()
    path = _newest_path()
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[-3] ^= 0x55  # last record's payload: CRC fails
    with open(path, "wb") as f:
        f.write(data)
    remount()
    j = Journal(ROOT, flush_records=5)
    assert seqs(j.pending(100000)) == list(range(1, 10))
    assert j.corrupt == 1
    j.close()


def test_torn_empty_segment_removed():
    fresh()
    j = Journal(ROOT, flush_records=5)
    fill(j, 5)
    j.close()
    with open(ROOT + "/00000006-0000000a", "wb"):
        pass  # created, cut before the data was synced
    remount()
    j = Journal(ROOT, flush_records=5)
    assert segment_files() == ["00000001-00000005"] and j.depth == 5
    j.close()


def test_state_survives_leftover_tmp():
    fresh()
    j = Journal(ROOT)
    fill(j, 3)
    j.ack(2)
    j.close()
    with open(ROOT + "/state.tmp", "wb") as f:
        f.write(b"half")  # cut while writing the next state: the old one stands
    remount()
    j = Journal(ROOT)
    assert j.boot == 2 and j.acked == 2 and seqs(j.pending(1000)) == [3]
    assert "state.tmp" not in os.listdir(ROOT)
    j.close()



def test_seq_offset_survives_power_cuts():
    # The wire seq offset (RESYNC, docs/protocol.md 3.1) is in the state file: a cut right after
    # set_offset() keeps it, a cut while a later state write is half done keeps the old one, and
    # a state file from before the offset existed (zeros there) reads as offset 0.
    fresh()
    j = Journal(ROOT, flush_records=4)
    assert j.offset == 0
    fill(j, 6)
    j.set_offset(4096)
    # power cut: no close()
    remount()
    j = Journal(ROOT, flush_records=4)
    assert j.offset == 4096 and seqs(j.pending(10000)) == [1, 2, 3, 4]  # records keep their seq
    j.ack(2)
    j.set_offset(8000)
    with open(ROOT + "/state", "rb") as f:
        good = f.read()
    with open(ROOT + "/state.tmp", "wb") as f:
        f.write(good[:20])  # cut while writing a next state: the last whole one stands
    remount()
    j = Journal(ROOT, flush_records=4)
    assert j.offset == 8000 and j.acked == 2 and seqs(j.pending(10000)) == [3, 4]
    assert "state.tmp" not in os.listdir(ROOT)
    j.close()
    remount()
    j = Journal(ROOT, flush_records=4)
    assert j.offset == 8000  # clean close keeps it too
    j.close()
    with open(ROOT + "/state", "rb") as f:
        st = bytearray(f.read())
    assert st[21:25] == bytes([8000 & 0xFF, 8000 >> 8, 0, 0])  # u32 LE at byte 21
    st[21:25] = bytes(4)  # as written by firmware before the offset existed
    from binascii import crc32

    c = crc32(st[:26])
    st[26:30] = bytes([c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF, (c >> 24) & 0xFF])
    with open(ROOT + "/state", "wb") as f:
        f.write(st)
    remount()
    j = Journal(ROOT, flush_records=4)
    assert j.offset == 0 and j.acked == 2
    j.close()


mptest.main(globals())
