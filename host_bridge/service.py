"""The bridge daemon: wires inputs, the ingest pipeline, the historian, tags and outputs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from host_bridge.config import BridgeConfig
from host_bridge.ingest import Ingest
from host_bridge.inputs.mqtt import MqttInput
from host_bridge.inputs.serial import SerialInput
from host_bridge.metrics import Counters
from host_bridge.ratelimit import RateLimiter
from host_bridge.store import SqliteHistorian
from host_bridge.tags import TagStore

log = logging.getLogger("host_bridge")


class Bridge:
    def __init__(self, cfg: BridgeConfig) -> None:
        self.cfg = cfg
        self.counters = Counters()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.historian = SqliteHistorian(cfg.data_dir / "historian.sqlite3")
        self.tags = TagStore([n.id for n in cfg.nodes], cfg.stale_after_s, cfg.offline_after_s)
        known = None if cfg.accept_unknown_nodes else {n.id for n in cfg.nodes}
        limiter = RateLimiter(rate=cfg.rate_limit_batches_per_s, burst=cfg.rate_limit_burst)
        self.ingest = Ingest(self.historian, self.tags, self.counters, known, rate_limiter=limiter)
        self.mqtt: MqttInput | None = None
        if cfg.mqtt.enabled:
            self.mqtt = MqttInput(cfg.mqtt, self.ingest, self.tags, self.counters)
        self.serial = [SerialInput(s, self.ingest, self.tags, self.historian, self.counters) for s in cfg.serial]
        self.outputs: list[Any] = []
        self.modbus: Any = None
        self.opcua: Any = None
        self.web: Any = None  # host_bridge.web.WebServer: status page, JSON API, /metrics

    async def start(self) -> None:
        self.ingest.start()
        if self.cfg.modbus.enabled:
            from host_bridge.outputs.modbus import ModbusOutput

            self.modbus = ModbusOutput(self.cfg, self.tags)
            await self.modbus.start()
            self.outputs.append(self.modbus)
        if self.cfg.opcua.enabled:
            from host_bridge.outputs.opcua import OpcUaOutput

            self.opcua = OpcUaOutput(self.cfg, self.tags, self.historian)
            await self.opcua.start()
            self.outputs.append(self.opcua)
        if self.cfg.web.enabled:
            from host_bridge.web import WebServer

            self.web = WebServer(self)
            self.web.start()  # a port in use is logged and counted; it never stops the bridge
        if self.mqtt:
            self.mqtt.start()
        for s in self.serial:
            s.start()
        log.info("bridge started: %d nodes configured", len(self.cfg.nodes))

    async def stop(self) -> None:
        """Graceful: stop taking input, commit and ack what is queued, then close servers."""
        loop = asyncio.get_running_loop()
        for s in self.serial:
            await loop.run_in_executor(None, s.stop)
        await loop.run_in_executor(None, self.ingest.stop)
        if self.mqtt:
            await loop.run_in_executor(None, self.mqtt.stop)
        for o in reversed(self.outputs):
            try:
                await o.stop()
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("stopping %s failed", type(o).__name__)
        self.outputs.clear()
        if self.web:
            await loop.run_in_executor(None, self.web.stop)
        self.historian.close()
        c = self.counters
        log.info(
            "bridge stopped: %d records stored, %d duplicates, %d acks sent",
            c.get("records_stored"), c.get("records_duplicate"), c.get("acks_sent"),
            extra={"records_stored": c.get("records_stored"), "acks_sent": c.get("acks_sent")},
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
