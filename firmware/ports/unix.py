# The virtual board: the MicroPython unix port standing in for an MCU.
#
# Node dir (env VIBEKIT_NODE_DIR, default ".") holds config.json, board.json and the flash
# image. Flash is a file-backed littlefs (kill -9 = power cut); the serial uplink is the
# process's stdin/stdout, like USB CDC on a board; the console (log) is stderr, like a
# debug UART, so it stays out of the data line. No WiFi, no RTC trusted, no watchdog.
import json
import os
import sys

from ports import StdioStream

NAME = "unix"


class Port:
    name = NAME

    def __init__(self):
        self.node_dir = os.getenv("VIBEKIT_NODE_DIR") or "."
        self.wdt_fed = 0

    def path(self, name):
        return self.node_dir + "/" + name

    def config_path(self):
        return self.path("config.json")

    def load_board(self):
        with open(self.path("board.json")) as f:
            return json.load(f)

    def log(self, msg):
        sys.stderr.write(msg + "\n")

    def fatal(self, msg, code=1):
        self.log("FATAL " + msg)
        sys.exit(code)

    def mount_flash(self, board):
        from ports.unix_flash import mount_flash

        fl = board.get("flash") or {}
        mnt = fl.get("mount", "/flash")
        self.flash = mount_flash(
            self.path(fl.get("image", "flash.img")), mnt, fl.get("block_size", 4096), fl.get("blocks", 256)
        )
        return mnt

    def serial_stream(self):
        return StdioStream()

    def network_up(self, cfg):
        return True  # loopback needs no WiFi

    def network_check(self, cfg):
        return True

    def ntp_time_ms(self, cfg):
        # "host" trusts the host's clock as if NTP had answered; otherwise the bridge's acks sync.
        if cfg.get("ntp_host") == "host":
            import time

            return time.time_ns() // 1000000
        return None

    def reset_cause(self):
        return 1  # machine.PWRON_RESET: every start of the process is a power-up

    def rssi(self):
        return None

    def watchdog(self, timeout_s):
        self.wdt_timeout_s = timeout_s  # no hardware watchdog on the host

    def progress(self):
        self.wdt_fed += 1

    def bus(self, name):
        raise ValueError("the virtual board has no bus %r" % name)

    def mcu_temp_c(self):
        return None
