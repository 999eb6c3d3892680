"""Run the bridge in-process (its own asyncio loop in a thread) for integration tests."""

from __future__ import annotations

import asyncio
import threading

from host_bridge.config import BridgeConfig, parse_config
from host_bridge.service import Bridge


def make_config(
    tmp_path, nodes, mqtt_port=None, serial=(), modbus_port=None, opcua_port=None, web_port=None, **bridge
) -> BridgeConfig:
    data: dict = {
        "bridge": {"data_dir": str(tmp_path / "bridge"), **bridge},
        "mqtt": {"enabled": mqtt_port is not None, "port": mqtt_port or 1883, "client_id": f"bridge-{tmp_path.name}"},
        "modbus": {"enabled": modbus_port is not None, "port": modbus_port or 0},
        "opcua": {
            "enabled": opcua_port is not None,
            "endpoint": f"opc.tcp://127.0.0.1:{opcua_port or 4840}",
            "allow_anonymous": True,
            "allow_none_security": True,
        },
        "web": {"enabled": web_port is not None, "port": web_port or 0},
        "nodes": [n if isinstance(n, dict) else {"id": n} for n in nodes],
        "serial": [s if isinstance(s, dict) else {"port": s} for s in serial],
    }
    return parse_config(data, "test")


class BridgeThread:
    """Start/stop a Bridge on a private event loop in a background thread."""

    def __init__(self, cfg: BridgeConfig) -> None:
        self.cfg = cfg
        self.bridge = Bridge(cfg)
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def go():
            self._stop = asyncio.Event()
            try:
                await self.bridge.start()
            except BaseException as e:
                self._error = e
                self._started.set()
                raise
            self._started.set()
            await self._stop.wait()
            await self.bridge.stop()

        try:
            self.loop.run_until_complete(go())
        except BaseException:  # noqa: BLE001 - reported by start()
            pass

    def __enter__(self) -> Bridge:
        self._thread.start()
        self._started.wait(60)
        if self._error:
            raise self._error
        return self.bridge

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
