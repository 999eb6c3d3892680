"""The whole node (sampling, features, journal on littlefs, MQTT uplink) in a fixed heap.

The real firmware (firmware/main.py, precompiled by tools/build_mpy.py) runs on the
MicroPython VM under `-X heapsize=HEAP` against a real mosquitto and a tiny acking bridge,
for at least 100 windows of 3 x 1024 samples at 3200 Hz (simulated sensor, not paced in
real time, back to back). The virtual board's heap probe (ports/unix.py, VIBEKIT_HEAP_PROBE)
logs the live heap after collection, the peak seen between collections and the most one
window allocated; the figures go to bench/results/heap.json with every board's budget.

Issue 3's "-X heapsize=64K" is a 64 KB heap on a 32-bit MCU. The VM is the 64-bit unix port,
where every object and pointer is twice as big; MicroPython's own adjustment for that is the
`w` suffix, which counts the heap in 32-bit words: `-X heapsize=64wK` is 128 KiB on this
build. The `mpy` mode runs there (docs/firmware.md section 6). What the literal `64K` (64 KiB
on the 64-bit VM: a 32 KB device) does is recorded too.

Two code modes: `mpy` (the .mpy tree, loaded into the heap as on a board without ROMFS) and
`romfs` (the same .mpy files in a ROMFS image run in place, the image itself held in the
VM's heap by firmware/romboot.py; on a board it is flash, so heap.json also gives the figures
without the image). HEAP is at least one 8K step above the smallest heap each mode boots and
runs in (bisected in 8K steps).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.netutil import wait_for
from tests.test_virtual_node_mqtt import MiniBridge
from tools.virtual_node import VirtualNode

REPO = Path(__file__).resolve().parent.parent
WINDOWS = 100
GOAL_KB = 64  # issue 3: -X heapsize=64K on a 32-bit device = 64wK (32-bit words) on the 64-bit VM
GOAL_HEAPSIZE = "64wK"
# Virtual board config for the heap run: one littlefs half-block of staging and 2 KB batches
# (11 measurement records), instead of the 4 KB defaults sized for backlog drains.
CONFIG = {"batch": {"max_bytes": 2048}, "journal": {"stage_bytes": 2048}}
# heapsize per code mode: the goal for .mpy, one 8K step above the smallest for ROMFS.
# Smallest found by bisection in 8K (= 4wK) steps, docs/firmware.md section 6:
# .mpy: 120K (60wK) works, 112K fails at boot; ROMFS (image in the GC heap): 128K (64wK)
# works, 120K fails at boot. Literal 64K (64 KiB on this VM): fails at boot.
HEAP = {"mpy": GOAL_HEAPSIZE, "romfs": "68wK"}
SMALLEST = {"mpy": "120K", "romfs": "128K"}
SMALLEST_W = {"mpy": "60wK", "romfs": "64wK"}
LINE = re.compile(r"heap windows=(\d+) live=(\d+) peak=(\d+) window_alloc=(\d+) total=(\d+)")
_RESULTS: dict = {}


def _last_probe(text: str) -> dict | None:
    found = LINE.findall(text)
    if not found:
        return None
    w, live, peak, alloc, total = map(int, found[-1])
    return dict(windows=w, live=live, peak=peak, window_alloc=alloc, total=total)


@pytest.mark.parametrize("code", ["mpy", "romfs"])
def test_whole_node_runs_100_windows_in_a_fixed_heap(broker, tmp_path, code):
    bridge = MiniBridge(broker.port)
    vn = VirtualNode(
        tmp_path / "heap",
        "heap1",
        mqtt_port=broker.port,
        heap=HEAP[code],
        code=code,
        interval_s=0,
        config=CONFIG,
        status_interval_s=1.0,
        env={"VIBEKIT_HEAP_PROBE": "10"},
        sim={"tones": [[0, 80.0, 0.5], [2, 700.0, 0.2]], "noise_g": 0.01, "realtime": False},
    )
    t0 = time.monotonic()
    try:
        vn.start()
        wait_for(
            lambda: (
                not vn.alive()
                or ((_last_probe(vn.log_text()) or {}).get("windows", 0) >= WINDOWS and len(bridge.kinds(0)) >= WINDOWS)
            ),
            timeout=45,
            what=f"{WINDOWS} windows acked",
        )
        log = vn.log_text()
        assert vn.alive(), log[-3000:]
        elapsed = time.monotonic() - t0
    finally:
        vn.stop()
        bridge.close()
    assert "MemoryError" not in log, log[-3000:]
    probe = _last_probe(log)
    assert probe and probe["windows"] >= WINDOWS, log[-2000:]
    recs = bridge.kinds(0)
    assert len(recs) >= WINDOWS
    assert all(abs(r.values[1] - 0.5 / 2**0.5) < 0.01 for r in recs)  # the features are still right
    free = [s.values[1] for s in bridge.kinds(1)]
    image = vn.romfs_image.stat().st_size if code == "romfs" else 0
    _RESULTS[code] = {
        "heapsize": HEAP[code],
        "heap_total_bytes": probe["total"],
        "windows": probe["windows"],
        "live_bytes": probe["live"],
        "peak_bytes": probe["peak"],
        "window_alloc_bytes": probe["window_alloc"],
        "status_free_heap_min": min(free) if free else None,
        "seconds": round(elapsed, 1),
    }
    if code == "romfs":
        # On a board the image is the ROMFS flash partition: what the node needs in RAM there
        # is the heap minus the image's bytes (the VM holds them in its heap, firmware/romboot.py).
        _RESULTS[code].update(
            romfs_image_bytes=image,
            live_bytes_without_image=probe["live"] - image,
            peak_bytes_without_image=probe["peak"] - image,
        )
    _write(_RESULTS)
    print(json.dumps(_RESULTS[code]))


def test_literal_64k_heap_is_recorded(broker, tmp_path):
    """-X heapsize=64K taken literally: 64 KiB on the 64-bit VM, i.e. 32K words (a 32 KB
    32-bit device). Not the issue's goal (64wK above is); what it does is recorded, and it
    must end plainly (a MemoryError reported at boot, or the 100 windows), never hang."""
    bridge = MiniBridge(broker.port)
    vn = VirtualNode(
        tmp_path / "heap64",
        "heap64",
        mqtt_port=broker.port,
        heap="64K",
        code="mpy",
        interval_s=0,
        config=CONFIG,
        status_interval_s=1.0,
        env={"VIBEKIT_HEAP_PROBE": "10"},
        sim={"tones": [[0, 80.0, 0.5]], "noise_g": 0.01, "realtime": False},
    )
    try:
        vn.start()
        wait_for(
            lambda: not vn.alive() or (_last_probe(vn.log_text()) or {}).get("windows", 0) >= WINDOWS,
            timeout=45,
            what="the 64K node to fail or run 100 windows",
        )
        log = vn.log_text()
    finally:
        vn.stop()
        bridge.close()
    probe = _last_probe(log)
    ran = bool(probe and probe["windows"] >= WINDOWS and "MemoryError" not in log)
    lines = log.splitlines()
    errors = [ln.strip() for ln in lines if "MemoryError" in ln]
    where = [ln.strip() for ln in lines if ln.strip().startswith("File ")]
    assert ran or errors, log[-2000:]
    _LITERAL.update(
        heapsize="64K",
        heap_total_bytes=probe["total"] if probe else None,
        runs_100_windows=ran,
        error=errors[0] if errors else None,
        failed_at=where[-1] if errors and where else None,
    )
    _write(_RESULTS)
    print(json.dumps(_LITERAL))


_LITERAL: dict = {}


def _write(results: dict) -> None:
    # A test run leaves the tree clean: the committed figures are refreshed only on request.
    if os.environ.get("VIBEKIT_RECORD_BENCH") == "1":
        out = REPO / "bench" / "results" / "heap.json"
    else:
        out = REPO / "build" / "test-results" / "heap.json"
        out.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        old = {}
    modes = {k: v for k, v in (old.get("modes") or {}).items() if k in HEAP}
    modes.update(results)
    best = min((m["peak_bytes"] for m in modes.values()), default=None)
    best_flash = min((m.get("peak_bytes_without_image", m["peak_bytes"]) for m in modes.values()), default=None)
    # A board's budget is in bytes of a 32-bit device; on this VM that is the same number of
    # 32-bit words (x2 bytes), as -X heapsize=NwK counts it: the VM's bytes are compared with that.
    boards = {}
    for p in sorted((REPO / "boards").glob("*.json")):
        b = json.loads(p.read_text())
        h = b.get("heap") or {}
        boards[p.stem] = {k: h[k] for k in ("budget_kb", "free_kb_wifi", "free_kb_wifi_tls") if k in h}
        boards[p.stem]["vm_peak_within_budget_words"] = best is not None and best <= h.get("budget_kb", 0) * 2048
        if "free_kb_wifi" in h:
            boards[p.stem]["vm_peak_within_free_heap_wifi_words"] = (
                best is not None and best <= h["free_kb_wifi"] * 2048
            )
    result = {
        "what": "whole node (SimAccel 3 x 1024 @ 3200 Hz, features, littlefs journal, MQTT QoS 1 to mosquitto, "
        "acking stand-in bridge) for 100 back-to-back windows on the 64-bit MicroPython unix VM; "
        "modes: mpy = mpy-cross -march=x64 tree loaded into the heap, romfs = the same .mpy files in a "
        "ROMFS image (tools/build_romfs.py) mounted with vfs.VfsRom, the image held in the GC heap",
        "units": "heapsize as passed to -X heapsize: K = KiB on this 64-bit build; wK = K 32-bit words "
        "(MicroPython's word-size adjustment: 64wK = 128 KiB here, the heap a 64 KB 32-bit device has)",
        "config": CONFIG,
        "modes": modes,
        "smallest_heapsize_found": SMALLEST,
        "smallest_heapsize_found_words": SMALLEST_W,
        "goal_heap_kb": GOAL_KB,
        "goal_heapsize_on_vm": GOAL_HEAPSIZE,
        "goal_met": "mpy" in modes and modes["mpy"]["heapsize"] == GOAL_HEAPSIZE,
        "literal_64K": _LITERAL or old.get("literal_64K"),
        "peak_within_goal_words": best is not None and best <= GOAL_KB * 2048,
        "romfs_peak_within_goal_words_image_in_flash": best_flash is not None and best_flash <= GOAL_KB * 2048,
        "boards": boards,
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
