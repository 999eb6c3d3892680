"""`host-bridge` command line: run, demo, check-config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from host_bridge.config import ConfigError, load_config


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _run_until_signal(bridge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bridge.run(stop)


def cmd_run(args: argparse.Namespace) -> int:
    from host_bridge.service import Bridge

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    _setup_logging(args.log_level)
    asyncio.run(_run_until_signal(Bridge(cfg)))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    print(f"{args.config}: OK ({len(cfg.nodes)} nodes, {len(cfg.serial)} serial ports)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from host_bridge.demo import run_demo

    _setup_logging(args.log_level)
    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="host-bridge", description="vibekit host bridge")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the bridge daemon")
    r.add_argument("--config", "-c", required=True, type=Path)
    r.add_argument("--log-level", default="info")
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("check-config", help="validate a bridge config file")
    c.add_argument("config", type=Path)
    c.set_defaults(fn=cmd_check_config)

    d = sub.add_parser("demo", help="virtual nodes + bridge + Modbus + OPC UA, with a live view")
    d.add_argument("--mqtt-nodes", type=int, default=1)
    d.add_argument("--serial-nodes", type=int, default=1)
    d.add_argument("--modbus-port", type=int, default=5020)
    d.add_argument("--opcua-port", type=int, default=4840)
    d.add_argument("--mqtt-port", type=int, default=0, help="embedded broker port (0: a free one)")
    d.add_argument("--workdir", type=Path, default=Path("var/demo"))
    d.add_argument("--duration", type=float, default=0, help="stop after N seconds (0: until Ctrl-C)")
    d.add_argument("--log-level", default="warning")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
