"""The status page in a real browser (headless Chromium over CDP): it loads, shows every node,
draws a trend per node with the zone bands, and updates when a value changes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.cdp import Browser
from tests.opsdata import feed, measurement, severity_ramp, status, web_bridge

ROOT = Path(__file__).resolve().parents[1]
NODES = [
    {"id": "pump-1", "site": "plant1", "area": "hall2", "asset": "P-101", "iso_limits": [1.4, 2.8, 4.5]},
    {"id": "fan-2", "site": "plant1", "area": "hall2", "asset": "F-201"},
    {"id": "conveyor-3", "site": "plant1", "area": "hall3", "asset": "C-301"},
]

ROW_TEXT = "Array.from(document.querySelectorAll('#nodes tbody tr')).map(r => r.innerText).join('\\n')"


def test_status_page_in_headless_chromium(tmp_path):
    t = time.time()
    with web_bridge(tmp_path, NODES) as (bridge, url), Browser() as browser:
        feed(bridge, severity_ramp("pump-1", 120, t, limits=(1.4, 2.8, 4.5)))
        feed(bridge, [status("pump-1", 121, t, backlog=42, drops=3)])
        feed(bridge, [measurement("fan-2", s, t - 30 + s, vel=1.234, temp=36.6) for s in range(1, 4)])
        # conveyor-3 never reports: it must still be listed, waiting for data

        browser.goto(url + "/?refresh=0.3")
        rows = browser.wait_js(f"document.querySelectorAll('#nodes tbody tr').length === 3 && {ROW_TEXT}",
                               what="three node rows")
        for n in NODES:
            assert n["id"] in rows and n["asset"] in rows
        assert "initial" in rows  # conveyor-3
        pump = browser.eval("document.getElementById('node-pump-1').innerText")
        assert "42" in pump and "good" in pump  # backlog from the node's status report
        assert browser.eval("document.querySelector('#node-pump-1 .zone').textContent") == "D"
        assert "1.234" in browser.eval("document.getElementById('node-fan-2').innerText")

        # one trend per node with data; the pump's has four zone bands and three axis lines
        browser.wait_js("document.querySelectorAll('#trend-pump-1 svg path').length === 3", what="pump trend")
        assert browser.eval("document.querySelectorAll('#trend-pump-1 svg rect.band').length") == 4
        assert browser.wait_js("!!document.getElementById('trend-fan-2')", what="fan trend")

        # a new value arrives: the page shows it without a reload
        feed(bridge, [measurement("fan-2", 4, time.time(), vel=9.876, temp=37.0, zone=4)])
        browser.wait_js("document.getElementById('node-fan-2').innerText.includes('9.876')", 10,
                        what="the new fan-2 value on the page")
        assert browser.eval("document.querySelector('#node-fan-2 .zone').textContent") == "D"
        assert browser.eval("document.getElementById('conn').textContent") == ""

        if os.environ.get("VIBEKIT_DOC_IMAGES"):  # regenerate the README picture
            browser.wait_js("document.querySelectorAll('#trends svg path').length >= 6", what="trends")
            browser.screenshot(ROOT / "docs" / "img" / "web-status.png")

    # the bridge is gone: the page would say so, but the browser is closed too; nothing leaks
    assert bridge.web._httpd is None
