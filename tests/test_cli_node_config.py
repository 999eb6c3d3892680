"""`host-bridge check-config node.json`: the node's config, checked on the host before deploy by
the same validator the node runs at boot (on the MicroPython VM)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXE = str(Path(sys.executable).parent / "host-bridge")


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, "check-config", str(path)], capture_output=True, text=True, timeout=60)


def test_good_node_config_passes(tmp_path):
    p = tmp_path / "pump-1.json"
    p.write_text(json.dumps({"node_id": "pump-1", "uplink": "serial", "window": {"n": 1024, "odr_hz": 3200}}))
    r = _check(p)
    assert r.returncode == 0, r.stderr
    assert "OK (node config for 'pump-1')" in r.stdout


def test_bad_node_config_names_file_and_every_bad_key(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"node_id": "pump-1", "mqtt": {"port": 0, "prot": 1}}))
    r = _check(p)
    assert r.returncode == 2
    err = r.stderr
    assert err.startswith(f"config error: {p}: ")
    assert "mqtt.port: must be in 1..65535 (got 0)" in err and "mqtt.prot: unknown key" in err
    p.write_text(json.dumps({"node_id": "pump 1"}))
    r = _check(p)
    assert r.returncode == 2 and "node_id" in r.stderr


def test_node_config_that_is_not_json(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{node_id: ")
    r = _check(p)
    assert r.returncode == 2 and "<syntax>" in r.stderr
