"""`host-bridge demo`: the whole kit on one machine, on embedded defaults.

Virtual nodes (the real firmware on the MicroPython VM with a simulated accelerometer), one or
more over MQTT through an embedded broker and one or more over a pty serial link, the bridge,
Modbus TCP and OPC UA on loopback, and a live table until Ctrl-C (or --duration).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import signal
import socket
import sys
from pathlib import Path

from host_bridge.broker import EmbeddedBroker
from host_bridge.config import parse_config
from host_bridge.liveview import render_table
from host_bridge.service import Bridge

REPO = Path(__file__).resolve().parent.parent
G_MM_S2 = 9806.65  # mm/s^2 per g

# Each demo node vibrates like a different machine: (axis, Hz, amplitude g) tones.
DEMO_SIGNALS = [
    {"tones": [[0, 50.0, 0.40], [1, 120.0, 0.20], [2, 25.0, 0.05]], "noise_g": 0.002, "temp_c": 41.0},
    {"tones": [[0, 30.0, 0.10], [1, 60.0, 0.30], [2, 160.0, 0.25]], "noise_g": 0.002, "temp_c": 36.5},
    {"tones": [[0, 80.0, 0.60], [1, 40.0, 0.15], [2, 300.0, 0.30]], "noise_g": 0.004, "temp_c": 55.0},
]


def expected_values(signal: dict) -> dict[str, float]:
    """Analytic acceleration and velocity RMS per axis of a demo signal's tones (no noise)."""
    out: dict[str, float] = {}
    for axis, name in enumerate("xyz"):
        tones = [(f, a) for ax, f, a in signal["tones"] if ax == axis]
        out[f"acc_rms_{name}"] = math.sqrt(sum(a * a / 2 for _, a in tones))
        out[f"vel_rms_{name}"] = math.sqrt(
            sum((a * G_MM_S2 / (2 * math.pi * f)) ** 2 / 2 for f, a in tones if 10 <= f <= 1000)
        )
    out["temperature"] = signal["temp_c"]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _import_virtual_node():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tools.virtual_node import VirtualNode

    return VirtualNode


def run_demo(args: argparse.Namespace) -> int:
    VirtualNode = _import_virtual_node()
    work = args.workdir.resolve()
    # A fresh start each time: node flash and historian belong together (same seq space).
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    mqtt_port = args.mqtt_port or _free_port()
    broker = EmbeddedBroker(port=mqtt_port, workdir=work / "broker", prefer=args.broker).start()
    nodes = []
    links: dict[str, str] = {}
    try:
        specs = [("mqtt", i) for i in range(args.mqtt_nodes)] + [("serial", i) for i in range(args.serial_nodes)]
        for k, (link, i) in enumerate(specs):
            node_id = f"demo-{link}-{i + 1}"
            sig = DEMO_SIGNALS[k % len(DEMO_SIGNALS)]
            vn = VirtualNode(work / "nodes" / node_id, node_id, uplink=link, mqtt_port=mqtt_port, sim=sig)
            vn.start()
            nodes.append(vn)
            links[node_id] = link
        cfg = parse_config(
            {
                "bridge": {"data_dir": str(work / "bridge"), "stale_after_s": 10.0, "offline_after_s": 30.0},
                "mqtt": {
                    "port": mqtt_port,
                    "client_id": "vibekit-demo-bridge",
                    "protocol": 5 if broker.kind == "mosquitto" else 4,  # amqtt speaks 3.1.1 only
                },
                "serial": [{"port": vn.serial_path, "node": vn.node_id} for vn in nodes if vn.uplink == "serial"],
                "modbus": {"port": args.modbus_port},
                "opcua": {
                    "endpoint": f"opc.tcp://127.0.0.1:{args.opcua_port}",
                    "allow_anonymous": True,  # demo only, loopback only
                    "allow_none_security": True,
                },
                "nodes": [
                    {"id": vn.node_id, "unit_id": n + 1, "site": "demo-plant", "area": "hall-1", "asset": f"motor-{n + 1}"}
                    for n, vn in enumerate(nodes)
                ],
            },
            "demo",
        )
        asyncio.run(_serve(cfg, broker, links, args.duration))
    finally:
        for vn in nodes:
            vn.stop()
        broker.stop()
    return 0


async def _serve(cfg, broker: EmbeddedBroker, links: dict[str, str], duration: float) -> None:
    bridge = Bridge(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration:
        loop.call_later(duration, stop.set)
    await bridge.start()
    banner = (
        f"vibekit demo: {len(cfg.nodes)} virtual nodes, broker {broker.kind} on 127.0.0.1:{cfg.mqtt.port}\n"
        f"  Modbus TCP   127.0.0.1:{bridge.modbus.port if bridge.modbus else '-'} "
        f"(unit id = node number; see docs/register-map.md)\n"
        f"  OPC UA       {bridge.opcua.endpoint if bridge.opcua else '-'} (anonymous, demo only)\n"
        f"  status page  {(bridge.web.url if bridge.web else None) or '-'} (also /metrics)\n"
        f"  historian    {cfg.data_dir / 'historian.sqlite3'}\n"
        "Ctrl-C stops.\n"
    )
    print(banner, flush=True)
    tty = sys.stdout.isatty()
    try:
        while not stop.is_set():
            table = render_table(bridge.tags, links)
            if tty:  # redraw in place
                sys.stdout.write("\x1b[H\x1b[2J" + banner + "\n")
            print(table + "\n", flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 2.0)
            except TimeoutError:
                pass
    finally:
        await bridge.stop()
