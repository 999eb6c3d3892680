"""Deploy and boot; the sensors answer with their identity."""

from __future__ import annotations

import json
import queue

import paho.mqtt.client as mqtt

FW_STATUS_FILE = "firmware/vibenode/status.py"


def _retained_state(rig, timeout: float = 10.0) -> dict:
    q: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hil-state-reader")
    c.on_connect = lambda cl, *a: cl.subscribe(f"vibekit/{rig.node}/state", qos=1)
    c.on_message = lambda cl, ud, msg: q.put(json.loads(msg.payload))
    c.connect("127.0.0.1", rig.broker.port)
    c.loop_start()
    try:
        while True:
            st = q.get(timeout=timeout)
            if st.get("state") == "online":
                return st
    finally:
        c.loop_stop()
        c.disconnect()


def test_deploy_and_boot(rig):
    res = rig.deploy_result
    assert "main.py" in res.copied + res.unchanged
    assert "config.json" in res.copied + res.unchanged
    assert any(p.startswith("vibenode/") for p in res.copied + res.unchanged)
    assert any(p.startswith("lib/umqtt/") for p in res.copied + res.unchanged)
    rig.wait_reporting(60)
    st = _retained_state(rig)
    assert st["board"] == rig.dut.board["name"]
    assert st["fw"].count(".") == 2 and st["boot"] >= 1
    # the files on the device are the ones deployed: a redeploy skips them (only files edited
    # in the work tree since the first deploy may be copied again)
    again = rig.dut.deploy(rig.cfg)
    assert not {"main.py", "config.json", "board.json", "lib/umqtt/simple.mpy"} & set(again.copied), again.copied
    assert len(again.unchanged) > len(again.copied)
    rig.wait_reporting(60)


# The exec runs in the VM main.py booted: the node freed its boot-only code (constructors,
# ports.detect, ...: vibenode.node.drop_boot_code), so the modules are imported afresh first.
SENSOR_IDS = """\
import sys
for m in [m for m in sys.modules if m.split('.')[0] in ('ports', 'vibenode', 'drivers')]:
    del sys.modules[m]
from ports import detect
from vibenode.sensors import sensor_specs, make_accel, make_temp
p = detect()
s = sensor_specs(p.load_board())
a = make_accel(s['accel'], p)
print('ACCEL', s['accel']['driver'], type(a).__name__, getattr(a, 'CHIP_ID', None))
t = make_temp(s['temp'], p)
print('TEMP', s['temp']['driver'] if s['temp'] else None, type(t).__name__, getattr(t, 'CHIP_ID', None))
if t is not None:
    print('TEMP_C', t.read_c())
"""


def test_sensor_ids_read(running):
    """Drivers probe their identity register at construction (ADXL345 DEVID 0xE5, MCP9808 IDs...)."""
    rig = running
    try:
        out = rig.dut.exec(SENSOR_IDS)
    finally:
        rig.dut.reset()  # the exec interrupted main.py
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines() if ln.strip()}
    assert "ACCEL" in lines, out
    accel_driver = rig.dut.board["sensors"]["accel"]["driver"] if isinstance(rig.dut.board["sensors"], dict) else None
    if accel_driver:
        assert lines["ACCEL"][0] == accel_driver
    if "TEMP_C" in lines:
        assert -40 <= float(lines["TEMP_C"][0]) <= 125
    if rig.dut.virtual:
        assert lines["ACCEL"][1] == "SimAccel"
        assert abs(float(lines["TEMP_C"][0]) - 31.0) < 0.5
    rig.wait_reporting(60)
