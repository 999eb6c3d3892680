"""Small fakes of the CircuitPython modules the port uses (board, busio, digitalio, wifi,
socketpool, microcontroller, watchdog, usb_cdc, micropython), so ports/circuitpython.py and
the node built on it run on CPython. Nothing here is hardware: the fakes record what the port
asked for and answer like CircuitPython 9 does.

`socketpool.SocketPool(radio)` hands back CPython's `socket` module: adafruit_minimqtt then
runs exactly as its own CPython examples do (socket_pool=socket).

As a script it runs the firmware node with the CircuitPython port (what main.py does on the
board) from a node dir written by tools.virtual_node.VirtualNode:

    python -m tests.circuitpython_fakes NODE_DIR
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"


class Pin:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"board.{self.name}"


class I2C:
    def __init__(self, scl, sda, *, frequency=100000):
        self.scl, self.sda, self.frequency = scl, sda, frequency
        self.locked = False

    def try_lock(self):
        self.locked = True
        return True

    def unlock(self):
        self.locked = False


class SPI:
    def __init__(self, clock, MOSI=None, MISO=None):  # noqa: N803 - CircuitPython's names
        self.clock, self.MOSI, self.MISO = clock, MOSI, MISO

    def try_lock(self):
        return True

    def unlock(self):
        pass

    def configure(self, **kw):
        self.config = kw


class DigitalInOut:
    def __init__(self, pin):
        self.pin = pin
        self.value = None

    def switch_to_output(self, value=False):
        self.value = value


class ApInfo:
    def __init__(self, rssi):
        self.rssi = rssi


class Radio:
    def __init__(self):
        self.connected = False
        self.hostname = "cpy"
        self.ap_info = None
        self.connects: list[tuple[str, str]] = []
        self.fail_next = 0  # connect() raises ConnectionError this many times

    def connect(self, ssid, password="", *, timeout=None):
        self.connects.append((ssid, password))
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("No network with that ssid")
        self.connected = True
        self.ap_info = ApInfo(-61)

    def drop(self):
        self.connected = False
        self.ap_info = None


class Watchdog:
    def __init__(self):
        self.timeout = None
        self.mode = None
        self.feeds = 0

    def feed(self):
        self.feeds += 1


def install(modules: dict | None = None, reset_reason: str = "POWER_ON") -> dict:
    """Put the fake CircuitPython modules into sys.modules (or `modules`); returns them."""
    modules = sys.modules if modules is None else modules
    m: dict[str, types.ModuleType] = {}

    board = types.ModuleType("board")
    for name in [f"GP{i}" for i in range(29)] + ["SCL", "SDA", "SCK", "MOSI", "MISO", "LED"]:
        setattr(board, name, Pin(name))
    m["board"] = board

    busio = types.ModuleType("busio")
    busio.I2C, busio.SPI = I2C, SPI
    m["busio"] = busio

    digitalio = types.ModuleType("digitalio")
    digitalio.DigitalInOut = DigitalInOut
    m["digitalio"] = digitalio

    wifi = types.ModuleType("wifi")
    wifi.radio = Radio()
    m["wifi"] = wifi

    socketpool = types.ModuleType("socketpool")
    socketpool.SocketPool = lambda radio: socket  # CPython sockets stand in for the radio's
    m["socketpool"] = socketpool

    mc = types.ModuleType("microcontroller")
    mc.ResetReason = types.SimpleNamespace(**{n: n for n in (
        "POWER_ON", "BROWNOUT", "SOFTWARE", "DEEP_SLEEP_ALARM", "RESET_PIN", "WATCHDOG", "UNKNOWN",
        "RESCUE_DEBUG", "RESET_BUTTON")})
    mc.cpu = types.SimpleNamespace(temperature=27.5, reset_reason=reset_reason)
    mc.watchdog = Watchdog()
    mc.resets = 0

    def reset():
        mc.resets += 1
        raise SystemExit("microcontroller.reset()")

    mc.reset = reset
    m["microcontroller"] = mc

    wd = types.ModuleType("watchdog")
    wd.WatchDogMode = types.SimpleNamespace(RAISE="RAISE", RESET="RESET")
    m["watchdog"] = wd

    usb_cdc = types.ModuleType("usb_cdc")
    usb_cdc.data = None
    m["usb_cdc"] = usb_cdc

    # CircuitPython's micropython module has const() but no native/viper emitters: the
    # features and the clip check take their pure-Python paths, as on the board.
    mp = types.ModuleType("micropython")
    mp.const = lambda x: x
    m["micropython"] = mp

    if not hasattr(gc, "mem_free"):  # CircuitPython's gc reports the free heap
        gc.mem_free = lambda: 123000
    if not hasattr(sys, "print_exception"):
        import traceback

        sys.print_exception = lambda e, f=sys.stderr: traceback.print_exception(e, file=f)
    modules.update(m)
    return m


def node_env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(FIRMWARE), str(REPO)])
    return e


def run_node(node_dir: str) -> int:
    """What firmware/main.py does on the board, with the CircuitPython port picked explicitly."""
    install()
    from ports import circuitpython

    circuitpython.install_compat()  # CPython has no time.ticks_* either: same stand-ins as the board
    port = circuitpython.Port(root=node_dir)
    from vibenode import config
    from vibenode.node import build

    cfg = config.load(port.config_path())
    board = port.load_board()
    node = build(port, board, cfg, port.log)
    try:
        node.run()
    except KeyboardInterrupt:
        node.uplink.close()
        node.journal.close()
    return 0


class CircuitPythonNode:
    """The firmware on CPython with the CircuitPython port and fakes: a VirtualNode look-alike.

    Takes a tools.virtual_node.VirtualNode (only for the node dir, config.json and
    board.json it writes) and runs `python -m tests.circuitpython_fakes` on that dir.
    """

    def __init__(self, vn) -> None:
        self.vn = vn
        self.node_id = vn.node_id
        self.node_dir = vn.node_dir
        self.config = vn.config
        self.log_path = vn.log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> CircuitPythonNode:
        if self.alive():
            return self
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "tests.circuitpython_fakes", str(self.node_dir)],
                                     cwd=str(REPO), env=node_env(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


if __name__ == "__main__":
    sys.exit(run_node(sys.argv[1]))
