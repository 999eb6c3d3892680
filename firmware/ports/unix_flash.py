# File-backed flash for the virtual board (unix port): a block device for vfs.VfsLfs2.
#
# The image file stands in for the board's SPI NOR flash. Every program and erase goes
# straight to the file with one write() syscall (no user-space buffering), so a `kill -9` of
# the process behaves like a power cut: what littlefs programmed before the cut is on "flash",
# what it had not is not. NOR semantics are kept: erase sets a block to 0xFF, programming can
# only clear bits (new = old & data), so a program over unerased data is caught rather than
# silently "working" as a plain file would.
#
# The device counts what it is asked to do (reads, programs, erases, bytes) so benchmarks can
# report flash bytes written per record without guessing.
import os

import vfs

from micropython import const

_IOCTL_INIT = const(1)
_IOCTL_DEINIT = const(2)
_IOCTL_SYNC = const(3)
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_ERASE = const(6)

_CHUNK = const(128)  # erase / create in small pieces (littlefs programs at most its 128-byte cache at once)


class FileFlash:
    """Block device on an image file: readblocks/writeblocks with offset, ioctl 1-6."""

    def __init__(self, path, block_size=4096, blocks=256, create=False, nor=True):
        self.path = path
        self.block_size = block_size
        self.blocks = blocks
        self.nor = nor  # AND-on-program like real NOR flash (costs a read per program)
        self.reads = 0
        self.read_bytes = 0
        self.progs = 0
        self.prog_bytes = 0
        self.erases = 0
        if create:
            self._create()
        self._f = open(path, "r+b")
        self._scratch = bytearray(_CHUNK)  # one buffer for erases (0xFF) and NOR programs

    def _create(self):
        ff = b"\xff" * _CHUNK
        with open(self.path, "wb") as f:
            for _ in range(self.block_size * self.blocks // _CHUNK):
                f.write(ff)

    def reset_counters(self):
        self.reads = self.read_bytes = self.progs = self.prog_bytes = self.erases = 0

    def counters(self):
        return {
            "reads": self.reads,
            "read_bytes": self.read_bytes,
            "progs": self.progs,
            "prog_bytes": self.prog_bytes,
            "erases": self.erases,
            "erase_bytes": self.erases * self.block_size,
        }

    def readblocks(self, block, buf, offset=0):
        self.reads += 1
        self.read_bytes += len(buf)
        self._f.seek(block * self.block_size + offset)
        n = self._f.readinto(buf)
        if n != len(buf):
            raise OSError(5)  # EIO: image shorter than the device claims

    def writeblocks(self, block, buf, offset=None):
        # With offset (littlefs): program only, the block was erased through ioctl(6).
        # Without offset (legacy FAT-style interface): erase the blocks, then program.
        if offset is None:
            offset = 0
            n = (len(buf) + self.block_size - 1) // self.block_size
            for b in range(block, block + n):
                self.ioctl(_IOCTL_ERASE, b)
        self.progs += 1
        self.prog_bytes += len(buf)
        pos = block * self.block_size + offset
        if self.nor:
            self._program_nor(pos, buf)
        else:
            self._f.seek(pos)
            self._f.write(buf)

    def _program_nor(self, pos, buf):
        mv = memoryview(buf)
        scratch = self._scratch
        done = 0
        total = len(buf)
        while done < total:
            n = min(_CHUNK, total - done)
            s = memoryview(scratch)[:n]
            self._f.seek(pos + done)
            self._f.readinto(s)
            for i in range(n):
                s[i] &= mv[done + i]
            self._f.seek(pos + done)
            self._f.write(s)
            done += n

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.blocks
        if op == _IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == _IOCTL_ERASE:
            self.erases += 1
            s = memoryview(self._scratch)
            s[0] = 0xFF
            n = 1
            while n < _CHUNK:  # 0xFF all over by doubling copies: 9 slice copies, no loop per byte
                s[n : 2 * n] = s[0:n]
                n *= 2
            self._f.seek(arg * self.block_size)
            for _ in range(self.block_size // _CHUNK):
                self._f.write(s)
            return 0
        if op == _IOCTL_SYNC:
            return 0
        if op in (_IOCTL_INIT, _IOCTL_DEINIT):
            return 0
        return None

    def close(self):
        self._f.close()


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return None


def mount_flash(image_path, mountpoint="/flash", block_size=4096, blocks=256, nor=True):
    """Mount the image at `mountpoint` as littlefs v2; mkfs a new image first.

    An existing image is mounted as it is (that is how the virtual board keeps its flash
    across restarts and power cuts; its size gives the block count); a missing one is created
    erased and formatted. A mount that fails raises: the image is never silently reformatted.
    Returns the block device (its counters measure flash traffic).
    """
    size = _size(image_path)
    new = size is None
    if not new:
        blocks = size // block_size
    bdev = FileFlash(image_path, block_size, blocks, create=new, nor=nor)
    if new:
        vfs.VfsLfs2.mkfs(bdev)
    try:
        fs = vfs.VfsLfs2(bdev, mtime=False)
    except TypeError:  # older ports without the mtime keyword
        fs = vfs.VfsLfs2(bdev)
    vfs.mount(fs, mountpoint)
    return bdev


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
# (counters, reset_counters: the benchmarks' instruments, never called by a node)
_BOOT_ONLY = ("_size", "mount_flash", ("FileFlash", "__init__", "_create", "counters", "reset_counters"))
