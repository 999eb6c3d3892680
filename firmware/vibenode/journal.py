# Store-and-forward journal: records wait in flash until the bridge acknowledges them.
#
# Layout under `root` (docs/journal.md has the full story):
#   state                 boot counter, ack cursor, drop count, seq floor, wire seq offset
#                         (atomic: tmp + rename)
#   <first>-<last>        one segment file per flush, names are the seq range in 8 hex digits
# Each stored record: u16 LE length, u32 LE CRC-32 (of the length bytes then the record), record.
#
# Why one write-once file per flush: littlefs cannot append to a synced file in place; the next
# append copies the file's partial tail block into a fresh block first. Appending flush after
# flush to one file therefore rewrites the same records again and again (measured: about half
# of the bytes programmed were copies). A new file per flush programs each record once.
import os
import time

from binascii import crc32

from micropython import const

_HDR = const(6)  # u16 length + u32 crc
_STATE_MAGIC = const(b"VJ01")
_STATE_LEN = const(30)  # magic 4, boot 2, acked 4, dropped 4, floor 4, clean 1, skip 2, offset 4, pad 1, crc 4
_MAX_REC = const(0xFFFF)


def _u32(b, o):
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)


def _put_u32(b, o, v):
    b[o] = v & 0xFF
    b[o + 1] = (v >> 8) & 0xFF
    b[o + 2] = (v >> 16) & 0xFF
    b[o + 3] = (v >> 24) & 0xFF


def _u16(b, o):
    return b[o] | (b[o + 1] << 8)


def _put_u16(b, o, v):
    b[o] = v & 0xFF
    b[o + 1] = (v >> 8) & 0xFF


def _makedirs(path):
    cur = ""
    for part in path.split("/"):
        if not part:
            continue
        cur += "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass  # exists (or a mount point)


def _seg_name(first, last):
    return "%08x-%08x" % (first, last)


def _parse_seg_name(name):
    if len(name) != 17 or name[8] != "-":
        return None
    try:
        return int(name[:8], 16), int(name[9:], 16)
    except ValueError:
        return None


class Journal:
    def __init__(
        self,
        root="/flash/journal",
        segment_bytes=8192,
        quota_bytes=256 * 1024,
        flush_records=8,
        flush_ms=2000,
        now_ms=time.ticks_ms,
        stage_bytes=2048,
    ):
        self.root = root.rstrip("/")
        self.flush_records = flush_records
        self.flush_ms = flush_ms
        self.quota_bytes = quota_bytes
        self._now = now_ms
        _makedirs(self.root)
        try:
            self._bsize = os.statvfs(self.root)[0] or 4096
        except (OSError, AttributeError):
            self._bsize = 4096
        # The staging buffer holds whole stored records (headers included) so a flush is one
        # write. It is also the scratch buffer for the boot scan.
        cap = min(segment_bytes, stage_bytes)
        if cap < 64:
            raise ValueError("segment/stage too small")
        if quota_bytes < 2 * self._footprint(cap):
            raise ValueError("quota_bytes must hold at least two full segments")
        self._stage = bytearray(cap)
        self._smv = memoryview(self._stage)
        self._lo = 0  # staged records live in _stage[_lo:_hi]
        self._hi = 0
        self._n_staged = 0
        self._staged_first = 0  # seq of the first staged record
        self._oldest_ms = 0
        self._hdr = bytearray(_HDR)
        self._st = bytearray(_STATE_LEN)
        # Segment table, oldest first: first seq, last seq, footprint on flash.
        self._seg_first = []
        self._seg_last = []
        self._seg_size = []
        self.bytes_used = 0
        self.corrupt = 0  # records found damaged on flash (CRC) since this boot
        self._rd = None  # cached read position: (segment first seq, offset, seq at offset)
        self._closed = False
        self._skip = 0  # the skip persisted by the last state write
        self._boot_recover()

    # ---- sizes -------------------------------------------------------------------------
    def _footprint(self, nbytes):
        # littlefs gives each non-inline file whole blocks; count what the quota really costs.
        b = self._bsize
        return ((nbytes + b - 1) // b) * b

    def _path(self, first, last):
        return self.root + "/" + _seg_name(first, last)

    # ---- state file --------------------------------------------------------------------
    def _read_state(self):
        st = self._st
        try:
            with open(self.root + "/state", "rb") as f:
                n = f.readinto(st)
        except OSError:
            return None
        if n != _STATE_LEN or st[0:4] != _STATE_MAGIC:
            return None
        if crc32(memoryview(st)[: _STATE_LEN - 4]) != _u32(st, _STATE_LEN - 4):
            return None
        return (_u16(st, 4), _u32(st, 6), _u32(st, 10), _u32(st, 14), st[18], _u16(st, 19), _u32(st, 21))

    def _write_state(self, clean=0):
        st = self._st
        st[0:4] = _STATE_MAGIC
        _put_u16(st, 4, self.boot)
        _put_u32(st, 6, self._acked)
        _put_u32(st, 10, self.dropped)
        _put_u32(st, 14, self.next_seq)
        st[18] = clean
        # skip: how many seqs the next boot must burn if this one ends in a cut, i.e. the most
        # records that can be staged in RAM before the next state write (see set_flush()).
        skip = self._n_staged if self._n_staged > self.flush_records else self.flush_records
        _put_u16(st, 19, skip)
        self._skip = skip
        # offset: a state file written before it existed has zeros here (offset 0)
        _put_u32(st, 21, self.offset)
        st[25] = 0
        _put_u32(st, _STATE_LEN - 4, crc32(memoryview(st)[: _STATE_LEN - 4]))
        tmp = self.root + "/state.tmp"
        with open(tmp, "wb") as f:
            f.write(st)
        os.rename(tmp, self.root + "/state")  # atomic replace on littlefs

    # ---- boot --------------------------------------------------------------------------
    def _boot_recover(self):
        state = self._read_state()
        if state is None:
            boot, acked, dropped, floor, clean, skip, offset = 0, 0, 0, 1, 1, 0, 0
        else:
            boot, acked, dropped, floor, clean, skip, offset = state
        self._acked = acked
        self.offset = offset
        self.dropped = dropped
        segs = []
        for ent in os.ilistdir(self.root):
            name = ent[0]
            rng = _parse_seg_name(name)
            if rng is None:
                if name == "state.tmp":
                    os.remove(self.root + "/" + name)
                continue
            segs.append(rng)
        segs.sort()
        for first, last in segs:
            if last <= acked:  # freed before the cut, file not yet removed
                os.remove(self._path(first, last))
                continue
            self._seg_first.append(first)
            self._seg_last.append(last)
            self._seg_size.append(0)
        # Sizes (for the quota) of every segment; the newest one is also checked record by
        # record: only it can hold a torn write, since a segment is written once then closed.
        n = len(self._seg_first)
        for i in range(n):
            first, last = self._seg_first[i], self._seg_last[i]
            size = os.stat(self._path(first, last))[6]
            self._seg_size[i] = self._footprint(size)
        if n:
            self._check_newest()
        self.bytes_used = sum(self._seg_size)
        on_flash = self._seg_last[-1] if self._seg_last else 0
        nxt = max(on_flash + 1, acked + 1, floor)
        if not clean:
            # Staged records lost in the cut may have been handed to an uplink (iter_records()):
            # never give their seqs to new records. At most `skip` records were staged.
            nxt += skip
        self.next_seq = nxt
        self.boot = (boot + 1) & 0xFFFF
        self._write_state(clean=0)

    def _check_newest(self):
        first, last = self._seg_first[-1], self._seg_last[-1]
        path = self._path(first, last)
        good_last = first - 1
        buf = self._stage
        hdr = self._hdr
        with open(path, "rb") as f:
            seq = first
            while seq <= last:
                if f.readinto(hdr) != _HDR:
                    break
                n = _u16(hdr, 0)
                if n < 4 or n > len(buf):
                    break
                mv = self._smv[:n]
                if f.readinto(mv) != n:
                    break
                if crc32(mv, crc32(memoryview(hdr)[:2])) != _u32(hdr, 2) or _u32(buf, 0) != seq:
                    break
                good_last = seq
                seq += 1
        if good_last == last:
            return
        self.corrupt += last - good_last
        if good_last < first:
            os.remove(path)
            self._seg_first.pop()
            self._seg_last.pop()
            self._seg_size.pop()
        else:
            # Keep the good head; the name now covers only it, so nothing reads the torn tail.
            os.rename(path, self._path(first, good_last))
            self._seg_last[-1] = good_last

    # ---- public API --------------------------------------------------------------------
    @property
    def depth(self):
        acked = self._acked
        d = self._n_staged
        for i in range(len(self._seg_first)):
            lo = self._seg_first[i]
            if lo <= acked:
                lo = acked + 1
            if self._seg_last[i] >= lo:
                d += self._seg_last[i] - lo + 1
        return d

    @property
    def staged(self):
        return self._n_staged

    @property
    def acked(self):
        return self._acked

    def append(self, rec):
        n = len(rec)
        if n < 4:
            raise ValueError("record too short")
        seq = _u32(rec, 0)
        if seq != self.next_seq:
            raise ValueError("record seq %d, expected %d" % (seq, self.next_seq))
        need = _HDR + n
        if need > len(self._stage) or n > _MAX_REC:
            raise ValueError("record too long")
        if self._hi + need > len(self._stage):
            if self._lo and self._hi - self._lo + need <= len(self._stage):
                self._compact_stage()
            else:
                self.flush()
        buf = self._stage
        o = self._hi
        _put_u16(buf, o, n)
        buf[o + _HDR : o + need] = rec
        _put_u32(buf, o + 2, crc32(rec, crc32(self._smv[o : o + 2])))
        self._hi = o + need
        if self._n_staged == 0:
            self._staged_first = seq
            self._oldest_ms = self._now()
        self._n_staged += 1
        self.next_seq = seq + 1
        if self._n_staged >= self.flush_records:
            self.flush()
        return seq

    def _compact_stage(self):
        n = self._hi - self._lo
        self._smv[0:n] = self._smv[self._lo : self._hi]
        self._lo = 0
        self._hi = n

    def set_offset(self, offset):
        """Records go out as seq + offset from now on (docs/protocol.md 3.1: the bridge asked
        this node to number on past what it already holds). Records keep their seq in the
        journal (nothing is rewritten); the offset is in the state file before this returns."""
        self.offset = offset
        self._write_state()

    def set_flush(self, flush_records, flush_ms):
        """Change the flush policy (e.g. fill whole blocks while the link is down).

        Raising flush_records persists the larger boot skip first: staged records lost in a cut
        must never have their seqs reused. Lowering it flushes a stage already past the new
        threshold, so the persisted skip stays an upper bound on what RAM holds.
        """
        if flush_records == self.flush_records and flush_ms == self.flush_ms:
            return
        self.flush_records = flush_records
        self.flush_ms = flush_ms
        if flush_records > self._skip:
            self._write_state()
        elif self._n_staged >= flush_records:
            self.flush()

    def poll(self):
        if self._n_staged and time.ticks_diff(self._now(), self._oldest_ms) >= self.flush_ms:
            self.flush()

    def flush(self):
        if not self._n_staged:
            return
        first = self._staged_first
        last = first + self._n_staged - 1
        size = self._hi - self._lo
        fp = self._footprint(size)
        while self._seg_first and self.bytes_used + fp > self.quota_bytes:
            self._drop_oldest()
        path = self._path(first, last)
        with open(path, "wb") as f:
            f.write(self._smv[self._lo : self._hi])
        self._seg_first.append(first)
        self._seg_last.append(last)
        self._seg_size.append(fp)
        self.bytes_used += fp
        self._lo = self._hi = 0
        self._n_staged = 0

    def _drop_oldest(self):
        first, last = self._seg_first[0], self._seg_last[0]
        lo = first if first > self._acked else self._acked + 1
        if last >= lo:
            self.dropped += last - lo + 1
        if last > self._acked:
            self._acked = last
        # Cursor and drop count first, then the file: a cut in between leaves a file that the
        # next boot removes as already freed, and the count is right either way.
        self._write_state()
        self._remove_seg0()

    def _remove_seg0(self):
        first = self._seg_first.pop(0)
        last = self._seg_last.pop(0)
        self.bytes_used -= self._seg_size.pop(0)
        os.remove(self._path(first, last))
        self._rd = None

    def ack(self, seq):
        top = self.next_seq - 1
        if seq > top:
            seq = top
        if seq <= self._acked:
            return
        self._acked = seq
        self._write_state()
        while self._seg_last and self._seg_last[0] <= seq:
            self._remove_seg0()
        # Staged records acked before they reached flash never need to be written.
        while self._n_staged and self._staged_first <= seq:
            n = _u16(self._stage, self._lo)
            self._lo += _HDR + n
            self._staged_first += 1
            self._n_staged -= 1
        if not self._n_staged:
            self._lo = self._hi = 0

    def iter_records(self, from_seq=0):
        """Yield unacked records (seq >= from_seq) oldest first: flash, then staged (copies).

        Records whose CRC fails are skipped (with the rest of their segment) and counted in
        `corrupt`. Each record is a fresh bytearray/bytes.
        """
        start = self._acked + 1
        if from_seq > start:
            start = from_seq
        hdr = self._hdr
        done = -1  # first seq of the last segment visited (the list may change meanwhile)
        while True:
            k = 0
            nseg = len(self._seg_first)
            while k < nseg and self._seg_first[k] <= done:
                k += 1
            if k == nseg:
                break
            first, last = self._seg_first[k], self._seg_last[k]
            done = first
            if start <= self._acked:
                start = self._acked + 1
            if last < start:
                continue
            seq, off = self._locate(first, last, start)
            if seq != start and seq != first:
                self.corrupt += last - seq + 1
                continue
            with open(self._path(first, last), "rb") as f:
                f.seek(off)
                while seq <= last:
                    if f.readinto(hdr) != _HDR:
                        self.corrupt += last - seq + 1
                        break
                    n = _u16(hdr, 0)
                    rec = bytearray(n)
                    if (
                        f.readinto(rec) != n
                        or crc32(rec, crc32(memoryview(hdr)[:2])) != _u32(hdr, 2)
                        or _u32(rec, 0) != seq
                    ):
                        self.corrupt += last - seq + 1
                        break
                    self._rd = (first, off, seq)
                    off += _HDR + n
                    seq += 1
                    yield rec
            start = last + 1
        o = self._lo
        seq = self._staged_first
        for _ in range(self._n_staged):
            n = _u16(self._stage, o)
            if seq >= start:
                yield bytes(self._smv[o + _HDR : o + _HDR + n])
            o += _HDR + n
            seq += 1

    def _locate(self, first, last, seq):
        # Byte offset of `seq` inside segment `first`: walk the headers, from the cached read
        # position when it is in this segment and not past `seq`.
        if seq <= first:
            return first, 0
        rd = self._rd
        if rd is not None and rd[0] == first and rd[2] <= seq:
            cur, off = rd[2], rd[1]
        else:
            cur, off = first, 0
        if cur == seq:
            return cur, off
        hdr = self._hdr
        with open(self._path(first, last), "rb") as f:
            while cur < seq:
                f.seek(off)
                if f.readinto(hdr) != _HDR:
                    break
                off += _HDR + _u16(hdr, 0)
                cur += 1
        self._rd = (first, off, cur)
        return cur, off

    def pending(self, max_bytes, max_records=255):
        out = []
        total = 0
        it = self.iter_records()
        for rec in it:
            n = len(rec)
            if out and total + n > max_bytes:
                break
            out.append(rec)
            total += n
            if len(out) >= max_records:
                break
        it.close()  # closes the segment file the generator may hold open
        return out

    def close(self):
        if self._closed:
            return
        self.flush()
        self._write_state(clean=1)
        self._closed = True


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
# (pending: tests and tools; the node streams iter_records() into its batch)
_BOOT_ONLY = ("_makedirs", "_parse_seg_name",
              ("Journal", "__init__", "_read_state", "_boot_recover", "_check_newest", "pending"))
