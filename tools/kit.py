"""Field retrofit kit: everything a technician needs to install one board type, offline.

    python -m tools.kit boards/esp32_devkit.json [--out build/kits] [--no-tar]
    python -m tools.kit --all            # one kit per boards/*.json

build/kits/<board>/ (and <board>.tar.gz):
  firmware/             compiled for the board's arch (main.py + .mpy + lib/umqtt), board.json,
                        deploy.json (hashes, git revision): what tools/deploy.py would copy
  board.json            the board file
  config.template.json  node config to fill in (node_id, wifi, broker); validated at build time
  CHECKLIST.md          one page: wiring from the board file, mounting, flashing, commissioning
  install.sh            mpremote copy of firmware/ + config.json, then reset (copy skips unchanged
                        files by hash, mpremote's own check)
  commission.py         PASS/FAIL on the node's first good record (needs the bridge's host_bridge
                        package, i.e. run it on the bridge host)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

from tools import deploy as dep  # noqa: E402

BOARDS = REPO / "boards"
OUT = REPO / "build" / "kits"

TEMPLATE = {
    "node_id": "CHANGE-ME-asset-01",
    "uplink": "mqtt",
    "mqtt": {"host": "192.168.10.2", "port": 1883, "prefix": "vibekit"},
    "window": {"n": 1024, "odr_hz": 3200, "range_g": 16, "interval_s": 10.0},
    "features": {"iso_limits": [2.8, 4.5, 7.1]},
    "status_interval_s": 60.0,
}
WIFI = {"ssid": "OT-WIFI-SSID", "password": "CHANGE-ME"}

MOUNTING = """\
- Mount the accelerometer on the bearing housing, in the load zone, as close to the bearing as
  possible: never on guards, fan covers or thin sheet metal (they resonate).
- Stud mount (M6 into a spot-faced, tapped hole) or a cyanoacrylate/epoxy mounting pad; a magnet
  only for surveys (it lowers the usable frequency range). The mounting face must be flat and clean.
- Note which machine direction each axis points to (x = horizontal radial, y = vertical radial,
  z = axial is usual) on the asset sheet; the bridge reports per axis.
- Temperature sensor: thermal paste or adhesive on the housing, insulated from ambient air.
- Cable: strain relief at the sensor, routed away from VFD motor cables, fixed every 30 cm; the
  board enclosure out of the hot air stream of the motor fan.
"""


def _md_table(rows: list[list[str]], head: list[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _fmt(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _sensors(board: dict) -> list[tuple[str, dict]]:
    raw = board.get("sensors") or {}
    if isinstance(raw, dict):
        return list(raw.items())
    return [(e.get("role") or e.get("kind") or e.get("type") or "?", e) for e in raw if isinstance(e, dict)]


def wiring_section(board: dict) -> str:
    parts = []
    buses = board.get("buses") or board.get("bus") or {}
    if isinstance(buses, list):
        buses = {b.get("name", f"bus{i}"): b for i, b in enumerate(buses)}
    if buses:
        rows = [[name, spec.get("type", spec.get("kind", "")) if isinstance(spec, dict) else "",
                 _fmt({k: v for k, v in spec.items() if k not in ("type", "kind", "name")}) if isinstance(spec, dict)
                 else _fmt(spec)] for name, spec in buses.items()]
        parts.append(_md_table(rows, ["bus", "type", "pins / settings"]))
    rows = []
    for role, s in _sensors(board):
        extra = {k: v for k, v in s.items() if k not in ("driver", "bus", "role", "kind", "type", "params")}
        params = s.get("params") or {}
        rows.append([role, s.get("driver", "?"), s.get("bus", "-"), _fmt({**extra, **params}) or "-"])
    if rows:
        parts.append(_md_table(rows, ["sensor", "driver (chip)", "bus", "address / pins / settings"]))
    pins = board.get("pins")
    if pins:
        parts.append(_md_table([[k, _fmt(v)] for k, v in pins.items()], ["signal", "pin"]))
    for key in ("wiring", "notes"):
        extra = board.get(key)
        if isinstance(extra, dict):
            parts.append(_md_table([[k, _fmt(v)] for k, v in extra.items()], ["part", "connect"]))
        elif extra:
            items = extra if isinstance(extra, list) else [extra]
            parts.append("\n".join(f"- {x}" for x in items))
    parts.append("- Power the sensors from the board's 3V3 pin; common GND; I2C needs 4.7 kOhm pull-ups to 3V3 "
                 "(most breakout boards have them); keep I2C runs under 30 cm, use SPI for longer runs or above "
                 "800 Hz ODR.")
    return "\n\n".join(parts)


def flashing_section(board: dict) -> str:
    port = dep.port_module(board)
    if dep.is_circuitpython(board):
        return ("CircuitPython: put the board in bootloader mode, copy the CircuitPython UF2 for this board, then "
                "copy `firmware/` onto the CIRCUITPY drive (CircuitPython runs `main.py` when there is no `code.py`). See docs/deploy.md.")
    if port == "esp32":
        return ("1. MicroPython for ESP32 (v1.23 or newer: the .mpy files are v6.3): download the .bin for this "
                "board from micropython.org on an internet-connected PC and bring it with the kit.\n"
                "2. `esptool.py --chip auto --port PORT erase_flash`, then "
                "`esptool.py --chip auto --port PORT --baud 460800 write_flash -z 0x1000 FIRMWARE.bin` "
                "(ESP32-S3/C3: offset 0x0). Hold BOOT while pressing EN if it does not connect.")
    if port == "rp2":
        return ("1. MicroPython for the Pico W (v1.23 or newer) as a .uf2 file from micropython.org, brought with "
                "the kit.\n2. Hold BOOTSEL while plugging USB in; the RPI-RP2 drive appears; copy the .uf2 onto it; "
                "the board reboots into MicroPython.")
    return "The virtual board needs no flashing: `python -m tools.vboard NODE_DIR` gives it a port for mpremote."


def node_template(board: dict) -> dict:
    """A config template that fits the board: window and bands inside its ODR's Nyquist."""
    tmpl = json.loads(json.dumps(TEMPLATE))
    acq = board.get("acquisition") or {}
    odr = float(acq.get("odr_hz", 3200))
    nyq = odr / 2
    tmpl["window"]["odr_hz"] = odr if odr != int(odr) else int(odr)
    tmpl["window"]["n"] = int(acq.get("window", 1024))
    accel = dict(_sensors(board)).get("accel") or {}
    rng = accel.get("range_g") or (accel.get("params") or {}).get("range_g")
    if rng:
        tmpl["window"]["range_g"] = rng
    edges = [e for e in (10, 100, 500, 1000, 1600) if e < nyq] + [nyq]
    tmpl["features"]["bands"] = [[a, b] for a, b in zip(edges, edges[1:])][:4]
    tmpl["features"]["vel_band"] = [10.0, min(1000.0, nyq)]
    tmpl["features"]["hf_edge_hz"] = min(1000.0, nyq / 2)
    if dep.port_module(board) == "unix":
        tmpl["mqtt"]["host"] = "127.0.0.1"
    else:
        tmpl["wifi"] = dict(WIFI)
    return tmpl


def checklist(board: dict, kit_name: str, warnings: list[str] = ()) -> str:
    name = board.get("name", kit_name)
    arch = dep.board_arch(board)
    fl = board.get("flash") or {}
    budget = []
    for key in ("flash", "heap", "budget", "budgets"):
        if board.get(key):
            budget.append(f"{key}: {_fmt(board[key])}")
    wifi_note = "" if dep.port_module(board) == "unix" else " and `wifi` (ssid, password)"
    warn = "".join(f"> **WARNING: {w}.** Do not take this kit to site yet.\n\n" for w in warnings)
    return f"""# Install checklist: {name}

{warn}Board `{name}` ({board.get('title', board.get('description', ''))}): MCU {board.get('mcu', '?')},
port `{dep.port_module(board)}`, firmware {f'compiled for `{arch}`' if arch else 'as .py sources'}.
{('Budgets: ' + '; '.join(budget)) if budget else ''}

Tick every box; write the asset, node_id and date on the asset sheet.

## 1. Before you go (office, with internet)
- [ ] Kit unpacked on the laptop; `pip install mpremote` (and `esptool` for ESP32) done.
- [ ] `config.template.json` copied to `config.json`: `node_id` (unique, `A-Z a-z 0-9 _ . -`),
      `mqtt.host` = the bridge/broker address on the OT network{wifi_note}, ISO limits for the
      machine group (`features.iso_limits`).
- [ ] The node_id is in the bridge config (`[[nodes]]` with its Modbus unit id and site/area/asset).

## 2. Wiring (from the board file)

{wiring_section(board)}

## 3. Mounting

{MOUNTING}
## 4. Flash MicroPython (once per board)

{flashing_section(board)}

## 5. Install the node software (offline)
- [ ] `./install.sh PORT` (PORT: `/dev/ttyACM0`, `/dev/ttyUSB0`, `COM5`): copies `firmware/` and
      `config.json` (unchanged files are skipped), then resets the board.
- [ ] From a repository checkout instead: `python -m tools.deploy --board board.json --config config.json --port PORT`.

## 6. Commissioning (on the bridge host)
- [ ] Bridge running: `host-bridge run --config bridge.toml`.
- [ ] `python commission.py NODE_ID --mqtt BROKER:1883 --timeout 120` (or `--historian DATA_DIR`)
      prints **PASS** with the first values. On **FAIL** the reason says what to check: no data
      (power, WiFi, broker address, node_id), sensor fault (wiring, address), clock not synced
      (bridge not acking), bad values (mounting, range).
- [ ] Values read in the SCADA (Modbus unit / OPC UA node of the asset) match the commissioning output.
- [ ] Enclosure closed, cable fixed, asset sheet signed.

Flash image: {_fmt(fl) if fl else 'see the board file'}.
"""


# machine.reset() on a board; the unix port (virtual board) has no machine.reset: exiting reboots it
RESET_ONE_LINE = "import sys, machine; getattr(machine, 'reset', sys.exit)()"


def install_sh(files: list[str]) -> str:
    tops = sorted({p.split("/")[0] for p in files})
    dirs = {p.split("/")[0] for p in files if "/" in p}
    cps = [f"fs cp -r {t} : +" if t in dirs else f"fs cp {t} :{t} +" for t in tops]
    body = " \\\n    ".join(cps)
    return f"""#!/bin/sh
# Install this kit onto a board: ./install.sh PORT [config.json]
# mpremote skips files whose sha256 on the board already matches.
set -e
PORT="${{1:?usage: install.sh PORT [config.json]}}"
CONFIG="${{2:-config.json}}"
[ -f "$CONFIG" ] || {{ echo "no $CONFIG: copy config.template.json to config.json and fill it in" >&2; exit 2; }}
HERE="$(cd "$(dirname "$0")" && pwd)"
MPREMOTE="${{MPREMOTE:-mpremote}}"
CONFIG="$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")"
cd "$HERE/firmware"
$MPREMOTE connect "$PORT" resume \\
    {body} \\
    fs cp "$CONFIG" :config.json + \\
    exec --no-follow "{RESET_ONE_LINE}"
echo "installed; now run: python commission.py NODE_ID --mqtt BROKER:1883"
"""


def build_kit(board_path: Path, out: Path = OUT, tar: bool = True) -> Path:
    board = dep.load_board(board_path)
    name = Path(board_path).stem
    kit = out / name
    if kit.exists():
        shutil.rmtree(kit)
    kit.mkdir(parents=True)
    tmpl = node_template(board)
    dep.validate_config(tmpl)  # the template must be a valid config once the placeholders are filled
    img = dep.build_image(board, None, strict=False)
    for w in img.warnings:
        print(f"kit {name}: WARNING {w}", file=sys.stderr)
    img.write_dir(kit / "firmware")
    (kit / "board.json").write_text(json.dumps(board, indent=1) + "\n")
    (kit / "config.template.json").write_text(json.dumps(tmpl, indent=1) + "\n")
    (kit / "CHECKLIST.md").write_text(checklist(board, name, img.warnings))
    sh = kit / "install.sh"
    sh.write_text(install_sh(sorted(img.files)))
    sh.chmod(0o755)
    shutil.copyfile(REPO / "tools" / "commission.py", kit / "commission.py")
    if tar:
        with tarfile.open(out / f"{name}.tar.gz", "w:gz") as tf:
            tf.add(kit, arcname=name)
    return kit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build a field retrofit kit per board file.")
    ap.add_argument("boards", nargs="*", type=Path, help="board files (default with --all: boards/*.json)")
    ap.add_argument("--all", action="store_true", help="every boards/*.json")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--no-tar", action="store_true")
    args = ap.parse_args(argv)
    paths = list(args.boards) + (sorted(BOARDS.glob("*.json")) if args.all else [])
    if not paths:
        ap.error("name board files or use --all")
    from host_bridge.export import Progress

    rc = 0
    bar = Progress(len(paths), "kits")
    for p in paths:
        bar.update(0)
        try:
            kit = build_kit(p, args.out, not args.no_tar)
            n = sum(1 for f in (kit / "firmware").rglob("*") if f.is_file())
            print(f"kit {kit} ({n} firmware files)" + ("" if args.no_tar else f", {kit}.tar.gz"))
        except dep.DeployError as e:
            print(f"kit {p}: {e}", file=sys.stderr)
            rc = 1
        bar.update()
    bar.finish()
    return rc


if __name__ == "__main__":
    sys.exit(main())
