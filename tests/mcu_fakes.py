"""Small fakes of the MicroPython modules the MCU ports import (machine, network, esp32, rp2,
ntptime, onewire, micropython) and a virtual ticks clock, so firmware/ports/_board.py,
esp32.py and rp2.py run on CPython. Nothing here is hardware: the fakes record what the port
asked for and answer like MicroPython 1.2x does. Same approach as tests/circuitpython_fakes.py.
"""

from __future__ import annotations

import sys
import time as _time
import types

# machine.reset_cause() codes as MicroPython defines them (esp32 and rp2 use the same numbers)
RESET_CODES = {"PWRON_RESET": 1, "HARD_RESET": 2, "WDT_RESET": 3, "DEEPSLEEP_RESET": 4, "SOFT_RESET": 5}


class Clock:
    """time with ticks_ms/ticks_add/ticks_diff/sleep_ms on a virtual clock: sleep_ms advances
    it at once, so a test sees exactly how long the port would have blocked."""

    MASK = (1 << 30) - 1  # MicroPython's ticks period

    def __init__(self, epoch_year=1970, now_s=1_700_000_000):
        self.ms = 0
        self.epoch_year = epoch_year
        self.now_s = now_s  # what time.time() says once NTP set the RTC (1970 epoch)
        self.on_sleep = None  # callback(ms) to let the world move while the port waits

    def ticks_ms(self):
        return self.ms & self.MASK

    def ticks_add(self, t, d):
        return (t + d) & self.MASK

    def ticks_diff(self, a, b):
        return ((a - b + (self.MASK + 1) // 2) & self.MASK) - (self.MASK + 1) // 2

    def sleep_ms(self, ms):
        self.ms += ms
        if self.on_sleep:
            self.on_sleep(self.ms)

    def sleep(self, s):
        self.sleep_ms(int(s * 1000))

    def time(self):
        return self.now_s - (946684800 if self.epoch_year == 2000 else 0)

    def gmtime(self, t=0):
        return (self.epoch_year, 1, 1, 0, 0, 0, 3, 1) if t == 0 else _time.gmtime(t)[:8]


class Pin:
    OUT, IN = 1, 0

    def __init__(self, id, mode=None, value=None):  # noqa: A002 - MicroPython's name
        self.id, self.mode, self._v = id, mode, value
        self.history: list[int] = []  # every value() written

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = v
        self.history.append(v)


class I2C:
    def __init__(self, id, *, scl, sda, freq=400000):  # noqa: A002
        self.id, self.scl, self.sda, self.freq = id, scl, sda, freq

    def readfrom_mem_into(self, addr, reg, buf):
        raise OSError(19)  # ENODEV: nothing on the fake bus

    def writeto_mem(self, addr, reg, buf):
        raise OSError(19)


class SPI:
    def __init__(self, id, *, baudrate, polarity, phase, sck, mosi, miso):  # noqa: A002
        self.id, self.baudrate, self.polarity, self.phase = id, baudrate, polarity, phase
        self.sck, self.mosi, self.miso = sck, mosi, miso
        self.regs = {0x00: 0xE5}  # ADXL345 DEVID
        self.writes: list[bytes] = []
        self._reg = None

    def write(self, b):
        b = bytes(b)
        self.writes.append(b)
        self._reg = b[0] & 0x3F

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self.regs.get(self._reg + i, 0)


class ADC:
    u16 = 0

    def __init__(self, channel):
        self.channel = channel

    def read_u16(self):
        return ADC.u16


class WDT:
    instances: list = []
    max_ms = None  # rp2: 8388

    def __init__(self, id=0, timeout=5000):  # noqa: A002
        if self.max_ms is not None and timeout > self.max_ms:
            raise ValueError("timeout exceeds maximum")
        self.timeout = timeout
        self.feeds = 0
        type(self).instances.append(self)

    def feed(self):
        self.feeds += 1


class WLAN:
    def __init__(self, iface):
        self.iface = iface
        self.is_active = False
        self.connected = False
        self.reachable = True  # the AP answers
        self.join_polls = 3  # isconnected() polls until a join completes
        self.rssi = -67
        self.connects: list[tuple[str, str]] = []
        self.disconnects = 0
        self.connect_raises = None
        self._pending = 0
        self.hostname_at_connect = None

    def active(self, on=None):
        if on is not None:
            self.is_active = on
        return self.is_active

    def connect(self, ssid, key=""):
        if self.connect_raises:
            raise self.connect_raises
        self.connects.append((ssid, key))
        self.hostname_at_connect = self._net.host
        self._pending = self.join_polls

    def disconnect(self):
        self.disconnects += 1
        self.connected = False
        self._pending = 0

    def isconnected(self):
        if not self.connected and self._pending and self.reachable:
            self._pending -= 1
            self.connected = self._pending == 0
        return self.connected

    def status(self, what=None):
        if what == "rssi":
            if not self.connected:
                raise OSError("not connected")
            return self.rssi
        return 1010 if self.connected else 1001

    def drop(self):
        self.connected = False
        self._pending = 0


def install(modules: dict | None = None, reset_cause: int = 1, wdt_max_ms=None) -> dict:
    """Put the fake MicroPython modules into sys.modules (or `modules`); returns them."""
    modules = sys.modules if modules is None else modules
    m: dict[str, types.ModuleType] = {}

    machine = types.ModuleType("machine")
    machine.Pin, machine.I2C, machine.SPI, machine.ADC = Pin, I2C, SPI, ADC
    wdt = type("WDT", (WDT,), {"instances": [], "max_ms": wdt_max_ms})
    machine.WDT = wdt
    for k, v in RESET_CODES.items():
        setattr(machine, k, v)
    machine.cause = reset_cause
    machine.reset_cause = lambda: machine.cause
    machine.resets = 0

    def reset():
        machine.resets += 1
        raise SystemExit("machine.reset()")

    machine.reset = reset
    m["machine"] = machine

    network = types.ModuleType("network")
    network.STA_IF, network.AP_IF = 0, 1
    network.host = "mpy"
    network.wlans = []

    def hostname(name=None):
        if name is None:
            return network.host
        network.host = name

    def make_wlan(iface):
        w = WLAN(iface)
        w._net = network
        network.wlans.append(w)
        return w

    network.hostname = hostname
    network.WLAN = make_wlan
    m["network"] = network

    esp32 = types.ModuleType("esp32")
    esp32.mcu_temperature = lambda: 41  # S2/S3/C3; classic ESP32 tests delete it
    esp32.raw_temperature = lambda: 122  # Fahrenheit
    m["esp32"] = esp32

    m["rp2"] = types.ModuleType("rp2")

    ntptime = types.ModuleType("ntptime")
    ntptime.host = "pool.ntp.org"
    ntptime.fail = None
    ntptime.calls = 0

    def settime():
        ntptime.calls += 1
        if ntptime.fail:
            raise ntptime.fail

    ntptime.settime = settime
    m["ntptime"] = ntptime

    onewire = types.ModuleType("onewire")
    onewire.OneWire = lambda pin: types.SimpleNamespace(pin=pin, reset=lambda *a: True)
    m["onewire"] = onewire

    mp = types.ModuleType("micropython")
    mp.const = lambda x: x
    mp.kbd_intr = lambda c: None
    m["micropython"] = mp

    modules.update(m)
    return m
