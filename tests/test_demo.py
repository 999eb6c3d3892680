"""README's first command: `host-bridge demo` brings up the whole kit and shows live values.

Run on the pure-Python embedded broker (amqtt), as on a fresh machine without mosquitto.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.netutil import free_port


def test_demo_runs_nodes_bridge_and_servers_on_the_embedded_broker(tmp_path):
    modbus, opcua = free_port(), free_port()
    exe = Path(sys.executable).parent / "host-bridge"
    out = subprocess.run(
        [str(exe), "demo", "--duration", "40", "--broker", "amqtt", "--workdir", str(tmp_path / "demo"),
         "--modbus-port", str(modbus), "--opcua-port", str(opcua)],
        capture_output=True, text=True, timeout=150, cwd=tmp_path,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "broker amqtt" in text
    assert f"Modbus TCP   127.0.0.1:{modbus}" in text and f"opc.tcp://127.0.0.1:{opcua}" in text
    last = text.rsplit("node ", 1)[-1]  # the last table
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^(demo-(?:mqtt|serial)-1)\s.*$", last, re.M)}
    assert set(rows) == {"demo-mqtt-1", "demo-serial-1"}, last
    for row in rows.values():
        cols = row.split()
        assert cols[3] == "good", row  # quality
        assert int(cols[5]) > 3, row  # records arrived (seq)
        assert float(cols[7]) > 0.01, row  # acc_rms x in g
