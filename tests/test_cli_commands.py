"""`host-bridge` check-config, tags, export and status: each command's output checked."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_bridge.config import WebConfig
from host_bridge.export import f32_text, parse_time
from host_bridge.logsetup import JsonFormatter, setup_logging
from host_bridge.outputs.register_map import FLOAT_OFFSET, INT16_OFFSET, STRIDE, RegisterMap
from host_bridge.store import SqliteHistorian
from tests.netutil import free_port
from tests.opsdata import feed, measurement, status, web_bridge

ROOT = Path(__file__).resolve().parents[1]


def host_bridge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "host_bridge.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, **(env or {})})


CONFIG = """
[bridge]
data_dir = "var"
[modbus]
layout = "{layout}"
stride_unit_id = 9
[web]
port = {web_port}
{web_extra}
[[nodes]]
id = "pump-1"
unit_id = 11
site = "plant1"
area = "hall2"
asset = "P-101"
[[nodes]]
id = "fan-2"
unit_id = 12
site = "plant1"
area = "hall3"
asset = "F-201"
"""


def write_config(tmp_path, layout="unit", web_port=8780, web_extra="") -> Path:
    p = tmp_path / "bridge.toml"
    p.write_text(CONFIG.format(layout=layout, web_port=web_port, web_extra=web_extra))
    return p


# ---- check-config ---------------------------------------------------------------------------


def test_check_config_ok_and_errors_name_file_key_reason(tmp_path):
    cfg = write_config(tmp_path)
    r = host_bridge("check-config", str(cfg))
    assert r.returncode == 0 and r.stdout.strip() == f"{cfg}: OK (2 nodes, 0 serial ports)"
    bad = write_config(tmp_path, web_extra='host = "0.0.0.0"')
    r = host_bridge("check-config", str(bad))
    assert r.returncode == 2
    assert r.stderr.startswith(f"config error: {bad}: web.host: '0.0.0.0' is not loopback")


# ---- tags -----------------------------------------------------------------------------------


def test_tags_unit_layout_table_csv_json(tmp_path):
    cfg = write_config(tmp_path)
    r = host_bridge("tags", "-c", str(cfg), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    rmap = RegisterMap([("pump-1", 11), ("fan-2", 12)])
    assert len(rows) == 2 * len(rmap.points())
    by = {(x["node"], x["name"], x["type"]): x for x in rows}
    v = by[("fan-2", "vel_rms_x", "f32")]
    assert (v["modbus_unit"], v["address"], v["input_ref"], v["holding_ref"]) == (12, FLOAT_OFFSET + 8, "30109", "40109")
    assert v["unit"] == "mm/s" and v["opcua_path"] == "Objects/plant1/hall3/F-201/fan-2/vel_rms_x"
    i16 = by[("fan-2", "vel_rms_x", "i16")]
    assert (i16["address"], i16["scale"], i16["opcua_path"]) == (INT16_OFFSET + 4, 100, "")
    assert by[("pump-1", "backlog", "u32")]["address"] == 10
    assert by[("pump-1", "backlog", "u32")]["opcua_path"].endswith("/pump-1/Status/backlog")

    r = host_bridge("tags", "-c", str(cfg), "--format", "csv", "--node", "pump-1")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert {x["node"] for x in rows} == {"pump-1"} and len(rows) == len(rmap.points())

    r = host_bridge("tags", "-c", str(cfg))
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Modbus TCP 127.0.0.1:5020, layout unit, float32 word order ABCD")
    temp = next(ln for ln in lines if ln.startswith("pump-1") and " temperature " in ln and " f32 " in ln)
    assert temp.split()[5:8] == ["11", "100", "30101"], temp
    assert lines[-1].startswith(f"{len(by)} tags")

    r = host_bridge("tags", "-c", str(cfg), "--node", "nope")
    assert r.returncode == 1 and "'nope' is not in" in r.stderr


def test_tags_stride_layout_offsets(tmp_path):
    r = host_bridge("tags", "-c", str(write_config(tmp_path, layout="stride")), "--format", "json")
    rows = json.loads(r.stdout)
    fan = [x for x in rows if x["node"] == "fan-2" and x["name"] == "vel_rms_x" and x["type"] == "f32"][0]
    assert (fan["modbus_unit"], fan["address"]) == (9, STRIDE + FLOAT_OFFSET + 8)


# ---- export ---------------------------------------------------------------------------------


@pytest.fixture
def historian_site(tmp_path):
    cfg = write_config(tmp_path)
    h = SqliteHistorian(tmp_path / "var" / "historian.sqlite3")
    t0 = 1_717_243_200  # 2024-06-01T12:00:00Z
    recs = [measurement("pump-1", s, t0 + 10 * s, vel=0.1 * s) for s in range(1, 31)]
    recs += [measurement("fan-2", s, t0 + 10 * s + 5, vel=2.0) for s in range(1, 11)]
    recs.append(status("pump-1", 31, t0 + 400, backlog=9))
    nan_rec = measurement("fan-2", 11, t0 + 200)
    nan_rec = dataclasses.replace(nan_rec, values=(math.nan,) + nan_rec.values[1:29])
    recs.append(nan_rec)  # an older node: 29 values, and temperature not available
    h.insert(recs)
    h.close()
    return cfg, t0


def test_export_csv_range_nodes_and_kinds(historian_site, tmp_path):
    cfg, t0 = historian_site
    out = tmp_path / "pump.csv"
    r = host_bridge("export", "-c", str(cfg), "--node", "pump-1", "--from", "2024-06-01T12:01:00+00:00",
                    "--to", "2024-06-01T12:03:00Z", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "13 records of 1 node(s)" in r.stderr  # seq 6..18: t0+60 .. t0+180 inclusive
    rows = list(csv.DictReader(out.open()))
    assert [int(x["seq"]) for x in rows] == list(range(6, 19))
    first = rows[0]
    assert first["source_time"] == "2024-06-01T12:01:00.000Z" and first["clock_synced"] == "1"
    assert first["vel_rms_x"] == "0.6" and first["temperature"] == "40"
    assert first["band3_z"] == "0.01"

    r = host_bridge("export", "-c", str(cfg), "--from", str(t0), "--to", str(t0 + 1000))
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [x["node"] for x in rows].count("pump-1") == 30 and [x["node"] for x in rows].count("fan-2") == 11
    older = [x for x in rows if x["node"] == "fan-2" and x["seq"] == "11"][0]
    assert older["temperature"] == "NaN" and older["band0_x"] == ""  # not sent: empty, never zero

    r = host_bridge("export", "-c", str(cfg), "--kind", "status", "--from", str(t0), "--to", str(t0 + 1000))
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 1 and rows[0]["journal_depth"] == "9"

    r = host_bridge("export", "-c", str(cfg), "--from", str(t0), "--progress", "-o", str(tmp_path / "all.csv"))
    assert "export [##############################] 41/41 100%" in r.stderr


def test_export_errors(tmp_path):
    cfg = write_config(tmp_path)
    r = host_bridge("export", "-c", str(cfg))
    assert r.returncode == 1 and "no historian at" in r.stderr
    (tmp_path / "var").mkdir()
    SqliteHistorian(tmp_path / "var" / "historian.sqlite3").close()
    r = host_bridge("export", "-c", str(cfg), "--from", "now", "--to", "2h")
    assert r.returncode == 1 and "is after" in r.stderr


def test_time_parsing_and_float_text():
    now = 1_700_000_000_000
    assert parse_time("now", now) == now
    assert parse_time("15m", now) == now - 900_000
    assert parse_time("-2h", now) == now - 7_200_000
    assert parse_time("1.5d", now) == now - 129_600_000
    assert parse_time("1700000000", now) == now
    assert parse_time("2023-11-14T22:13:20Z", now) == now
    with pytest.raises(ValueError, match="cannot read time"):
        parse_time("soon", now)
    assert f32_text(0.1) == "0.1" and f32_text(math.nan) == "NaN" and f32_text(123456.0) == "123456"


# ---- status ---------------------------------------------------------------------------------


def test_status_once_and_json(tmp_path):
    t = time.time()
    with web_bridge(tmp_path, ["pump-1", "fan-2"]) as (bridge, url):
        feed(bridge, [measurement("pump-1", 1, t, vel=4.75, temp=41.25, zone=3), status("pump-1", 2, t, 33, 4)])
        r = host_bridge("status", "--url", url, "--once")
        j = host_bridge("status", "--url", url, "--json")
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("pump-1")).split()
    assert row[1:3] == ["yes", "good"] and row[4:10] == ["2", "C", "4.75", "41.2", "33", "4"], row
    fan = next(ln for ln in r.stdout.splitlines() if ln.startswith("fan-2")).split()
    assert fan[1:3] == ["?", "initial"]
    assert "2 nodes, 1 online" in r.stdout
    snap = json.loads(j.stdout)
    assert {n["id"] for n in snap["nodes"]} == {"pump-1", "fan-2"}


def test_status_finds_the_bridge_from_the_config_with_auth(tmp_path):
    port = free_port()
    cfg_path = write_config(tmp_path, web_port=port, web_extra='username = "op"\npassword = "pw"')
    web = WebConfig(enabled=True, host="127.0.0.1", port=port, username="op", password="pw")
    with web_bridge(tmp_path, ["pump-1"], web=web) as (bridge, _url):
        feed(bridge, [measurement("pump-1", 1, time.time())])
        ok = host_bridge("status", "-c", str(cfg_path), "--once")
        denied = host_bridge("status", "-c", str(cfg_path), "--once", env={"VIBEKIT_WEB_PASSWORD": "wrong"})
    assert ok.returncode == 0 and "pump-1" in ok.stdout, ok.stderr
    assert denied.returncode == 1 and "authentication" in denied.stderr
    gone = host_bridge("status", "--url", f"http://127.0.0.1:{port}", "--once")
    assert gone.returncode == 1 and "bridge unreachable" in gone.stderr


# ---- logs -----------------------------------------------------------------------------------


def test_json_log_lines():
    buf = io.StringIO()
    setup_logging("info", "json", stream=buf)
    log = logging.getLogger("host_bridge.test")
    log.info("rejected batch from %s", "mqtt", extra={"node": "pump-1", "reason": "bad_crc"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    log.debug("not shown")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["msg"] == "rejected batch from mqtt" and lines[0]["level"] == "info"
    assert lines[0]["node"] == "pump-1" and lines[0]["reason"] == "bad_crc"
    assert lines[0]["logger"] == "host_bridge.test" and lines[0]["ts"].endswith("Z")
    assert "ValueError: boom" in lines[1]["exc"]
    assert isinstance(JsonFormatter().format(logging.LogRecord("x", 20, "", 0, "m", (), None)), str)
    setup_logging("warning", "text")


def test_protocol_libraries_routine_info_stays_out_of_the_operator_log():
    """asyncua logs every OPC UA publish request at INFO (100 lines/s per client at a 10 ms
    publishing interval): at the default level only the libraries' warnings reach the log."""
    buf = io.StringIO()
    setup_logging("info", "text", stream=buf)
    try:
        sub = logging.getLogger("asyncua.server.subscription_service")
        sub.info("publish request with acks %s", [])
        sub.warning("subscription expired")
        logging.getLogger("pymodbus.logging").info("recv: 0x0 0x1")
        logging.getLogger("host_bridge.ingest").info("connected to broker")
        text = buf.getvalue()
        assert "publish request" not in text and "recv:" not in text
        assert "subscription expired" in text and "connected to broker" in text
        buf.truncate(0)
        buf.seek(0)
        setup_logging("debug", "text", stream=buf)
        sub.info("publish request with acks %s", [])
        assert "publish request" in buf.getvalue()
    finally:
        setup_logging("warning", "text")
