"""The walking skeleton, whole: real firmware on the MicroPython VM -> real mosquitto / a real
pty -> the bridge daemon (a separate process, `host-bridge run`) -> Modbus TCP (pymodbus client
and Debian's mbpoll) and OPC UA (asyncua client). Values must match the simulated signal's
analytic values within 2 %.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from host_bridge.demo import expected_values
from host_bridge.outputs.register_map import FLOAT_OFFSET, RegisterMap, decode_float
from tests.netutil import free_port, wait_for, wait_port
from tools.virtual_node import VirtualNode

# Tones on FFT bins of a 1024-sample window at 3200 Hz (3.125 Hz per bin) and off them.
SIG_MQTT = {"tones": [[0, 50.0, 0.40], [1, 125.0, 0.20], [2, 25.0, 0.10]], "noise_g": 0.0, "temp_c": 41.0}
SIG_SERIAL = {"tones": [[0, 80.0, 0.30], [1, 61.0, 0.25], [2, 160.0, 0.50]], "noise_g": 0.0, "temp_c": 36.5}
CHECKED = ["temperature", "acc_rms_x", "acc_rms_y", "acc_rms_z", "vel_rms_x", "vel_rms_y", "vel_rms_z"]


def mbpoll_exe() -> str:
    exe = shutil.which("mbpoll")
    if not exe:
        raise RuntimeError("mbpoll not found: apt-get install mbpoll (tools/test.sh does it as root)")
    return exe


@pytest.fixture
def system(tmp_path, broker):
    """Two virtual nodes (MQTT, serial) and the bridge daemon; everything stopped afterwards."""
    n_mqtt = VirtualNode(tmp_path / "n-mqtt", "e2e-mqtt", uplink="mqtt", mqtt_port=broker.port, sim=SIG_MQTT)
    n_ser = VirtualNode(tmp_path / "n-ser", "e2e-serial", uplink="serial", sim=SIG_SERIAL)
    modbus_port, opcua_port = free_port(), free_port()
    conf = tmp_path / "bridge.toml"
    conf.write_text(
        f"""
[bridge]
data_dir = "bridge-data"
[mqtt]
port = {broker.port}
client_id = "e2e-bridge"
[[serial]]
port = "{n_ser.serial_path}"
node = "e2e-serial"
[modbus]
port = {modbus_port}
[opcua]
endpoint = "opc.tcp://127.0.0.1:{opcua_port}"
allow_anonymous = true
allow_none_security = true
[web]
enabled = false
[[nodes]]
id = "e2e-mqtt"
unit_id = 1
site = "plant"
area = "hall-1"
asset = "pump-1"
[[nodes]]
id = "e2e-serial"
unit_id = 2
site = "plant"
area = "hall-1"
asset = "fan-2"
"""
    )
    log = open(tmp_path / "bridge.log", "wb")
    bridge = subprocess.Popen(
        [str(Path(sys.executable).parent / "host-bridge"), "run", "--config", str(conf)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_port(modbus_port, timeout=30)
        n_mqtt.start()
        n_ser.start()
        yield {"modbus": modbus_port, "opcua": opcua_port, "conf": conf, "bridge": bridge, "tmp": tmp_path}
    finally:
        for n in (n_mqtt, n_ser):
            n.stop()
            n.close()
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(20)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait(5)
        log.close()


def _read_values(client: ModbusTcpClient, unit: int, rm: RegisterMap) -> dict[str, float]:
    n = len(rm.value_names)
    rr = client.read_input_registers(FLOAT_OFFSET, count=2 * n, device_id=unit)
    assert not rr.isError(), rr
    return {name: decode_float(rr.registers[2 * i : 2 * i + 2], rm.word_order) for i, name in enumerate(rm.value_names)}


def _close(got: float, want: float, rel: float = 0.02) -> bool:
    return not math.isnan(got) and abs(got - want) <= rel * abs(want)


def test_virtual_nodes_to_modbus_mbpoll_and_opcua(system):
    from host_bridge.config import load_config

    cfg = load_config(system["conf"])
    rm = RegisterMap.from_config(cfg)
    want = {1: expected_values(SIG_MQTT), 2: expected_values(SIG_SERIAL)}
    client = ModbusTcpClient("127.0.0.1", port=system["modbus"])
    assert client.connect()

    def both_have_values():
        return all(not math.isnan(_read_values(client, u, rm)["acc_rms_x"]) for u in (1, 2))

    wait_for(both_have_values, timeout=90, interval=0.5, what="values from both nodes on Modbus")
    for unit, expected in want.items():
        got = _read_values(client, unit, rm)
        for name in CHECKED:
            assert _close(got[name], expected[name]), (unit, name, got[name], expected[name])
        assert got["iso_zone"] in (1.0, 2.0, 3.0, 4.0)

    # Debian's mbpoll, big-endian floats (-B), 1-based references
    for unit, expected in want.items():
        idx = rm.value_names.index("acc_rms_x")
        ref = FLOAT_OFFSET + 2 * idx + 1
        out = subprocess.run(
            [mbpoll_exe(), "-m", "tcp", "-a", str(unit), "-p", str(system["modbus"]), "-t", "3:float", "-B",
             "-r", str(ref), "-c", "3", "-1", "127.0.0.1"],
            capture_output=True, text=True, timeout=20,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        vals = [float(v) for v in re.findall(r"^\[\d+\]:\s+(\S+)", out.stdout, re.M)]
        assert len(vals) == 3, out.stdout
        for axis, v in zip("xyz", vals):
            assert _close(v, expected[f"acc_rms_{axis}"]), (unit, axis, v, out.stdout)
    client.close()

    asyncio.run(_check_opcua(system["opcua"], cfg, want))


async def _check_opcua(port: int, cfg, want: dict[int, dict[str, float]]) -> None:
    from asyncua import Client

    from host_bridge.outputs.opcua import browse_name

    async with Client(f"opc.tcp://127.0.0.1:{port}", timeout=10) as c:
        idx = await c.get_namespace_index(cfg.opcua.namespace)
        for node in cfg.nodes:
            expected = want[node.unit_id]
            base = ["0:Objects", f"{idx}:{node.site}", f"{idx}:{node.area}", f"{idx}:{node.asset}", f"{idx}:{node.id}"]
            for name in CHECKED:
                var = await c.nodes.root.get_child([*base, f"{idx}:{browse_name(name)}"])
                dv = await var.read_data_value()
                assert dv.StatusCode.is_good(), (node.id, name, dv.StatusCode)
                assert _close(float(dv.Value.Value), expected[name]), (node.id, name, dv.Value.Value)
                assert dv.SourceTimestamp is not None and dv.ServerTimestamp is not None
                # the device's clock was synced by the bridge: source time is recent, not 1970
                assert abs(dv.SourceTimestamp.timestamp() - time.time()) < 120
            vel = await c.nodes.root.get_child([*base, f"{idx}:{browse_name('vel_rms_x')}"])
            eu = await (await vel.get_child("0:EngineeringUnits")).read_value()
            assert eu.DisplayName.Text == "mm/s" and eu.UnitId == 4403510  # UNECE C16
            rng = await (await vel.get_child("0:EURange")).read_value()
            assert rng.Low == 0.0 and rng.High > 10.0
