"""A kit builds for every board file; its commissioning command passes on a virtual node, fails on silence."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.bridge_harness import BridgeThread, make_config
from tools import deploy as dep
from tools.kit import build_kit
from tools.virtual_node import VirtualNode

REPO = Path(__file__).resolve().parent.parent
BOARDS = sorted((REPO / "boards").glob("*.json"))


def test_there_are_boards():
    assert BOARDS, "boards/*.json: no board files"


@pytest.mark.parametrize("path", BOARDS, ids=[p.stem for p in BOARDS])
def test_kit_builds_for_board(path, tmp_path):
    board = dep.load_board(path)
    kit = build_kit(path, tmp_path)
    for f in ("CHECKLIST.md", "board.json", "config.template.json", "install.sh", "commission.py",
              "firmware/main.py", "firmware/board.json", "firmware/deploy.json"):
        assert (kit / f).is_file(), f
    assert not (kit / "firmware" / "config.json").exists()  # the template is filled in on site
    text = (kit / "CHECKLIST.md").read_text()
    for role, spec in board["sensors"].items():
        assert spec["driver"] in text, f"checklist lacks the {role} sensor"
    for part in (board.get("wiring") or {}):
        assert part in text
    for section in ("## 2. Wiring", "## 3. Mounting", "## 4. Flash", "## 6. Commissioning"):
        assert section in text
    with tarfile.open(tmp_path / f"{path.stem}.tar.gz") as tf:
        assert f"{path.stem}/CHECKLIST.md" in tf.getnames()
    if not dep.is_circuitpython(board):
        assert "WARNING" not in text
        assert (kit / "firmware" / "vibenode" / "features.mpy").is_file()


def _commission(kit: Path, node: str, port: int, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(kit / "commission.py"), node, "--mqtt", f"127.0.0.1:{port}",
                           "--timeout", str(timeout)], capture_output=True, text=True, timeout=timeout + 30)


def test_kit_commissioning_passes_on_a_virtual_node_and_fails_on_silence(tmp_path, broker):
    kit = build_kit(REPO / "boards" / "virtual.json", tmp_path / "kits", tar=False)
    with BridgeThread(make_config(tmp_path, ["kit1"], mqtt_port=broker.port)):
        vn = VirtualNode(tmp_path / "kit1", "kit1", mqtt_port=broker.port,
                         sim={"tones": [[0, 80.0, 0.5]], "noise_g": 0.01, "temp_c": 30.0})
        with vn:
            ok = _commission(kit, "kit1", broker.port, 40)
        silent = _commission(kit, "ghost", broker.port, 3)
    assert ok.returncode == 0 and ok.stdout.startswith("PASS kit1"), ok.stdout + ok.stderr + vn.log_text()
    assert silent.returncode == 1
    assert silent.stdout.startswith("FAIL ghost: no data from ghost within 3 s"), silent.stdout
