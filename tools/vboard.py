"""Virtual board: the MicroPython VM with its REPL on a pty, driven by mpremote like a real board.

A board's USB port stays enumerated while the chip resets; so does this one. The VBoard owns
two pty pairs and relays bytes between them:

    mpremote  <->  port (pty slave, stable path)  <-relay->  console pty  <->  VM stdin/stdout

The VM runs in the node dir (its "flash": deploy with `mpremote connect <port> resume fs cp`),
with the node dir and <node dir>/lib on its path like / and /lib on a board. At every boot it
runs main.py if there is one, then drops into the REPL when main.py ends, as a board does.
Ctrl-C from mpremote reaches main.py as KeyboardInterrupt (the console pty is the VM's
controlling terminal with ISIG on; the REPL itself reads in raw mode).

Resets: when the VM process ends (Ctrl-D, which exits the unix port; sys.exit; a crash) the
board boots again after `reboot_delay_s`. `power_cut()` is kill -9, then power comes back.
The unix port has no soft reset, so mpremote needs `resume` before its commands.

    vb = VBoard(tmp / "board").start()
    subprocess.run(["mpremote", "connect", vb.port, "resume", "exec", "print(1)"])
    vb.power_cut(); vb.stop()

CLI: python -m tools.vboard NODE_DIR [--heap 256K] [--link PATH]: prints the port, runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import select
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `tools` importable
    sys.path.insert(0, str(REPO))

from tools.virtual_node import ensure_mplibs, micropython_exe  # noqa: E402

# Boot: run main.py like a board does; whatever happens, end in the REPL (-i).
_BOOT = (
    "import sys\n"
    "try:\n"
    " f=open('main.py')\n"
    "except OSError:\n"
    " f=None\n"
    "if f:\n"
    " src=f.read()\n"
    " f.close()\n"
    " try:\n"
    "  exec(src,{'__name__':'__main__'})\n"
    " except SystemExit as e:\n"
    "  print('main.py exited:',e)\n"
    " except KeyboardInterrupt:\n"
    "  print('main.py interrupted')\n"
    " except Exception as e:\n"
    "  sys.print_exception(e)\n"
    " del src\n"
    "del f\n"
)


def _set_raw(fd: int, isig: bool = False) -> None:
    tty.setraw(fd)
    if isig:
        a = termios.tcgetattr(fd)
        a[3] |= termios.ISIG
        termios.tcsetattr(fd, termios.TCSANOW, a)


class VBoard:
    def __init__(self, node_dir, heap: str = "256K", reboot_delay_s: float = 0.2, log_path=None,
                 link: str | None = None, extra_path: tuple = ()) -> None:
        self.node_dir = Path(node_dir).resolve()
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.heap = heap
        self.reboot_delay_s = reboot_delay_s
        self.log_path = Path(log_path) if log_path else self.node_dir.parent / f"{self.node_dir.name}.console.log"
        self.link = link
        self.extra_path = tuple(str(p) for p in extra_path)
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.port: str | None = None
        self._host_m = self._host_s = None  # mpremote side
        self._con_m: int | None = None  # VM console master
        self._home = tempfile.mkdtemp(prefix="vboard-home-")  # the REPL writes ~/.micropython.history
        self._lock = threading.RLock()
        self._running = False
        self._powered = False
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> VBoard:
        ensure_mplibs()
        self._host_m, self._host_s = os.openpty()
        _set_raw(self._host_m)
        _set_raw(self._host_s)  # we hold the slave open so the master never sees a hang-up
        os.set_blocking(self._host_m, False)
        self.port = os.ttyname(self._host_s)
        if self.link:
            try:
                os.unlink(self.link)
            except FileNotFoundError:
                pass
            os.symlink(self.port, self.link)
        self._running = True
        self._powered = True
        self._boot()
        self._thread = threading.Thread(target=self._relay, name="vboard-relay", daemon=True)
        self._thread.start()
        return self

    def env(self) -> dict:
        e = dict(os.environ)
        parts = [".frozen", str(self.node_dir), str(self.node_dir / "lib"), *self.extra_path]
        e["MICROPYPATH"] = ":".join(parts)
        e["HOME"] = self._home
        e["VIBEKIT_NODE_DIR"] = str(self.node_dir)
        return e

    def _boot(self) -> None:
        with self._lock:
            m, s = os.openpty()
            _set_raw(s, isig=True)

            def as_console():  # the pty becomes the VM's controlling terminal: Ctrl-C -> SIGINT
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

            log = open(self.log_path, "ab")
            cmd = [micropython_exe(), "-X", f"heapsize={self.heap}", "-i", "-c", _BOOT]
            self.proc = subprocess.Popen(cmd, cwd=str(self.node_dir), env=self.env(), stdin=s, stdout=s,
                                         stderr=log, preexec_fn=as_console, close_fds=True)
            log.close()
            os.close(s)
            if self._con_m is not None:
                os.close(self._con_m)
            self._con_m = m
            self.boots += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def power_cut(self, off_s: float = 0.0) -> None:
        """kill -9 of the VM: a power cut (littlefs keeps what it committed). Power comes back after off_s."""
        with self._lock:
            self._powered = False
            if self.alive():
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(5)
        if off_s:
            time.sleep(off_s)
        with self._lock:
            self._powered = True
            self._boot()

    def reset(self) -> None:
        """Hard reset (the reset button): same as a short power cut."""
        self.power_cut(0.0)

    def wait_booted(self, boots: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.boots < boots or not self.alive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"virtual board did not boot (boots={self.boots})")
            time.sleep(0.05)

    def stop(self) -> None:
        self._running = False
        with self._lock:
            self._powered = False
            if self.alive():
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)
        for fd in (self._con_m, self._host_m, self._host_s):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._con_m = self._host_m = self._host_s = None
        if self.link:
            try:
                os.unlink(self.link)
            except OSError:
                pass

    def __enter__(self) -> VBoard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- the USB cable ----------------------------------------------------------------------

    def _relay(self) -> None:
        dead_since = None
        while self._running:
            with self._lock:
                con = self._con_m
                proc = self.proc
            fds = [self._host_m] + ([con] if con is not None else [])
            try:
                r, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                r = []
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError as e:
                    if e.errno in (errno.EIO, errno.EAGAIN, errno.EBADF):
                        data = b""
                    else:
                        raise
                if not data:
                    if fd == con:  # console hung up: the VM has gone
                        with self._lock:
                            if self._con_m == con:
                                os.close(con)
                                self._con_m = None
                    continue
                out = con if fd == self._host_m else self._host_m
                if out is None:
                    continue  # the board is off or rebooting: bytes are lost, as on a real line
                self._write(out, data)
            # reboot after an exit (Ctrl-D, sys.exit, crash) while power is on
            if proc is not None and proc.poll() is not None and self._powered and self._running:
                if dead_since is None:
                    dead_since = time.monotonic()
                elif time.monotonic() - dead_since >= self.reboot_delay_s:
                    dead_since = None
                    with self._lock:
                        if self.proc is proc and self._powered and self._running:
                            self._boot()
            else:
                dead_since = None

    def _write(self, fd: int, data: bytes) -> None:
        deadline = time.monotonic() + 1.0
        mv = memoryview(data)
        while mv and time.monotonic() < deadline:
            try:
                n = os.write(fd, mv)
                mv = mv[n:]
            except BlockingIOError:
                time.sleep(0.002)  # nobody reading the host side: drop after a second
            except OSError:
                return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Virtual board: the MicroPython VM with its REPL on a pty for mpremote.")
    ap.add_argument("node_dir", type=Path, help="the board's flash: firmware, config.json, board.json go here")
    ap.add_argument("--heap", default="256K")
    ap.add_argument("--link", help="also make this symlink to the port, e.g. /tmp/vboard0")
    args = ap.parse_args(argv)
    vb = VBoard(args.node_dir, heap=args.heap, link=args.link).start()
    print(f"virtual board on {vb.link or vb.port} (node dir {vb.node_dir}, console log {vb.log_path})", flush=True)
    print(f"  mpremote connect {vb.link or vb.port} resume exec 'import os; print(os.listdir())'", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        vb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
