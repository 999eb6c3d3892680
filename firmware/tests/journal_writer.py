# Power-cut workload for the journal (driven by tests/test_journal_powercut.py).
#
#   micropython journal_writer.py <image> <seed> [verify]
#
# Mounts the image (littlefs on a file-backed block device), opens the journal, checks every
# record on flash and prints what it found:
#   RUN <first> <last>                        a run of consecutive seqs found on flash
#   BAD <why>                                 a record on flash is wrong (content, order)
#   BOOT <boot> <next_seq> <acked> <depth> <dropped> <corrupt>
#   READY
# then appends records for ever (until kill -9), printing what is durable:
#   D <seq>     every record up to seq is on flash (a flush returned)
#   A <seq>     ack(seq) returned (the cursor is on flash)
# With `verify` it stops after READY.
import sys

import random
from ports.unix_flash import mount_flash
from vibenode.journal import Journal

FLUSH_RECORDS = 8


def rec_len(seq):
    return 20 + (seq * 13) % 180


def fill_rec(buf, seq):
    n = rec_len(seq)
    buf[0] = seq & 0xFF
    buf[1] = (seq >> 8) & 0xFF
    buf[2] = (seq >> 16) & 0xFF
    buf[3] = (seq >> 24) & 0xFF
    for i in range(4, n):
        buf[i] = (seq * 31 + i * 7) & 0xFF
    return memoryview(buf)[:n]


def check(rec):
    seq = rec[0] | (rec[1] << 8) | (rec[2] << 16) | (rec[3] << 24)
    if len(rec) != rec_len(seq):
        return seq, "len"
    for i in range(4, len(rec)):
        if rec[i] != (seq * 31 + i * 7) & 0xFF:
            return seq, "byte %d" % i
    return seq, None


def verify(j):
    first = prev = None
    for rec in j.iter_records():
        seq, err = check(rec)
        if err:
            print("BAD", seq, err)
        if prev is not None and seq <= prev:
            print("BAD order", prev, seq)
        if prev is None or seq != prev + 1:
            if prev is not None:
                print("RUN", first, prev)
            first = seq
        prev = seq
    if prev is not None:
        print("RUN", first, prev)


def main():
    image = sys.argv[1]
    random.seed(int(sys.argv[2]))
    mount_flash(image, "/flash", blocks=64)
    j = Journal("/flash/journal", flush_records=FLUSH_RECORDS, quota_bytes=160 * 1024)
    verify(j)
    print("BOOT", j.boot, j.next_seq, j.acked, j.depth, j.dropped, j.corrupt)
    print("READY")
    if len(sys.argv) > 3:
        return
    buf = bytearray(256)
    while True:
        seq = j.next_seq
        j.append(fill_rec(buf, seq))
        r = random.getrandbits(6)
        if r == 0:
            j.flush()
        if j.staged == 0:
            print("D", seq)
        if r < 8 and j.depth > 90:
            # ack part of what is durable, like a bridge that lags behind
            j.ack(seq - 40 - random.getrandbits(5))
            print("A", j.acked)


main()
