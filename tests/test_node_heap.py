"""The whole node (sampling, features, journal on littlefs, MQTT uplink) in a fixed heap.

The real firmware (firmware/main.py, precompiled by tools/build_mpy.py) runs on the
MicroPython VM under `-X heapsize=HEAP` against a real mosquitto and a tiny acking bridge,
for at least 100 windows of 3 x 1024 samples at 3200 Hz (simulated sensor, not paced in
real time, back to back). The virtual board's heap probe (ports/unix.py, VIBEKIT_HEAP_PROBE)
logs the live heap after collection, the peak seen between collections and the most one
window allocated; the figures go to bench/results/heap.json with every board's budget.

HEAP is the smallest heap the node boots and runs in today on the 64-bit VM (docs/firmware.md
section 6 explains why it is not yet the issue's 64 KB: code loaded into RAM).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.netutil import wait_for
from tests.test_virtual_node_mqtt import MiniBridge
from tools.virtual_node import VirtualNode

REPO = Path(__file__).resolve().parent.parent
HEAP = "160K"
WINDOWS = 100
GOAL_KB = 64  # issue 3: the whole node under -X heapsize=64K
LINE = re.compile(r"heap windows=(\d+) live=(\d+) peak=(\d+) window_alloc=(\d+) total=(\d+)")


def _last_probe(text: str) -> dict | None:
    found = LINE.findall(text)
    if not found:
        return None
    w, live, peak, alloc, total = map(int, found[-1])
    return dict(windows=w, live=live, peak=peak, window_alloc=alloc, total=total)


def test_whole_node_runs_100_windows_in_a_fixed_heap(broker, tmp_path):
    bridge = MiniBridge(broker.port)
    vn = VirtualNode(tmp_path / "heap", "heap1", mqtt_port=broker.port, heap=HEAP, interval_s=0,
                     status_interval_s=1.0, env={"VIBEKIT_HEAP_PROBE": "10"},
                     sim={"tones": [[0, 80.0, 0.5], [2, 700.0, 0.2]], "noise_g": 0.01,
                          "realtime": False})
    t0 = time.monotonic()
    try:
        vn.start()
        wait_for(lambda: not vn.alive() or ((_last_probe(vn.log_text()) or {}).get("windows", 0) >= WINDOWS
                                            and len(bridge.kinds(0)) >= WINDOWS),
                 timeout=45, what=f"{WINDOWS} windows acked")
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
    boards = {}
    for p in sorted((REPO / "boards").glob("*.json")):
        b = json.loads(p.read_text())
        h = b.get("heap") or {}
        boards[p.stem] = {k: h[k] for k in ("budget_kb", "free_kb_wifi", "free_kb_wifi_tls") if k in h}
        boards[p.stem]["vm_peak_within_budget"] = probe["peak"] <= h.get("budget_kb", 0) * 1024
        if "free_kb_wifi" in h:
            boards[p.stem]["vm_peak_within_free_heap_wifi"] = probe["peak"] <= h["free_kb_wifi"] * 1024
    result = {
        "what": "whole node (SimAccel 3 x 1024 @ 3200 Hz, features, littlefs journal, MQTT QoS 1 to mosquitto) "
                "on the 64-bit MicroPython VM, code precompiled with mpy-cross -march=x64",
        "heapsize": HEAP,
        "heap_total_bytes": probe["total"],
        "windows": probe["windows"],
        "live_bytes": probe["live"],
        "peak_bytes": probe["peak"],
        "window_alloc_bytes": probe["window_alloc"],
        "status_free_heap_min": min(free) if free else None,
        "goal_heap_kb": GOAL_KB,
        "goal_met": probe["peak"] <= GOAL_KB * 1024,
        "boards": boards,
        "seconds": round(elapsed, 1),
    }
    out = REPO / "bench" / "results" / "heap.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    print(json.dumps(result))
