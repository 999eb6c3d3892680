"""Modbus TCP output: the register map of register_map.py served by pymodbus 3.16.

The server's data lives in pymodbus SimDevice blocks (no deprecated context classes). A thin
read-only front (`_Front`) sits between the request handler and the devices: it refuses every
write with exception 1 (ILLEGAL FUNCTION), answers coil / discrete-input reads with exception 1
(the map has none), unknown unit ids with exception 0x0B (gateway target failed to respond),
and counts requests. Unmapped addresses get exception 2 from the SimDevice blocks.

Updates: the TagStore calls our listener from the ingest thread; the listener only records
the changed node ids and wakes the updater task on the event loop (call_soon_threadsafe, at
most one wake-up in flight). The updater encodes each changed node once per wake-up (however
many records arrived meanwhile) and writes its registers. A refresher task re-encodes every
node once a second so data age, quality and the heartbeat bit move without new data.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from host_bridge.config import BridgeConfig
from host_bridge.outputs import cancel_tasks
from host_bridge.outputs.register_map import DEFAULT_BANDS, RegisterMap
from host_bridge.tags import Quality, TagStore, now_ms

log = logging.getLogger(__name__)

_READ_FCS = (3, 4)


class _LimitedTcpServer(ModbusTcpServer):
    """ModbusTcpServer that closes connection N+1 at once (modbus.max_connections), counted."""

    max_connections = 0  # 0: no limit
    stats: dict[str, int] = {}

    def callback_new_connection(self):
        handler = super().callback_new_connection()
        if self.max_connections and len(self.active_connections) >= self.max_connections:
            self.stats["connections_refused"] = self.stats.get("connections_refused", 0) + 1
            log.warning("Modbus: refusing a connection, %d open (max_connections)", len(self.active_connections))
            made = handler.connection_made

            def refuse(transport, made=made):
                made(transport)
                transport.close()

            handler.connection_made = refuse
        return handler


class _Front:
    """Read-only request front over pymodbus' SimCore (duck-types the server context)."""

    def __init__(self, core, stats: dict[str, int]) -> None:
        self.core = core
        self.stats = stats
        self._units = set(core.device_ids())

    def device_ids(self) -> list[int]:
        return self.core.device_ids()

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1):
        self.stats["requests"] += 1
        if device_id not in self._units:
            self.stats["exceptions"] += 1
            return ExcCodes.GATEWAY_NO_RESPONSE
        if func_code not in _READ_FCS:
            self.stats["exceptions"] += 1
            return ExcCodes.ILLEGAL_FUNCTION
        res = await self.core.async_getValues(device_id, func_code, address, count)
        if isinstance(res, ExcCodes):
            self.stats["exceptions"] += 1
        return res

    async def async_setValues(self, device_id: int, func_code: int, address: int, values):
        self.stats["requests"] += 1
        self.stats["exceptions"] += 1
        self.stats["writes_refused"] += 1
        if device_id not in self._units:
            return ExcCodes.GATEWAY_NO_RESPONSE
        return ExcCodes.ILLEGAL_FUNCTION


class ModbusOutput:
    """Serves the TagStore as Modbus TCP input (and holding) registers."""

    def __init__(
        self,
        cfg: BridgeConfig,
        tags: TagStore,
        *,
        bands: int = DEFAULT_BANDS,
        refresh_s: float = 1.0,
        min_interval_s: float = 0.0,
        node_interval_s: float = 0.05,
    ) -> None:
        self.cfg = cfg
        self.tags = tags
        self.map = RegisterMap.from_config(cfg, bands)
        self.refresh_s = refresh_s
        self.min_interval_s = min_interval_s  # coalescing window between update passes
        # A node's registers change at most this often: the first change after a quiet spell is
        # written at once (no added latency), a burst is merged. SCADA polls at ~1 Hz; encoding
        # 100 updates/s per node would only take time from serving reads.
        self.node_interval_s = node_interval_s
        self.port: int | None = None
        self.stats: dict[str, int] = {
            "requests": 0,
            "exceptions": 0,
            "writes_refused": 0,
            "node_updates": 0,
            "update_passes": 0,
            "refreshes": 0,
            "unmapped_nodes": 0,
            "connections_refused": 0,
        }
        self._server: ModbusTcpServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._plock = threading.Lock()
        self._pending: set[str] = set()
        self._wake_scheduled = False
        self._tasks: list[asyncio.Task] = []
        self._heartbeat = False
        self._images: dict[int, tuple[list[int], int]] = {}  # unit -> (registers, start address)
        self._listening = False
        if cfg.modbus.writable:
            log.warning("modbus.writable: the register map has no writable points; writes stay refused")

    # -- lifecycle -------------------------------------------------------------------------

    def _devices(self) -> list[SimDevice]:
        devices = []
        for unit, blocks in sorted(self.map.units().items()):
            simdata = []
            for b in blocks:
                for off, length, _name in self.map.regions():
                    simdata.append(
                        SimData(address=b.base + off, values=[0] * length, datatype=DataType.REGISTERS)
                    )
            devices.append(SimDevice(id=unit, simdata=simdata))
        return devices

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        m = self.cfg.modbus
        self._server = _LimitedTcpServer(self._devices(), address=(m.host, m.port))
        self._server.max_connections = m.max_connections
        self._server.stats = self.stats
        core = self._server.context
        self._server.context = _Front(core, self.stats)
        self._find_images(core)
        await self._server.serve_forever(background=True)
        sockets = getattr(self._server.transport, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else m.port
        self._listening = True
        self.tags.add_listener(self._on_change)
        await self._update(self.map_node_ids())
        self._tasks = [
            asyncio.create_task(self._updater(), name="modbus-updater"),
            asyncio.create_task(self._refresher(), name="modbus-refresher"),
        ]
        log.info("Modbus TCP on %s:%s (%s layout, %s)", m.host, self.port, self.map.layout, self.map.word_order)

    async def stop(self) -> None:
        self._listening = False
        self.tags.remove_listener(self._on_change)
        await cancel_tasks(self._tasks)
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def map_node_ids(self) -> list[str]:
        return [b.node_id for b in self.map.nodes]

    # -- register image --------------------------------------------------------------------

    def _find_images(self, core) -> None:
        """Direct references to the SimDevice register lists (fast path for updates).

        pymodbus keeps each device's registers in one list (SimRuntime.block["x"]); writing
        slices of it is what its own async_setValues does after its per-register checks.
        If that internal shape is not found, updates use core.async_setValues instead.
        """
        self._core = core
        self._images = {}
        for unit, rt in getattr(core, "devices", {}).items():
            block = getattr(rt, "block", {}).get("x")
            if block and isinstance(block[2], list):
                self._images[unit] = (block[2], block[0])

    async def _write(self, unit: int, address: int, regs: list[int]) -> None:
        img = self._images.get(unit)
        if img is not None:
            registers, start = img
            registers[address - start : address - start + len(regs)] = regs
        else:
            await self._core.async_setValues(unit, 16, address, regs)

    # -- updates ---------------------------------------------------------------------------

    def _on_change(self, changed: set[str]) -> None:
        """TagStore listener: runs in the writer's thread; never blocks, never awaits."""
        if not self._listening:
            return
        with self._plock:
            self._pending |= changed
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # loop closed
            pass

    async def _updater(self) -> None:
        loop = asyncio.get_running_loop()
        next_ok: dict[str, float] = {}  # node -> loop time from which it may be written again
        deferred: set[str] = set()
        while True:
            if deferred:
                wait = max(0.0, min(next_ok[n] for n in deferred) - loop.time())
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            else:
                await self._wake.wait()
            self._wake.clear()
            with self._plock:
                pending, self._pending = self._pending, set()
                self._wake_scheduled = False
            pending |= deferred
            now = loop.time()
            ready = {n for n in pending if next_ok.get(n, 0.0) <= now}
            deferred = pending - ready
            if ready:
                await self._update(ready)
                for n in ready:
                    next_ok[n] = now + self.node_interval_s
            if self.min_interval_s:
                await asyncio.sleep(self.min_interval_s)

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            self._heartbeat = not self._heartbeat
            self.stats["refreshes"] += 1
            await self._update(self.map_node_ids())

    refresh_chunk = 20  # nodes written between two yields to the event loop in one pass

    async def _update(self, node_ids) -> None:
        t = now_ms()
        m = self.map
        regions = m.regions()
        for i, nid in enumerate(node_ids):
            if i and i % self.refresh_chunk == 0:
                # a refresh pass over every node would hold the loop for tens of ms: serve
                # requests and newer records in between (each node's block stays whole)
                await asyncio.sleep(0)
            block = m.block(nid)
            if block is None:
                self.stats["unmapped_nodes"] += 1
                continue
            st = self.tags.get(nid)
            q = self.tags.quality(st, t) if st is not None else Quality.INITIAL
            parts = m.encode(st, q, t, self._heartbeat)
            for (off, _len, _name), regs in zip(regions, parts):
                await self._write(block.unit, block.base + off, regs)
            self.stats["node_updates"] += 1
        self.stats["update_passes"] += 1
        self.last_update_ns = time.perf_counter_ns()
