"""`host-bridge status` in a real terminal: tmux runs it, capture-pane reads the screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.netutil import wait_for
from tests.opsdata import feed, measurement, status, web_bridge

ROOT = Path(__file__).resolve().parents[1]
HOST_BRIDGE = [sys.executable, "-m", "host_bridge.cli"]


class Tmux:
    """A private tmux server (its own socket), killed at the end."""

    def __init__(self, width: int = 150, height: int = 30) -> None:
        exe = shutil.which("tmux")
        if not exe:
            pytest.fail("tmux not found: apt-get install tmux (tools/test.sh does it as root)")
        self.exe = exe
        self.sock = f"vibekit-test-{uuid.uuid4().hex[:8]}"
        self.size = (width, height)

    def run(self, *args: str) -> str:
        return subprocess.run([self.exe, "-L", self.sock, *args], check=True, capture_output=True, text=True,
                              timeout=10).stdout

    def start(self, command: list[str]) -> None:
        env = {"TERM": "xterm-256color"}
        cmd = " ".join(f"'{c}'" for c in command)
        self.run("-f", "/dev/null", "new-session", "-d", "-x", str(self.size[0]), "-y", str(self.size[1]),
                 "-e", f"PYTHONPATH={ROOT}", "-e", f"TERM={env['TERM']}", cmd)
        self.run("set-option", "-g", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-J")

    def kill(self) -> None:
        subprocess.run([self.exe, "-L", self.sock, "kill-server"], capture_output=True, timeout=10)


def test_status_live_view_under_tmux(tmp_path):
    t = time.time()
    nodes = [{"id": "pump-1", "asset": "P-101", "iso_limits": [1.4, 2.8, 4.5]}, {"id": "fan-2"}, {"id": "idle-3"}]
    with web_bridge(tmp_path, nodes) as (bridge, url):
        feed(bridge, [measurement("pump-1", s, t - 5 + s, vel=3.3, temp=41.5, zone=3) for s in (1, 2, 3)])
        feed(bridge, [status("pump-1", 4, t, backlog=120, drops=7)])
        feed(bridge, [measurement("fan-2", 1, t, vel=0.9, zone=1)])
        tmux = Tmux()
        try:
            tmux.start([*HOST_BRIDGE, "status", "--url", url, "--interval", "0.3"])
            screen = wait_for(lambda: (s := tmux.screen()) and "idle-3" in s and s, 20, what="the live view")
            lines = {ln.split()[0]: ln for ln in screen.splitlines() if ln.split() and ln.split()[0] in
                     ("pump-1", "fan-2", "idle-3")}
            assert set(lines) == {"pump-1", "fan-2", "idle-3"}, screen
            pump = lines["pump-1"].split()
            # node online quality age seq zone v_rms temp backlog drops gaps drain
            assert pump[1:3] == ["yes", "good"] and pump[4:6] == ["4", "C"], lines["pump-1"]
            assert pump[6] == "3.30" and pump[7] == "41.5" and pump[8:10] == ["120", "7"], lines["pump-1"]
            assert "[" in lines["pump-1"]  # backlog drain bar
            assert lines["idle-3"].split()[1:3] == ["?", "initial"]
            assert "3 nodes, 2 online" in screen

            # the node's backlog drains and a new window arrives: the view follows in place
            feed(bridge, [status("pump-1", 5, t + 1, backlog=30, drops=7)])
            feed(bridge, [measurement("pump-1", 6, t + 2, vel=5.0, temp=42.0, zone=4)])

            def updated():
                s = tmux.screen()
                row = next((ln for ln in s.splitlines() if ln.startswith("pump-1")), "")
                return row if " D " in row and " 30 " in row else None

            row = wait_for(updated, 10, what="the updated pump-1 row")
            assert "5.00" in row and "[" in row and "#" in row  # drained part of the bar
            assert tmux.screen().count("pump-1") == 1  # redrawn, not scrolled
            if os.environ.get("VIBEKIT_DOC_IMAGES"):
                (tmp_path / "status.txt").write_text(tmux.screen())
                from tests.termshot import render_terminal

                render_terminal(tmux.screen(), ROOT / "docs" / "img" / "status-live.png")
        finally:
            tmux.kill()


def test_status_when_bridge_is_unreachable_keeps_trying(tmp_path):
    from tests.netutil import free_port

    tmux = Tmux(120, 10)
    try:
        tmux.start([*HOST_BRIDGE, "status", "--url", f"http://127.0.0.1:{free_port()}", "--interval", "0.3"])
        screen = wait_for(lambda: (s := tmux.screen()) and "unreachable" in s and s, 15, what="the error line")
        assert "retrying" in screen
    finally:
        tmux.kill()
