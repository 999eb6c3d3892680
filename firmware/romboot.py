# The virtual board's ROMFS boot: mount the firmware's ROMFS image at /rom, then run main.
#
# On a board (MicroPython >= 1.25 with a ROMFS partition, `mpremote romfs deploy`) the image
# lives in flash and /rom is mounted by the firmware itself before boot.py: this file is not
# used there. The unix VM has vfs.VfsRom but no flash to map, so this loader reads the image
# (tools/build_romfs.py, path in $VIBEKIT_ROMFS) into ONE bytearray allocated first, before
# anything can fragment the heap, and mounts a VfsRom over it. Modules imported from /rom
# then run in place (bytecode, constants and qstr strings stay in the image); the image's
# bytes count against the VM's heap, a pessimistic stand-in for flash.
import os
import sys
import vfs


def _mount(path):
    size = os.stat(path)[6]
    buf = bytearray(size)  # first allocation of any size: one contiguous block
    mv = memoryview(buf)
    n = 0
    with open(path, "rb") as f:
        while n < size:
            k = f.readinto(mv[n:])
            if not k:
                raise OSError("romfs image short: %d of %d bytes" % (n, size))
            n += k
    pre = os.getenv("VIBEKIT_ROMFS_PRELOAD")
    if pre:
        for name in pre.split(","):
            __import__(name)
        for name in pre.split(","):  # the packages themselves come from /rom
            while "." in name:
                name = name.rsplit(".", 1)[0]
                sys.modules.pop(name, None)
    vfs.mount(vfs.VfsRom(buf), "/rom")
    sys.path.insert(0, "/rom")


_mount(os.getenv("VIBEKIT_ROMFS"))
del _mount
import main  # noqa: E402,F401  (the node: never returns while it runs)
