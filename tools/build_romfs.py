"""Pack the compiled firmware (tools/build_mpy.py output) into a ROMFS image for one arch.

    python -m tools.build_romfs [--arch x64] [--port unix] [--all] [--force]

Output: build/romfs/<arch>-<port>.img (default port: unix, the virtual board), a MicroPython
ROMFS image (`vfs.VfsRom`, MicroPython >= 1.25) holding the .mpy files a node of that port
imports: main, ports/__init__ and the port's own modules, the portable core (vibenode/*),
the drivers and umqtt/simple from .mplib. Boot-only and other-port modules that a node of
this port never imports are left out (`--all` keeps every module); anything not in the
image still imports from the filesystem behind it on sys.path.

Why: a module imported from a ROMFS image runs in place: its bytecode, constant tables and
qstr strings stay in the image instead of being copied into the GC heap, as a loaded .mpy is
(docs/firmware.md, heap section). On a board the image goes to the ROMFS flash partition
(`mpremote romfs deploy build/romfs/<arch>-<port>.img`, tools/deploy.py --romfs); the virtual
board keeps it in its own GC heap (firmware/romboot.py), which counts the code's ROM bytes
against the heap: a pessimistic stand-in for flash.

The image is written by mpremote's own ROMFS writer (mpremote.romfs.VfsRomWriter, the code
behind `mpremote romfs build`), from the hash-cached .mpy tree. Cache: the image is rebuilt
only when the SHA-256 of its inputs (names + .mpy bytes) changed (<image>.sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from tools.build_mpy import BuildError, build, host_arch

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "romfs"

# Modules a node of each port imports at run time (beyond the shared core below).
PORT_MODULES = {
    "unix": ["ports/unix", "ports/unix_flash", "drivers/sim_accel", "drivers/sim_temp"],
    "esp32": ["ports/esp32", "ports/_board"],
    "rp2": ["ports/rp2", "ports/_board"],
}
CORE = ["main", "ports/__init__", "vibenode/__init__", "vibenode/acquisition", "vibenode/clock",
        "vibenode/codec", "vibenode/features", "vibenode/kernels", "vibenode/journal", "vibenode/node",
        "vibenode/status", "vibenode/config", "vibenode/sensors", "vibenode/uplink_mqtt",
        "vibenode/uplink_serial", "vibenode/frames", "ports/stdio", "drivers/__init__", "drivers/errors", "umqtt/__init__", "umqtt/simple"]
REAL_DRIVERS = ["drivers/bus", "drivers/adxl345", "drivers/lis3dh", "drivers/mpu6050", "drivers/ds18b20",
                "drivers/mcp9808", "drivers/mcu_temp"]
NEVER = {"romboot"}  # the virtual board's loader runs before the image exists
# The virtual board holds its image in its GC heap, so every byte in it costs RAM for the
# node's whole life. Left out there (they import from the .mpy tree behind /rom instead):
# - vibenode/kernels: native/viper code is copied to executable memory when it is loaded
#   (on the unix VM outside the GC heap), so its bytes in the image would be counted twice;
# - vibenode/config, vibenode/sensors: boot only, main.py drops them once the node is built.
# A package has one directory in MicroPython, so firmware/romboot.py imports these from the
# .mpy tree before it mounts the image ($VIBEKIT_ROMFS_PRELOAD = VM_PRELOAD).
VM_LEAVE_OUT = {"vibenode/kernels", "vibenode/config", "vibenode/sensors"}
VM_PRELOAD = ",".join(sorted(m.replace("/", ".") for m in VM_LEAVE_OUT))


def select(mpy_dir: Path, port: str, everything: bool = False) -> list[str]:
    """Relative .mpy paths (posix, sorted) that go into the image."""
    have = sorted(p.relative_to(mpy_dir).as_posix() for p in mpy_dir.rglob("*.mpy"))
    if everything:
        return [h for h in have if h[:-4] not in NEVER and not h.startswith("tests/")]
    if port not in PORT_MODULES:
        raise BuildError(f"unknown port {port!r} (one of {', '.join(PORT_MODULES)})")
    want = set(CORE) | set(PORT_MODULES[port])
    if port == "unix":
        want -= VM_LEAVE_OUT
    else:
        want |= set(REAL_DRIVERS)
    return [h for h in have if h[:-4] in want]


def image_bytes(mpy_dir: Path, files: list[str]) -> bytes:
    try:
        from mpremote.romfs import VfsRomWriter
    except ImportError as e:  # pragma: no cover - mpremote is in the venv (tools/setup.sh)
        raise BuildError("mpremote >= 1.25 is needed for its ROMFS writer: pip install mpremote") from e
    tree: dict = {}
    for rel in files:
        node = tree
        parts = rel.split("/")
        for d in parts[:-1]:
            node = node.setdefault(d + "/", {})
        node[parts[-1]] = rel
    w = VfsRomWriter()

    def emit(node: dict) -> None:
        for name in sorted(node):
            if name.endswith("/"):
                w.opendir(name[:-1])
                emit(node[name])
                w.closedir()
            else:
                w.mkfile(name, (mpy_dir / node[name]).read_bytes())

    emit(tree)
    return bytes(w.finalise())


def build_image(arch: str | None = None, port: str = "unix", out: Path | str | None = None,
                everything: bool = False, force: bool = False, quiet: bool = True) -> Path:
    """Compile (hash-cached) and pack; returns the image path."""
    arch = arch or host_arch()
    mpy_dir = build(arch)
    files = select(mpy_dir, port, everything)
    h = hashlib.sha256(f"romfs1|{port}|{int(everything)}|".encode())
    for rel in files:
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256((mpy_dir / rel).read_bytes()).digest())
    digest = h.hexdigest()
    dest = Path(out or BUILD)
    dest.mkdir(parents=True, exist_ok=True)
    img = dest / f"{arch}-{port}{'-all' if everything else ''}.img"
    stamp = img.with_suffix(".sha256")
    if not force and img.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        if not quiet:
            print(f"{img}: cached ({img.stat().st_size} bytes, {len(files)} files)")
        return img
    data = image_bytes(mpy_dir, files)
    for path, blob in ((img, data), (stamp, (digest + "\n").encode())):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    if not quiet:
        print(f"{img}: {len(data)} bytes, {len(files)} files")
    return img


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Pack the compiled firmware into a ROMFS image (hash-cached).")
    ap.add_argument("--arch", default=None, help="mpy-cross -march (default: the host's, for the VM)")
    ap.add_argument("--port", default="unix", choices=sorted(PORT_MODULES))
    ap.add_argument("--all", action="store_true", help="every firmware module, not only the port's")
    ap.add_argument("--out", type=Path, default=BUILD)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the files in the image")
    args = ap.parse_args(argv)
    try:
        img = build_image(args.arch, args.port, args.out, args.all, args.force, quiet=False)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.list:
        for rel in select(build(args.arch or host_arch()), args.port, args.all):
            print(rel)
    print(img)
    return 0


if __name__ == "__main__":
    sys.exit(main())
