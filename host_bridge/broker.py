"""An embedded MQTT broker for demos and small sites with none of their own.

Prefers the system's mosquitto; without it (a fresh machine, no root) runs amqtt, a pure-Python
broker from PyPI, in a child process. Always on loopback unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def find_mosquitto() -> str | None:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and Path(cand).exists():
            return cand
    return None


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883, workdir: Path | None = None, prefer: str = "auto"):
        self.host, self.port = host, port
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="vibekit-broker-"))
        self.prefer = prefer
        self.kind = ""
        self.proc: subprocess.Popen | None = None

    def start(self) -> EmbeddedBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        exe = find_mosquitto() if self.prefer in ("auto", "mosquitto") else None
        if self.prefer == "mosquitto" and not exe:
            raise RuntimeError("mosquitto not found (apt-get install mosquitto), or use the amqtt broker")
        log = open(self.workdir / "broker.log", "ab")
        if exe:
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {self.host}\nallow_anonymous true\nlog_dest stdout\n"
                "max_queued_messages 100000\n"
            )
            self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
            self.kind = "mosquitto"
        else:
            cmd = [sys.executable, "-m", "host_bridge.broker", "--host", self.host, "--port", str(self.port)]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            self.kind = "amqtt"
        log.close()
        if not _wait_port(self.host, self.port, 15):
            self.stop()
            raise RuntimeError(f"embedded {self.kind} broker did not start; see {self.workdir / 'broker.log'}")
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


async def _serve_amqtt(host: str, port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    try:
        await asyncio.Event().wait()
    finally:
        await broker.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description="embedded amqtt broker (loopback)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(_serve_amqtt(a.host, a.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
