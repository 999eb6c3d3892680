# CircuitPython port (e.g. Pico W under CircuitPython 9): board, busio, wifi, socketpool,
# microcontroller, usb_cdc. The only file of the firmware that imports them.
#
# CircuitPython lacks a few MicroPython APIs the portable core uses: time.ticks_* and
# time.sleep_ms, os.ilistdir. install_compat() puts stand-ins into sys.modules before the
# core is imported (ports.detect() runs first in main.py), built on adafruit_ticks.
# Tests on CPython call install_compat() themselves (tests/circuitpython_fakes.py).
#
# Setup on the board (docs/links.md): boot.py must make the filesystem writable for the
# journal (storage.remount("/", readonly=False)) and may enable the second USB CDC channel
# for the serial uplink (usb_cdc.enable(console=True, data=True)); libraries with circup:
# adafruit_minimqtt, adafruit_connection_manager, adafruit_ticks.
import json
import sys
import time

NAME = "circuitpython"

# microcontroller.ResetReason names -> MicroPython's machine.reset_cause() codes, so the
# status record means the same on every port: 1 power-on, 2 hard (pin/button), 3 watchdog,
# 4 deep-sleep wake, 5 soft; 6 brown-out (no MicroPython code); 0 unknown.
RESET_CODES = {
    "POWER_ON": 1,
    "RESET_PIN": 2,
    "RESET_BUTTON": 2,
    "WATCHDOG": 3,
    "DEEP_SLEEP_ALARM": 4,
    "SOFTWARE": 5,
    "RESCUE_DEBUG": 5,
    "BROWNOUT": 6,
}

_TICKS_MASK = (1 << 29) - 1  # adafruit_ticks' period


class _Compat:
    """A module stand-in: the real module's attributes plus the missing ones."""

    def __init__(self, real, extra):
        self._real = real
        for k in extra:
            setattr(self, k, extra[k])

    def __getattr__(self, name):
        return getattr(self._real, name)


def _ilistdir(os_mod):
    def ilistdir(path="."):
        for name in os_mod.listdir(path):
            mode = os_mod.stat(path + "/" + name)[0]
            yield (name, mode & 0xF000, 0)

    return ilistdir


def install_compat(modules=None):
    """Give `time` ticks_ms/us/add/diff and sleep_ms, and `os` ilistdir, where they are missing."""
    modules = sys.modules if modules is None else modules
    import os

    if not hasattr(time, "ticks_ms"):
        from adafruit_ticks import ticks_add, ticks_diff, ticks_ms

        def ticks_us():
            return (time.monotonic_ns() // 1000) & _TICKS_MASK

        def sleep_ms(ms):
            time.sleep(ms / 1000)

        def sleep_us(us):
            time.sleep(us / 1000000)

        modules["time"] = _Compat(
            time,
            {"ticks_ms": ticks_ms, "ticks_us": ticks_us, "ticks_add": ticks_add, "ticks_diff": ticks_diff,
             "sleep_ms": sleep_ms, "sleep_us": sleep_us},
        )
    if not hasattr(os, "ilistdir"):
        modules["os"] = _Compat(os, {"ilistdir": _ilistdir(os)})


if sys.implementation.name == "circuitpython":
    install_compat()  # before main.py imports the core (tests on CPython call it themselves)


class UsbCdcStream:
    """usb_cdc.data (or a UART) as the serial uplink's non-blocking stream."""

    def __init__(self, ser):
        self.ser = ser
        ser.timeout = 0

    def wait_readable(self, timeout_ms):
        t0 = time.monotonic()
        while not self.ser.in_waiting:
            if (time.monotonic() - t0) * 1000 >= timeout_ms:
                return False
            time.sleep(0.002)
        return True

    def read_into(self, buf):
        n = self.ser.in_waiting
        if not n:
            return 0
        if n > len(buf):
            n = len(buf)
        return self.ser.readinto(memoryview(buf)[:n]) or 0

    def write_all(self, buf, timeout_ms):
        self.ser.write_timeout = timeout_ms / 1000
        w = self.ser.write(buf)
        return w is not None and w == len(buf)


class Port:
    name = NAME

    def __init__(self, root="/"):
        import microcontroller

        self._mc = microcontroller
        self.root = root.rstrip("/")
        self._cause = self._reset_code()
        self._pool = None
        self._wdt = None
        self.buses = {}
        self._bus_objs = {}
        self.wifi_reconnects = 0

    def path(self, name):
        return self.root + "/" + name

    def config_path(self):
        return self.path("config.json")

    def load_board(self):
        with open(self.path("board.json")) as f:
            board = json.load(f)
        self.buses = board.get("buses", {})
        return board

    def log(self, msg):
        print(msg)

    def fatal(self, msg, code=1):
        print("FATAL", msg)
        if code == 2:  # configuration: a reset will not fix it; stay at the REPL
            sys.exit()
        time.sleep(5)
        self._mc.reset()

    def mount_flash(self, board):
        # CIRCUITPY is read-only to code unless boot.py remounts it: say so, clearly, at boot.
        root = self.root + (board.get("flash") or {}).get("mount", "")
        probe = root + "/.vibekit_rw"
        try:
            with open(probe, "w") as f:
                f.write("1")
            import os

            os.remove(probe)
        except OSError as e:
            raise OSError("filesystem is read-only to code (%r): add boot.py with "
                          "storage.remount('/', readonly=False)" % (e,)) from None
        return root

    def serial_stream(self):
        import usb_cdc

        if usb_cdc.data is None:
            raise OSError("serial uplink needs usb_cdc.enable(console=True, data=True) in boot.py")
        return UsbCdcStream(usb_cdc.data)

    # -- network ---------------------------------------------------------------------------

    def network_up(self, cfg, timeout_s=15):
        import wifi

        w = cfg["wifi"]
        if w is None:
            return False
        r = wifi.radio
        if w.get("hostname"):
            try:
                r.hostname = w["hostname"]
            except (AttributeError, ValueError):
                pass
        if r.connected:
            return True
        try:
            r.connect(w["ssid"], w.get("password", ""), timeout=timeout_s)
        except (ConnectionError, OSError) as e:
            self.log("wifi: %r" % (e,))
            return False
        return bool(r.connected)

    def network_check(self, cfg):
        """Between windows: reconnect WiFi if it dropped (bounded)."""
        import wifi

        if cfg["wifi"] is not None and not wifi.radio.connected:
            self.wifi_reconnects += 1
            return self.network_up(cfg, 5)
        return True

    def socket_pool(self):
        """The pool the MQTT uplink (adafruit_minimqtt) opens its sockets from."""
        if self._pool is None:
            import socketpool
            import wifi

            self._pool = socketpool.SocketPool(wifi.radio)
        return self._pool

    def rssi(self):
        try:
            import wifi

            ap = wifi.radio.ap_info
            return None if ap is None else ap.rssi
        except (ImportError, AttributeError, OSError):
            return None

    def ntp_time_ms(self, cfg):
        host = cfg.get("ntp_host")
        if not host:
            return None
        try:
            import adafruit_ntp

            ntp = adafruit_ntp.NTP(self.socket_pool(), server=host, tz_offset=0)
            return ntp.utc_ns // 1000000
        except Exception as e:  # NTP is optional: the bridge's acks sync too
            self.log("ntp failed: %r" % (e,))
            return None

    # -- health ----------------------------------------------------------------------------

    def _reset_code(self):
        try:
            r = self._mc.cpu.reset_reason
        except AttributeError:
            return 0
        for name, code in RESET_CODES.items():
            if getattr(self._mc.ResetReason, name, None) == r:
                return code
        return 0

    def reset_cause(self):
        return self._cause

    def watchdog(self, timeout_s):
        if timeout_s:
            from watchdog import WatchDogMode

            w = self._mc.watchdog
            w.timeout = timeout_s
            w.mode = WatchDogMode.RESET
            w.feed()
            self._wdt = w

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def progress(self):
        self.feed()  # called by the node once per serviced window: fed only on progress

    def mcu_temp_c(self):
        return self._mc.cpu.temperature

    def bus(self, name):
        # board.json "buses": {"i2c0": {"kind": "i2c", "scl": "GP5", "sda": "GP4", "frequency": 400000},
        # "spi0": {"kind": "spi", "sck": "GP18", "mosi": "GP19", "miso": "GP16", "cs": "GP17"},
        # "cpu_temp": {"kind": "mcu_temp"}}
        if name in self._bus_objs:
            return self._bus_objs[name]
        if name not in self.buses:
            raise ValueError("bus %r: define it in the board file's buses" % name)
        b = self.buses[name]
        kind = b.get("kind")
        if kind == "mcu_temp":
            mc = self._mc
            obj = lambda: mc.cpu.temperature  # noqa: E731 - drivers.mcu_temp takes a callable
        else:
            import board
            import busio

            if kind == "i2c":
                obj = busio.I2C(getattr(board, b["scl"]), getattr(board, b["sda"]), frequency=b.get("frequency", 400000))
            elif kind == "spi":
                import digitalio

                spi = busio.SPI(getattr(board, b["sck"]), MOSI=getattr(board, b["mosi"]), MISO=getattr(board, b["miso"]))
                from drivers.bus import as_device

                cs = digitalio.DigitalInOut(getattr(board, b["cs"]))
                cs.switch_to_output(value=True)
                obj = as_device(spi, cs=cs)  # one chip per SPI bus entry: the register device
            else:
                raise ValueError("bus %r: unknown kind %r" % (name, kind))
        self._bus_objs[name] = obj
        return obj
