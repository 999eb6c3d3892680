# Shared code of the MCU ports (esp32, rp2): WiFi station with reconnect, NTP, watchdog,
# flash on the board's own littlefs, the REPL line as the serial uplink. Only real port
# APIs (machine, network, ntptime); the chip-specific bits live in esp32.py / rp2.py.
import json
import sys
import time

import machine

from ports import StdioStream


class BoardPort:
    name = "mcu"

    def __init__(self):
        self._wlan = None
        self._wdt = None
        self._cause = machine.reset_cause()
        self.wifi_reconnects = 0

    def config_path(self):
        return "/config.json"

    def load_board(self):
        with open("/board.json") as f:
            return json.load(f)

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
        wl.connect(w["ssid"], w.get("password", ""))
        t0 = time.ticks_ms()
        while not wl.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
                return False
            self.feed()
            time.sleep_ms(100)
        return True

    def network_check(self, cfg):
        """Between windows: reconnect WiFi if it dropped (bounded)."""
        if self._wlan is not None and not self._wlan.isconnected():
            self.wifi_reconnects += 1
            try:
                self._wlan.disconnect()
            except OSError:
                pass
            return self.network_up(cfg, 5000)
        return True

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
            return time.time() * 1000  # 1970 epoch on MicroPython >= 1.22
        except Exception as e:  # NTP is optional: the bridge's acks sync too
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

    def bus(self, name):
        raise ValueError("bus %r: define it in the board file's buses" % name)
