# Shared code of the MCU ports (esp32, rp2): WiFi station with reconnect, NTP, watchdog,
# flash on the board's own littlefs, the REPL line as the serial uplink. Only real port
# APIs (machine, network, ntptime); the chip-specific bits live in esp32.py / rp2.py.
import json
import sys
import time

import machine



class BoardPort:
    name = "mcu"

    def __init__(self):
        self._wlan = None
        self._wdt = None
        self._cause = machine.reset_cause()
        self.wifi_reconnects = 0
        self.ntp_failures = 0
        self._retry_ms = 0  # reconnect backoff: 0 = try at the next check
        self._next_try = 0
        self.buses = {}

    def config_path(self):
        return "/config.json"

    def load_board(self):
        with open("/board.json") as f:
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
        machine.reset()

    def mount_flash(self, board):
        # MicroPython mounts the internal littlefs at / on boot; the journal lives there.
        return (board.get("flash") or {}).get("mount", "")

    def serial_stream(self):
        from ports.stdio import StdioStream

        return StdioStream()

    # -- network ---------------------------------------------------------------------------

    def network_up(self, cfg, timeout_ms=15000):
        import network

        w = cfg["wifi"]
        if w is None:
            return False
        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
            self._wlan.active(True)
            if w.get("hostname"):
                try:
                    network.hostname(w["hostname"])
                except (AttributeError, ValueError, OSError):
                    pass
        wl = self._wlan
        if wl.isconnected():
            return True
        try:
            wl.connect(w["ssid"], w.get("password", ""))
        except OSError as e:  # ESP32 "Wifi Internal Error" etc.: a failed attempt, not a crash
            print("wifi:", repr(e))
            return False
        t0 = time.ticks_ms()
        while not wl.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
                return False
            self.feed()
            time.sleep_ms(100)
        return True

    def network_check(self, cfg):
        """Between windows: reconnect WiFi if it dropped (bounded: one 5 s attempt, then a
        backoff of 1, 2, 4 .. 60 s during which the node keeps measuring)."""
        if self._wlan is None or self._wlan.isconnected():
            self._retry_ms = 0
            return True
        if self._retry_ms and time.ticks_diff(self._next_try, time.ticks_ms()) > 0:
            return False
        self.wifi_reconnects += 1
        try:
            self._wlan.disconnect()
        except OSError:
            pass
        if self.network_up(cfg, 5000):
            self._retry_ms = 0
            return True
        self._retry_ms = min(self._retry_ms * 2 or 1000, 60000)
        self._next_try = time.ticks_add(time.ticks_ms(), self._retry_ms)
        return False

    def rssi(self):
        try:
            if self._wlan is not None and self._wlan.isconnected():
                return self._wlan.status("rssi")
        except (ValueError, OSError):
            pass
        return None

    def ntp_time_ms(self, cfg):
        host = cfg.get("ntp_host")
        if not host:
            return None
        try:
            import ntptime

            ntptime.host = host
            ntptime.settime()  # sets the RTC (UTC)
            t = time.time()
            if time.gmtime(0)[0] == 2000:  # ports still on the 2000 epoch
                t += 946684800
            return t * 1000
        except Exception as e:  # NTP is optional: the bridge's acks sync too
            self.ntp_failures += 1
            print("ntp failed:", repr(e))
            return None

    # -- health ----------------------------------------------------------------------------

    def reset_cause(self):
        return self._cause

    def watchdog(self, timeout_s):
        if timeout_s:
            self._wdt = machine.WDT(timeout=int(timeout_s * 1000))

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def progress(self):
        self.feed()  # called by the node once per serviced window: fed only on progress

    def mcu_temp_c(self):
        raise OSError("no MCU temperature sensor")

    def bus(self, name):
        # board.json "buses": {"spi2": {"kind": "spi", "id": 2, "sck": 18, "mosi": 23, "miso": 19,
        # "cs": 5, "baudrate": 5000000, "polarity": 1, "phase": 1}, "i2c0": {"kind": "i2c",
        # "id": 0, "scl": 22, "sda": 21, "freq": 400000}, "ow0": {"kind": "onewire", "pin": 4},
        # "adc4": {"kind": "adc", "channel": 4}, "cpu_temp": {"kind": "mcu_temp"}}
        if name not in self.buses:
            raise ValueError("bus %r: define it in the board file's buses" % name)
        b = self.buses[name]
        kind = b.get("kind")
        if kind == "i2c":
            return machine.I2C(b["id"], scl=machine.Pin(b["scl"]), sda=machine.Pin(b["sda"]),
                               freq=b.get("freq", 400000))
        if kind == "spi":
            spi = machine.SPI(b["id"], baudrate=b.get("baudrate", 5000000), polarity=b.get("polarity", 1),
                              phase=b.get("phase", 1), sck=machine.Pin(b["sck"]), mosi=machine.Pin(b["mosi"]),
                              miso=machine.Pin(b["miso"]))
            if "cs" not in b:
                return spi
            from drivers.bus import as_device

            cs = machine.Pin(b["cs"], machine.Pin.OUT, value=1)  # chip select idles high
            return as_device(spi, cs=cs)  # one chip per SPI bus entry: the register device
        if kind == "onewire":
            import onewire

            return onewire.OneWire(machine.Pin(b["pin"]))
        if kind == "adc":
            return machine.ADC(b["channel"])
        if kind == "mcu_temp":
            return self.mcu_temp_c
        raise ValueError("bus %r: unknown kind %r" % (name, kind))


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
# (network_up stays: network_check reconnects through it; bus() hands out mcu_temp_c, which stays)
_BOOT_ONLY = (("BoardPort", "__init__", "config_path", "load_board", "mount_flash", "serial_stream", "ntp_time_ms",
               "watchdog", "bus"),)
