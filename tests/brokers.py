"""A real mosquitto broker for tests, on a free loopback port, stopped by the test.

Under CI=true a missing mosquitto is an error, never a skip (tools/test.sh installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.netutil import free_port, wait_port


def mosquitto_exe() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and Path(cand).exists():
            return cand
    raise RuntimeError("mosquitto not found: apt-get install mosquitto (tools/test.sh does it as root)")


@dataclass
class Broker:
    port: int
    conf: Path
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([mosquitto_exe(), "-c", str(self.conf)], stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        try:
            wait_port(self.port, timeout=10)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        if pause:
            time.sleep(pause)
        self.start()


def make_broker(workdir: Path, port: int | None = None, extra_conf: str = "", anonymous: bool = True) -> Broker:
    """Write a mosquitto config in workdir (logging to stdout, persistence off) and return it unstarted."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"allow_anonymous {'true' if anonymous else 'false'}\n"
        "log_dest stdout\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
        "max_queued_messages 100000\n"
        + extra_conf
    )
    return Broker(port, conf, workdir / "mosquitto.log")
