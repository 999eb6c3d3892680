"""Deploy onto the virtual board through mpremote: installs, the node reports, a redeploy copies only changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bridge_harness import BridgeThread, make_config
from tests.netutil import wait_for
from tools import deploy as dep
from tools.commission import check
from tools.vboard import VBoard

REPO = Path(__file__).resolve().parent.parent
REV = "test-rev"  # fixed: the git revision goes into deploy.json and may move under a live tree
BOARDS = sorted((REPO / "boards").glob("*.json"))


def _cfg(port: int) -> dict:
    return {"node_id": "dep1", "mqtt": {"port": port, "keepalive_s": 10, "timeout_s": 3.0, "backoff_min_s": 0.2,
                                          "backoff_max_s": 2.0},
            "window": {"n": 1024, "odr_hz": 3200, "interval_s": 1.0}, "batch": {"ack_timeout_s": 3.0},
            "status_interval_s": 10.0}


def test_deploy_virtual_board_reports_then_redeploy_copies_only_changes(tmp_path, broker):
    board = dep.load_board(REPO / "boards" / "virtual.json")
    cfg = _cfg(broker.port)
    with VBoard(tmp_path / "board") as vb, BridgeThread(make_config(tmp_path, ["dep1"], mqtt_port=broker.port)) as br:
        first = dep.deploy(board, cfg, vb.port, log=lambda s: None, revision=REV)
        assert {"main.py", "config.json", "board.json", "lib/umqtt/simple.mpy", "vibenode/node.mpy",
                "ports/unix.mpy", "deploy.json"} <= set(first.copied)
        assert first.unchanged == []
        # the files on the device are the compiled ones, byte for byte
        assert (tmp_path / "board" / "vibenode" / "kernels.mpy").read_bytes()[:1] == b"M"
        v = check("dep1", 40, historian=br.cfg.data_dir)
        assert v.ok, v.reason + "\n" + vb.log_text()[-2000:]
        assert v.record.boot == 1

        cfg["status_interval_s"] = 5.0  # one changed setting
        second = dep.deploy(board, cfg, vb.port, log=lambda s: None, revision=REV)
        assert second.copied == ["config.json", "deploy.json"], second.copied
        assert len(second.unchanged) == len(first.copied) - 2
        # the reset rebooted the node with the new config: boot 2 reports in
        wait_for(lambda: any(r.boot == 2 and r.clock_synced
                             for r in br.historian.history("dep1", 0, 2**62, kind=0)), 40, what="boot 2 records")
        on_device = json.loads((tmp_path / "board" / "deploy.json").read_text())
        assert on_device["files"]["config.json"] == dep.build_image(board, cfg, revision=REV).hashes()["config.json"]

        third = dep.deploy(board, cfg, vb.port, reset=False, log=lambda s: None, revision=REV)
        assert third.copied == []


def test_bad_config_is_refused_before_touching_the_device():
    with pytest.raises(dep.DeployError, match="mqtt.port"):
        dep.validate_config({"node_id": "x", "mqtt": {"port": 0}})


@pytest.mark.parametrize("path", BOARDS, ids=[p.stem for p in BOARDS])
def test_image_per_board(path):
    board = dep.load_board(path)
    img = dep.build_image(board, {"node_id": "n"}, strict=False)
    files = set(img.files)
    assert {"main.py", "board.json", "config.json", "deploy.json"} <= files
    if dep.is_circuitpython(board):
        assert img.arch is None and "vibenode/node.py" in files
    else:
        assert img.arch == (dep.board_arch(board)), img.arch
        assert "vibenode/node.mpy" in files and "vibenode/node.py" not in files
        assert f"ports/{dep.port_module(board)}.mpy" in files
    assert not img.warnings or dep.is_circuitpython(board), img.warnings


def test_arch_map():
    assert dep.board_arch({"mcu": "ESP32-S3", "port": "micropython"}) == "xtensawin"
    assert dep.board_arch({"mcu": "RP2040", "port": "micropython"}) == "armv6m"
    assert dep.board_arch({"mcu": "esp32", "port": "micropython", "viper_arch": "xtensawin"}) == "xtensawin"
    assert dep.board_arch({"mcu": "rp2040", "port": "circuitpython"}) is None
    img = dep.Image({"vibenode/a.mpy": b"", "main.py": b"", "drivers/b.py": b""})
    assert img.twins() == ["drivers/b.mpy", "vibenode/a.py"]


def test_compile_step_shows_progress():
    import io
    import json

    from host_bridge.export import Progress
    from tools.deploy import REPO, build_image

    board = json.loads((REPO / "boards" / "esp32-devkitc.json").read_text())
    out = io.StringIO()
    bar = Progress(1, "compile", stream=out, force=True)
    img = build_image(board, None, progress=bar)
    n = sum(1 for f in img.files if f.endswith(".mpy") and not f.startswith("lib/"))
    assert n > 10
    assert bar.done == n + 1  # every module and main.py ticked once
    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("compile [") and "100%" in last, last
