# The virtual board: the MicroPython unix port standing in for an MCU.
#
# Node dir (env VIBEKIT_NODE_DIR, default ".") holds config.json, board.json and the flash
# image. Flash is a file-backed littlefs (kill -9 = power cut); the serial uplink is the
# process's stdin/stdout, like USB CDC on a board; the console (log) is stderr, like a
# debug UART, so it stays out of the data line. No WiFi, no RTC trusted, no watchdog.
import json
import os
import sys


class Port:
    name = "unix"

    def __init__(self):
        nd = os.getenv("VIBEKIT_NODE_DIR") or "."
        if nd[0] != "/":
            nd = os.getcwd() + "/" + nd
        self.node_dir = nd
        self.wdt_fed = 0
        # Run from the code's directory, found through "" on sys.path, as a board runs from
        # its flash root: the modules imported from here on are "vibenode/node.mpy" instead
        # of their long host paths (a module's path is interned: ~45 bytes each for the
        # node's whole life). Not for a ROMFS image (/rom), which is on sys.path already.
        code = __file__.rsplit("/", 2)[0]  # <code>/ports/unix.mpy
        if code in sys.path and "" in sys.path and code != "/rom":
            os.chdir(code)
            sys.path.remove(code)

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
        import micropython

        from ports.stdio import StdioStream

        s = StdioStream()
        # StdioStream turns the REPL's Ctrl-C off (kbd_intr(-1)): on a board 0x03 in an ack
        # would raise KeyboardInterrupt. On unix it also sets SIGINT back to SIG_DFL: a stop
        # would kill the process like a power cut (RAM stage lost, seqs burnt at the next
        # boot). Here Ctrl-C is only ever the signal (the pty is raw: a 0x03 byte is data), so
        # the handler goes back on: SIGINT -> KeyboardInterrupt -> journal closed (main.py).
        micropython.kbd_intr(3)
        return s

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

    def heap_probe(self, node):
        """With VIBEKIT_HEAP_PROBE=N (windows), log the heap every N windows to the console:
        `heap windows=W live=L peak=P window_alloc=A total=T`. live: the most allocated right
        after a collection (before a window); peak: the most allocated seen at a window or
        service boundary, garbage included (nothing collects in between unless the heap
        runs out); window_alloc: the most one window (capture + features + record) allocated.
        A debug probe of the virtual board: it adds one gc.collect() before each window."""
        every = int(os.getenv("VIBEKIT_HEAP_PROBE") or 0)
        if every <= 0:
            return
        import gc

        st = [0, 0, 0, 0]  # windows, live, peak, window_alloc
        total = gc.mem_alloc() + gc.mem_free()
        window = node.window
        service = node.service
        log = self.log

        def probed_window():
            gc.collect()
            a0 = gc.mem_alloc()
            r = window()
            a1 = gc.mem_alloc()
            st[0] += 1
            if a0 > st[1]:
                st[1] = a0
            if a1 > st[2]:
                st[2] = a1
            if a1 - a0 > st[3]:
                st[3] = a1 - a0
            return r

        def probed_service(deadline_ms):
            a = gc.mem_alloc()
            if a > st[2]:
                st[2] = a
            service(deadline_ms)
            a = gc.mem_alloc()
            if a > st[2]:
                st[2] = a
            if st[0] % every == 0:
                log("heap windows=%d live=%d peak=%d window_alloc=%d total=%d" % (st[0], st[1], st[2], st[3], total))

        node.window = probed_window
        node.service = probed_service


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
# (heap_probe: main.py calls it before the drop)
_BOOT_ONLY = (("Port", "__init__", "path", "config_path", "load_board", "mount_flash", "serial_stream", "network_up",
               "ntp_time_ms", "watchdog", "heap_probe", "bus"),)
