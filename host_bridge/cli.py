"""`host-bridge` command line: run, demo, check-config, status, tags, export, plot.

Commands that read a config report its errors as `config error: <file>: <key>: <reason>` and
exit 2; a bridge that cannot be reached or a bad argument exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import sys
import time
from pathlib import Path

from host_bridge.config import BridgeConfig, ConfigError, load_config
from host_bridge.logsetup import FORMATS, setup_logging

EXIT_CONFIG = 2
EXIT_FAIL = 1


def _load(path: Path) -> BridgeConfig | None:
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return None


async def _run_until_signal(bridge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bridge.run(stop)


def cmd_run(args: argparse.Namespace) -> int:
    from host_bridge.service import Bridge

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    setup_logging(args.log_level, args.log_format)
    asyncio.run(_run_until_signal(Bridge(cfg)))
    return 0


def _check_node_config(path: Path) -> int:
    """A node's config.json, checked by the firmware's own validator on the MicroPython VM."""
    repo = Path(__file__).resolve().parent.parent
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from tools.deploy import DeployError, validate_config

    try:
        data = json.loads(path.read_text())
    except OSError as e:
        print(f"config error: {path}: <file>: cannot read: {e.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as e:
        print(f"config error: {path}: <syntax>: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        validate_config(data)
    except DeployError as e:
        print(f"config error: {path}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: OK (node config for {data.get('node_id')!r})")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.config.suffix == ".json":  # a node's config.json, not the bridge's TOML
        return _check_node_config(args.config)
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    print(f"{args.config}: OK ({len(cfg.nodes)} nodes, {len(cfg.serial)} serial ports)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from host_bridge.demo import run_demo

    setup_logging(args.log_level, args.log_format)
    return run_demo(args)


# ---- status ---------------------------------------------------------------------------------


def _web_target(args: argparse.Namespace) -> tuple[str, str | None, str | None] | None:
    """(url, user, password) from --url or the config's [web] section; env overrides the password."""
    user = args.user
    password = os.environ.get("VIBEKIT_WEB_PASSWORD")
    if args.url:
        url = args.url
    else:
        cfg = _load(args.config)
        if cfg is None:
            return None
        w = cfg.web
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(w.host, w.host)
        url = f"http://{f'[{host}]' if ':' in host else host}:{w.port}"
        user = user or w.username
        password = password if password is not None else w.password
    return url, user, password


def cmd_status(args: argparse.Namespace) -> int:
    from host_bridge.statusview import StatusError, fetch_status, render_status

    target = _web_target(args)
    if target is None:
        return EXIT_CONFIG
    url, user, password = target
    if args.once or args.json:
        try:
            snap = fetch_status(url, user, password)
        except StatusError as e:
            print(f"status: {e}", file=sys.stderr)
            return EXIT_FAIL
        if args.json:
            print(json.dumps(snap, indent=2))
        else:
            print(render_status(snap, url=url, color=sys.stdout.isatty() and not args.no_color))
        return 0
    drains: dict = {}
    tty = sys.stdout.isatty()
    color = tty and not args.no_color
    try:
        while True:
            try:
                text = render_status(fetch_status(url, user, password), drains, url=url, color=color)
            except StatusError as e:
                text = f"status: {e} (retrying every {args.interval:g}s; Ctrl-C quits)"
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")  # redraw in place
            sys.stdout.write(text + "\n" + ("" if tty else "\n"))
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


# ---- tags -----------------------------------------------------------------------------------


# Modbus status registers that have no variable of their own in OPC UA.
MODBUS_ONLY = {"map_version", "status_word", "quality", "data_age", "fault_bits", "source_time_s", "source_time_ms",
               "value_count"}
STATUS_NAMES = {"last_seq", "records", "gaps", "backlog", "drops", "boot", "uptime", "fifo_overruns",
                "link_reconnects", "fw_version", "free_heap", "rssi"}


def opcua_path(node, value: str) -> str:
    """Browse path of a value in the OPC UA address space (plant hierarchy site/area/asset/node).

    Uses the OPC UA output's own `browse_path(node_cfg, value_name)` when it provides one, so
    this list and the server can never disagree.
    """
    try:
        from host_bridge.outputs import opcua as opcua_out  # noqa: PLC0415 - optional, may be absent
    except ImportError:
        opcua_out = None
    fn = getattr(opcua_out, "browse_path", None)
    if fn is not None:
        return fn(node, value)
    base = ["Objects", node.site, node.area, node.asset or node.id, node.id]
    if value in MODBUS_ONLY:
        return ""  # OPC UA carries these as each variable's StatusCode and timestamps
    if value in STATUS_NAMES:
        return "/".join([*base, "Status", value])
    return "/".join([*base, value])


def _reference(address: int, table: int) -> str:
    """Modicon-style 1-based reference: 30001 + address (input), 40001 + address (holding)."""
    return f"{table}{address + 1:04d}" if address < 9999 else f"{table}{address + 1:05d}"


def tag_rows(cfg: BridgeConfig, bands: int = 4, node: str | None = None) -> list[dict]:
    from host_bridge.outputs.register_map import RegisterMap

    rmap = RegisterMap.from_config(cfg, bands)
    rows = []
    for nc in cfg.nodes:
        if node and nc.id != node:
            continue
        block = rmap.block(nc.id)
        for p in rmap.points():
            address = block.base + p.offset
            section = "status" if p.offset < 100 else ("float32" if p.dtype == "f32" else "int16")
            rows.append(
                {
                    "node": nc.id,
                    "name": p.name,
                    "kind": section,
                    "type": p.dtype,
                    "unit": p.unit,
                    "scale": p.scale,
                    "modbus_unit": block.unit,
                    "address": address,
                    "words": p.words,
                    "input_ref": _reference(address, 3),
                    "holding_ref": _reference(address, 4),
                    "opcua_path": "" if section == "int16" else opcua_path(nc, p.name),
                    "description": p.description,
                }
            )
    return rows


def cmd_tags(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    if args.node and cfg.node(args.node) is None:
        print(f"tags: node {args.node!r} is not in {args.config}", file=sys.stderr)
        return EXIT_FAIL
    rows = tag_rows(cfg, args.bands, args.node)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["node"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        print(f"Modbus TCP {cfg.modbus.host}:{cfg.modbus.port}, layout {cfg.modbus.layout}, "
              f"float32 word order {cfg.modbus.word_order}; functions 3 and 4 read the same map. "
              f"OPC UA {cfg.opcua.endpoint}")
        head = (f"{'node':<16} {'name':<16} {'type':<4} {'unit':<5} {'scale':>5} {'uid':>3} {'addr':>5} "
                f"{'ref':>6}  opc ua path")
        print(head)
        print("-" * len(head))
        for r in rows:
            print(f"{r['node']:<16} {r['name']:<16} {r['type']:<4} {r['unit']:<5} {r['scale']:>5} "
                  f"{r['modbus_unit']:>3} {r['address']:>5} {r['input_ref']:>6}  {r['opcua_path']}")
        print(f"{len(rows)} tags; addr = protocol address (0-based), ref = 1-based input register reference "
              "(holding: 4xxxx); int16 values = value x scale")
    return 0


# ---- export and plot ------------------------------------------------------------------------


def _range(args: argparse.Namespace) -> tuple[int, int]:
    from host_bridge.export import parse_time

    now = time.time_ns() // 1_000_000
    start, end = parse_time(args.start, now), parse_time(args.end, now)
    if end < start:
        raise ValueError(f"--from ({args.start}) is after --to ({args.end})")
    return start, end


def cmd_export(args: argparse.Namespace) -> int:
    from host_bridge.export import KINDS, HistorianReader, Progress, export_csv

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    try:
        start, end = _range(args)
        reader = HistorianReader(cfg.data_dir / "historian.sqlite3")
    except (ValueError, FileNotFoundError) as e:
        print(f"export: {e}", file=sys.stderr)
        return EXIT_FAIL
    with reader:
        nodes = args.node or [n.id for n in cfg.nodes] + [n for n in reader.nodes() if cfg.node(n) is None]
        kind = KINDS[args.kind]
        total = sum(reader.count(n, start, end, kind) for n in nodes)
        progress = Progress(total, "export", force=args.progress)
        if args.output and str(args.output) != "-":
            with open(args.output, "w", newline="", encoding="utf-8") as f:
                rows = export_csv(reader, nodes, start, end, f, kind, progress)
            print(f"{args.output}: {rows} records of {len(nodes)} node(s)", file=sys.stderr)
        else:
            export_csv(reader, nodes, start, end, sys.stdout, kind, progress)
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT in pixels, got {text!r}") from None
    if not (200 <= w <= 8000 and 150 <= h <= 8000):
        raise argparse.ArgumentTypeError("size must be 200..8000 x 150..8000 pixels")
    return w, h


def cmd_plot(args: argparse.Namespace) -> int:
    from host_bridge.export import HistorianReader
    from host_bridge.plot import plot_trend, resolve_features

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    nc = cfg.node(args.node)
    try:
        features = resolve_features(args.features)
        start, end = _range(args)
        reader = HistorianReader(cfg.data_dir / "historian.sqlite3")
    except (ValueError, FileNotFoundError) as e:
        print(f"plot: {e}", file=sys.stderr)
        return EXIT_FAIL
    with reader:
        if nc is None and args.node not in reader.nodes():
            print(f"plot: node {args.node!r} is neither in {args.config} nor in the historian", file=sys.stderr)
            return EXIT_FAIL
        records = list(reader.iter_range(args.node, start, end))
    out = args.output or Path(f"{args.node}-trend.png")
    plot_trend(
        records, out, node_id=args.node, features=features,
        iso_limits=nc.iso_limits if nc else (2.8, 4.5, 7.1), size_px=args.size,
        start_ms=start, end_ms=end,
        title=args.title,
    )
    print(f"{out}: {len(records)} records of {args.node}, {args.size[0]}x{args.size[1]} px")
    return 0


# ---- broker-config --------------------------------------------------------------------------


def cmd_broker_config(args: argparse.Namespace) -> int:
    from host_bridge.broker_acl import write_broker_files

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        if not (args.tls_ca and args.tls_cert and args.tls_key):
            print("broker-config: --tls-ca, --tls-cert and --tls-key go together", file=sys.stderr)
            return EXIT_FAIL
        tls = {"ca": str(args.tls_ca.resolve()), "cert": str(args.tls_cert.resolve()), "key": str(args.tls_key.resolve())}
    try:
        paths = write_broker_files(cfg, args.out.resolve(), args.port, args.bind, tls)
    except ValueError as e:
        print(f"broker-config: {e}", file=sys.stderr)
        return EXIT_FAIL
    for k, v in paths.items():
        print(f"{k:<12} {v}")
    print(f"{len(cfg.nodes)} node accounts + the bridge; passwords only in {paths['credentials']} (mode 0600)")
    return 0


# ---- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="host-bridge", description="vibekit host bridge (docs/operations.md)")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the bridge daemon")
    r.add_argument("--config", "-c", required=True, type=Path)
    r.add_argument("--log-level", default="info")
    r.add_argument("--log-format", choices=FORMATS, default="text", help="text, or json: one object per line")
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("check-config", help="validate a bridge config (.toml) or a node config (.json)")
    c.add_argument("config", type=Path)
    c.set_defaults(fn=cmd_check_config)

    bc = sub.add_parser("broker-config", help="mosquitto password file + ACL for the config's nodes (docs/security.md)")
    bc.add_argument("--config", "-c", required=True, type=Path)
    bc.add_argument("--out", "-o", required=True, type=Path, help="output directory (passwords kept on re-runs)")
    bc.add_argument("--port", type=int, default=8883)
    bc.add_argument("--bind", default="0.0.0.0", help="listener address: the OT interface")
    bc.add_argument("--tls-ca", type=Path)
    bc.add_argument("--tls-cert", type=Path, help="the broker's certificate")
    bc.add_argument("--tls-key", type=Path)
    bc.set_defaults(fn=cmd_broker_config)

    s = sub.add_parser("status", help="live view of a running bridge (from its web API)")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", "-c", type=Path, help="find the bridge from the config's [web] section")
    where.add_argument("--url", help="the bridge's web address, e.g. http://127.0.0.1:8780")
    s.add_argument("--user", help="web user (password from VIBEKIT_WEB_PASSWORD or the config)")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    s.add_argument("--once", action="store_true", help="print one table and exit")
    s.add_argument("--json", action="store_true", help="print the raw /api/status answer and exit")
    s.add_argument("--no-color", action="store_true")
    s.set_defaults(fn=cmd_status)

    t = sub.add_parser("tags", help="tag list: Modbus addresses and OPC UA paths")
    t.add_argument("--config", "-c", required=True, type=Path)
    t.add_argument("--node", help="only this node")
    t.add_argument("--bands", type=int, default=4, help="band values per axis the nodes send (default 4)")
    t.add_argument("--format", choices=("table", "csv", "json"), default="table")
    t.set_defaults(fn=cmd_tags)

    time_help = "now, 15m / 2h / 7d back from now, Unix seconds, or ISO 8601 (local time unless an offset)"
    e = sub.add_parser("export", help="historian range to CSV")
    e.add_argument("--config", "-c", required=True, type=Path)
    e.add_argument("--node", action="append", help="node id (repeat for several; default: all)")
    e.add_argument("--from", dest="start", default="24h", help=f"start ({time_help}); default 24h")
    e.add_argument("--to", dest="end", default="now", help="end; default now")
    e.add_argument("--kind", choices=("measurement", "status"), default="measurement")
    e.add_argument("--output", "-o", type=Path, help="CSV file (default: stdout)")
    e.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    e.set_defaults(fn=cmd_export)

    pl = sub.add_parser("plot", help="trend PNG of a node's features with ISO zone bands")
    pl.add_argument("--config", "-c", required=True, type=Path)
    pl.add_argument("--node", required=True)
    pl.add_argument("--from", dest="start", default="24h", help=f"start ({time_help}); default 24h")
    pl.add_argument("--to", dest="end", default="now", help="end; default now")
    pl.add_argument("--features", default="vel_rms,acc_rms,temperature",
                    help="comma list of groups (vel_rms, acc_rms, acc_peak, crest, kurtosis, hf_rms, dom_freq, "
                         "temperature, ...) or single values (kurtosis_x)")
    pl.add_argument("--output", "-o", type=Path, help="PNG file (default: <node>-trend.png)")
    pl.add_argument("--size", type=_size, default=(1200, 800), help="WIDTHxHEIGHT pixels (default 1200x800)")
    pl.add_argument("--title")
    pl.set_defaults(fn=cmd_plot)

    d = sub.add_parser("demo", help="virtual nodes + bridge + Modbus + OPC UA, with a live view")
    d.add_argument("--mqtt-nodes", type=int, default=1)
    d.add_argument("--serial-nodes", type=int, default=1)
    d.add_argument("--modbus-port", type=int, default=5020)
    d.add_argument("--opcua-port", type=int, default=4840)
    d.add_argument("--mqtt-port", type=int, default=0, help="embedded broker port (0: a free one)")
    d.add_argument("--workdir", type=Path, default=Path("var/demo"))
    d.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                   help="embedded broker: the system's mosquitto if present (auto), else amqtt")
    d.add_argument("--duration", type=float, default=0, help="stop after N seconds (0: until Ctrl-C)")
    d.add_argument("--log-level", default="warning")
    d.add_argument("--log-format", choices=FORMATS, default="text")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except BrokenPipeError:  # `host-bridge tags | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
