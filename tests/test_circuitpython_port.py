"""firmware/ports/circuitpython.py on CPython with fakes of the CircuitPython modules
(tests/circuitpython_fakes.py): WiFi up/down/reconnect and RSSI, the socket pool, reset
cause codes, watchdog fed on progress, buses from the board file, the flash check, the
usb_cdc stream, the ticks/ilistdir stand-ins, port detection; and the minimqtt uplink's
packet tracking. The node itself runs on this port in tests/test_links_mqtt.py."""

from __future__ import annotations

import json
import socket
import sys
import types
from pathlib import Path

import pytest

from tests import circuitpython_fakes as fakes

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"


@pytest.fixture
def cp(monkeypatch):
    """(port module, fake modules) with the fakes in sys.modules for this test only."""
    mods: dict = {}
    fake = fakes.install(mods)
    for k, v in mods.items():
        monkeypatch.setitem(sys.modules, k, v)
    monkeypatch.syspath_prepend(str(FIRMWARE))
    for name in [n for n in sys.modules if n == "ports" or n.startswith(("ports.", "drivers", "vibenode"))]:
        monkeypatch.delitem(sys.modules, name)
    import ports.circuitpython as port_mod

    yield port_mod, fake
    for name in [n for n in sys.modules if n == "ports" or n.startswith(("ports.", "drivers", "vibenode"))]:
        sys.modules.pop(name, None)


def _port(port_mod, tmp_path, board: dict | None = None):
    if board is not None:
        (tmp_path / "board.json").write_text(json.dumps(board))
    p = port_mod.Port(root=str(tmp_path))
    if board is not None:
        p.load_board()
    return p


def test_wifi_up_rssi_and_reconnect(cp, tmp_path):
    port_mod, fake = cp
    p = _port(port_mod, tmp_path)
    radio = fake["wifi"].radio
    cfg = {"wifi": {"ssid": "plant", "password": "pw", "hostname": "vib-7"}}
    assert p.rssi() is None  # not connected: NaN in the status record
    assert p.network_up(cfg) is True
    assert radio.connects == [("plant", "pw")] and radio.hostname == "vib-7"
    assert p.rssi() == -61
    radio.drop()
    radio.fail_next = 1
    assert p.network_check(cfg) is False  # bounded and quiet: the node keeps measuring
    assert p.network_check(cfg) is True and p.wifi_reconnects == 2
    assert p.network_up({"wifi": None}) is False
    assert p.socket_pool() is socket and p.socket_pool() is p.socket_pool()  # socket_pool=socket on CPython


@pytest.mark.parametrize("reason,code", [("POWER_ON", 1), ("RESET_PIN", 2), ("WATCHDOG", 3),
                                          ("DEEP_SLEEP_ALARM", 4), ("SOFTWARE", 5), ("BROWNOUT", 6),
                                          ("UNKNOWN", 0)])
def test_reset_cause_uses_micropython_codes(cp, tmp_path, reason, code):
    port_mod, fake = cp
    fake["microcontroller"].cpu.reset_reason = reason
    assert _port(port_mod, tmp_path).reset_cause() == code


def test_watchdog_fed_only_on_progress(cp, tmp_path):
    port_mod, fake = cp
    p = _port(port_mod, tmp_path)
    wd = fake["microcontroller"].watchdog
    p.progress()
    assert wd.feeds == 0  # no watchdog configured
    p.watchdog(8)
    assert wd.timeout == 8 and wd.mode == "RESET" and wd.feeds == 1
    p.progress()
    p.progress()
    assert wd.feeds == 3


def test_buses_from_the_board_file(cp, tmp_path):
    port_mod, fake = cp
    board = json.loads((REPO / "boards" / "circuitpython-pico-w.json").read_text())
    board["buses"]["spi0"] = {"kind": "spi", "sck": "GP18", "mosi": "GP19", "miso": "GP16", "cs": "GP17"}
    p = _port(port_mod, tmp_path, board)
    i2c = p.bus("i2c0")
    assert isinstance(i2c, fakes.I2C) and (i2c.scl.name, i2c.sda.name, i2c.frequency) == ("GP5", "GP4", 400000)
    assert p.bus("i2c0") is i2c  # one busio object per bus
    dev = p.bus("spi0")
    assert type(dev).__name__ == "CPSPIDevice" and dev.cs.value is True  # chip select idles high
    from vibenode.sensors import make_temp, sensor_specs

    temp = make_temp(sensor_specs(board)["temp"], p)  # "mcu" driver on the cpu_temp bus
    assert temp.read_c() == 27.5
    with pytest.raises(ValueError):
        p.bus("nope")


def test_flash_must_be_writable(cp, tmp_path):
    port_mod, _ = cp
    p = _port(port_mod, tmp_path)
    assert p.mount_flash({"flash": {"mount": ""}}) == str(tmp_path)
    missing = port_mod.Port(root=str(tmp_path / "ro"))
    with pytest.raises(OSError, match="boot.py"):
        missing.mount_flash({})


def test_usb_cdc_stream(cp, tmp_path):
    port_mod, fake = cp

    class Ser:
        def __init__(self):
            self.rx = bytearray(b"\xa5\x5aack")
            self.tx = bytearray()
            self.timeout = self.write_timeout = None

        @property
        def in_waiting(self):
            return len(self.rx)

        def readinto(self, mv):
            n = len(mv)
            mv[:] = self.rx[:n]
            del self.rx[:n]
            return n

        def write(self, b):
            self.tx += b
            return len(b)

    p = _port(port_mod, tmp_path)
    with pytest.raises(OSError, match="usb_cdc"):
        p.serial_stream()  # data channel not enabled in boot.py
    fake["usb_cdc"].data = ser = Ser()
    s = p.serial_stream()
    buf = bytearray(3)
    assert s.wait_readable(10) and s.read_into(buf) == 3 and bytes(buf) == b"\xa5\x5aa"
    assert s.read_into(buf) == 2
    assert not s.wait_readable(5)
    assert s.write_all(b"frame", 100) and ser.tx == b"frame" and ser.write_timeout == 0.1


def test_compat_gives_ticks_and_ilistdir(cp, tmp_path):
    port_mod, _ = cp
    mods: dict = {}
    port_mod.install_compat(mods)  # CPython lacks both, like CircuitPython
    t, o = mods["time"], mods["os"]
    a = t.ticks_ms()
    t.sleep_ms(20)
    assert 15 <= t.ticks_diff(t.ticks_ms(), a) < 1000
    assert t.ticks_diff(t.ticks_add(a, -5), a) == -5
    assert t.ticks_diff(t.ticks_us(), t.ticks_us()) <= 0
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    ents = {e[0]: e[1] for e in o.ilistdir(str(tmp_path))}
    assert ents == {"d": 0x4000, "f": 0x8000}
    assert o.getcwd()  # everything else is the real module


def test_detect_picks_circuitpython(cp, monkeypatch):
    import ports

    monkeypatch.setattr(sys, "implementation", types.SimpleNamespace(name="circuitpython"))
    assert ports.detect().name == "circuitpython"


def test_minimqtt_socket_tracks_packet_boundaries(cp):
    import vibenode.uplink_minimqtt as um

    link = types.SimpleNamespace(timeout_s=1, rx_deadline=None, rx_ms=0, tx_ms=0,
                                 health=types.SimpleNamespace(error=lambda *a: None))
    s = um._Sock(link, socket.socket())
    try:
        # PUBLISH with a 200-byte body (two-byte remaining length), PINGRESP, PUBACK
        wire = bytes([0x30, 0xC8, 0x01]) + bytes(200) + b"\xd0\x00" + b"\x40\x02\x00\x07"
        for cut in (1, 2, 3, 50, 203, 204, 205, 206):
            s._state = 0
            s._track(wire[:cut], cut)
            mid = s._state
            s._track(wire[cut:], len(wire) - cut)
            assert s._state == 0, (cut, mid)
        s._track(wire[:10], 10)
        assert s._state == 2 and s._need == 200 - 7  # inside the body: reads get timeout_s
    finally:
        s.raw.close()
