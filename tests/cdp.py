"""A minimal Chrome DevTools Protocol client over headless Chromium (Debian's `chromium`).

Starts the browser on a private profile with the debugging port on loopback, opens one page
and evaluates JavaScript in it. The caller stops it (context manager); nothing is downloaded.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]


def chromium_exe() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    raise RuntimeError("chromium not found: apt-get install chromium (tools/test.sh does it as root)")


class Browser:
    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self.profile = tempfile.mkdtemp(prefix="vibekit-chromium-")
        self.size = (width, height)
        self.proc: subprocess.Popen | None = None
        self._ws = None
        self._id = 0
        self._lines: list[str] = []

    def __enter__(self) -> Browser:
        env = dict(os.environ, HOME=self.profile)
        self.proc = subprocess.Popen(
            [chromium_exe(), *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True,  # its own process group: renderers and zygotes go with it
        )
        port = self._devtools_port(30)
        page = self._page_target(port, 15)
        self._ws = connect(page, max_size=64 * 1024 * 1024, open_timeout=10)
        return self

    def _devtools_port(self, timeout: float) -> int:
        found: list[int] = []

        def reader() -> None:
            for line in self.proc.stderr:
                self._lines.append(line)
                m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                if m and not found:
                    found.append(int(m.group(1)))

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start:\n" + "".join(self._lines[-20:]))
            time.sleep(0.05)
        return found[0]

    def _page_target(self, port: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.loads(r.read()) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError("chromium has no page target")

    def __exit__(self, *exc) -> None:
        try:
            if self._ws is not None:
                self._ws.close()
        finally:
            if self.proc:
                if self.proc.poll() is None:
                    self.proc.terminate()
                    try:
                        self.proc.wait(10)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(5)
                try:  # helpers it left behind, in the group it leads
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method: str, **params) -> dict:
        self._id += 1
        my = self._id
        self._ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv(timeout=30))
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def eval(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_js(self, expression: str, timeout: float = 15.0, what: str = ""):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.eval(expression)
            except RuntimeError as e:
                last = str(e)
            if last:
                return last
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what or expression}: last {last!r}")

    def screenshot(self, path: str | Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        p = Path(path)
        p.write_bytes(base64.b64decode(data))
        return p
