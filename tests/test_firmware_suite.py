"""Run every firmware unit test module (firmware/tests/test_*.py) on the MicroPython VM.

Both VMs: the 64-bit unix port (pip) and the 32-bit one (Debian's i386 build, tools/vm32.py),
where words and pointers are 4 bytes and viper arithmetic wraps at 32 bits, as on a board.

Each module is a plain MicroPython script: it raises (non-zero exit) on failure and prints
`OK <n> tests` at the end. Heap per module is 64K unless the module's first line says
`# heap: <size>`.
"""

from __future__ import annotations

import pytest

from tests.mpvm import FIRMWARE, REPO, mp_env, run_micropython

MODULES = sorted((FIRMWARE / "tests").glob("test_*.py"))


def _heap(path) -> str:
    first = path.read_text().splitlines()[0] if path.stat().st_size else ""
    if first.startswith("# heap:"):
        return first.split(":", 1)[1].strip()
    return "64K"


@pytest.mark.parametrize("vm", ["64", "32"], ids=["vm64", "vm32"])
@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_firmware_module(module, vm, tmp_path):
    env = mp_env(home=tmp_path, VIBEKIT_REPO=str(REPO))
    proc = run_micropython(module, heap=_heap(module), cwd=tmp_path, timeout=300, env=env, vm=vm)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "OK" in proc.stdout, out
