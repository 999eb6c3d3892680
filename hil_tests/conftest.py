"""Hardware-in-the-loop: one device under test (DUT), a broker and a bridge around it.

Target switch (like MicroPython's run-tests.py / pytest-embedded):
  default            the virtual board (tools/vboard.py): the MicroPython VM with its REPL on a
                     pty, driven by mpremote with `resume`, exactly as a board is
  --port DEV --board boards/<board>.json [--node-config my_node.json] [--broker-host LAN_IP]
                     a real board over USB through mpremote; the suite starts mosquitto on the
                     bench PC (listening on LAN_IP too) and an in-process bridge. When DEV is
                     not there, every test is skipped with one message.
  --power-cmd "CMD"  real board: a shell command that cuts and restores power (USB relay,
                     `uhubctl -a cycle ...`); without it the power-cut case resets the chip
                     (ESP32: RTS pulse on the EN pin; others: machine.reset())

Real boards: run with `-p no:xdist` (one DUT, one process). docs/hil.md has the bench wiring.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.brokers import make_broker
from tests.netutil import free_port
from tools import deploy as dep
from tools.virtual_node import sim_board

NODE_ID = "hil1"
SIM = {"tones": [[0, 80.0, 0.5]], "noise_g": 0.01, "temp_c": 31.0}


def pytest_addoption(parser):
    g = parser.getgroup("hil", "hardware-in-the-loop (hil_tests/)")
    g.addoption("--port", default=None, help="serial device of a real board (default: the virtual board)")
    g.addoption("--board", default=None, help="board file for --port, e.g. boards/esp32_devkit.json")
    g.addoption("--node-config", default=None, help="JSON merged into the node config (wifi, mqtt.host...)")
    g.addoption("--broker-host", default=None, help="bench PC address the real board reaches the broker at")
    g.addoption("--power-cmd", default=None, help="command that power-cycles the real board")


def _absent_reason(config) -> str | None:
    port = config.getoption("--port", default=None)
    if not port:
        return None
    if not os.path.exists(port):
        return f"HIL: no device at {port} (board unplugged? see docs/hil.md); hardware tests skipped"
    if not config.getoption("--board"):
        return "HIL: --port needs --board <boards/*.json>; hardware tests skipped"
    return None


def pytest_report_header(config):
    port = config.getoption("--port", default=None)
    if not port:
        return "hil: DUT = virtual board (MicroPython VM on a pty, mpremote resume)"
    return f"hil: DUT = {port} board {config.getoption('--board')}" + (
        f" ({_absent_reason(config)})" if _absent_reason(config) else "")


def pytest_collection_modifyitems(config, items):
    """No device: keep one HIL item, skipped with the reason, and deselect the rest (one line)."""
    reason = _absent_reason(config)
    if reason is None:
        return
    here = Path(__file__).parent
    hil = [it for it in items if here in Path(str(it.fspath)).parents]
    if not hil:
        return
    hil[0].add_marker(pytest.mark.skip(reason=f"{reason} ({len(hil)} tests)"))
    rest = hil[1:]
    if rest:
        config.hook.pytest_deselected(items=rest)
        items[:] = [it for it in items if it not in rest]


@dataclass
class Dut:
    """The device under test as the tests see it: a serial port mpremote drives, and its power."""

    port: str
    board: dict
    virtual: bool
    vboard: object = None  # tools.vboard.VBoard when virtual
    power_cmd: str | None = None

    def exec(self, code: str, timeout: float = 60) -> str:
        """Run code on the device (interrupts main.py, like any mpremote session); returns stdout."""
        r = dep.mpremote(self.port, "exec", code, timeout=timeout, check=False)
        if r.returncode != 0 or "Traceback" in r.stdout:
            raise AssertionError(f"device exec failed: {r.stdout[-800:]} {r.stderr[-800:]}")
        return r.stdout

    def deploy(self, cfg: dict) -> dep.DeployResult:
        return dep.deploy(self.board, cfg, self.port, log=lambda s: None)

    def reset(self) -> None:
        """Reboot and run main.py again."""
        if self.virtual:
            self.vboard.reset()
        else:
            dep.mpremote(self.port, "exec", "--no-follow", dep.RESET, timeout=30)

    def power_cut(self) -> str:
        """Cut power while the node runs (no REPL interrupt first); returns how it was done."""
        if self.virtual:
            self.vboard.power_cut(0.3)
            return "kill -9 of the VM"
        if self.power_cmd:
            subprocess.run(shlex.split(self.power_cmd), check=True, timeout=60)
            return f"power command {self.power_cmd!r}"
        if dep.port_module(self.board) == "esp32":
            import serial

            with serial.Serial(self.port, 115200) as s:  # DevKit auto-reset: RTS low pulls EN low
                s.dtr = False
                s.rts = True
                time.sleep(0.2)
                s.rts = False
            return "RTS pulse on EN (hardware reset)"
        self.reset()
        return "machine.reset() (interrupts main.py first: not mid-write; use --power-cmd for a true cut)"

    def console(self) -> str:
        return self.vboard.log_text() if self.virtual else ""


class Rig:
    """DUT + mosquitto + bridge, with the waits the tests share."""

    def __init__(self, dut: Dut, broker, bridge, cfg: dict, tmp: Path) -> None:
        self.dut = dut
        self.broker = broker
        self.bridge = bridge
        self.cfg = cfg
        self.node = cfg["node_id"]
        self.tmp = tmp
        self.deploy_result: dep.DeployResult | None = None

    @property
    def historian(self):
        return self.bridge.historian

    def measurements(self, since_seq: int = 0) -> list:
        recs = self.historian.history(self.node, 0, 2**62, kind=0)
        return sorted((r for r in recs if r.seq > since_seq), key=lambda r: r.seq)

    def max_seq(self) -> int:
        return self.historian.max_seq(self.node)

    def wait(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n--- node console ---\n"
                             + self.dut.console()[-3000:])

    def wait_reporting(self, timeout: float = 40, boot: int | None = None) -> list:
        """Wait until the node delivers a synced measurement (optionally from a given boot)."""
        start = self.max_seq()

        def fresh():
            return [r for r in self.measurements(start) if r.clock_synced and (boot is None or r.boot >= boot)]

        return self.wait(fresh, timeout, f"a new synced measurement from {self.node}")


def _lan_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: picks the interface of the default route
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


@pytest.fixture(scope="session")
def rig(request, tmp_path_factory):
    from tests.bridge_harness import BridgeThread, make_config

    opt = request.config.getoption
    tmp = tmp_path_factory.mktemp("hil")
    port = opt("--port")
    virtual = not port
    extra = json.loads(Path(opt("--node-config")).read_text()) if opt("--node-config") else {}
    broker_host = opt("--broker-host") or (extra.get("mqtt") or {}).get("host")
    bport = free_port()
    extra_conf = ""
    if not virtual:
        broker_host = broker_host or _lan_ip()
        if broker_host != "127.0.0.1":
            extra_conf = f"listener {bport} {broker_host}\n"
    broker = make_broker(tmp / "broker", port=bport, extra_conf=extra_conf).start()
    cfg = {
        "node_id": NODE_ID,
        "mqtt": {"host": broker_host or "127.0.0.1", "port": bport, "keepalive_s": 10, "timeout_s": 3.0,
                 "backoff_min_s": 0.2, "backoff_max_s": 2.0},
        "window": {"n": 1024, "odr_hz": 3200, "interval_s": 1.0},
        "batch": {"ack_timeout_s": 3.0},
        "status_interval_s": 5.0,
    }
    for k, v in extra.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    cfg["mqtt"]["port"] = bport
    if broker_host:
        cfg["mqtt"]["host"] = broker_host
    vb = None
    if virtual:
        from tools.vboard import VBoard

        vb = VBoard(tmp / "board").start()
        board = sim_board(SIM, name="virtual-hil")
        dut = Dut(vb.port, board, True, vb)
    else:
        dut = Dut(port, dep.load_board(opt("--board")), False, power_cmd=opt("--power-cmd"))
    bt = BridgeThread(make_config(tmp, [NODE_ID], mqtt_port=bport))
    bridge = bt.__enter__()
    r = Rig(dut, broker, bridge, cfg, tmp)
    try:
        r.deploy_result = dut.deploy(cfg)
        yield r
    finally:
        bt.__exit__(None, None, None)
        if vb is not None:
            vb.stop()
        broker.stop()


@pytest.fixture
def running(rig):
    """The node, running and reporting (after whatever the previous test did to it)."""
    rig.wait_reporting(60)
    return rig
