"""OPC UA output: address space, units, ranges, status codes, timestamps, history, subscriptions."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import pytest
from asyncua import Client, ua

from host_bridge.config import BridgeConfig, NodeConfig, OpcUaConfig
from host_bridge.model import FLAG_ACCEL_FAULT, FLAG_CLOCK_SYNCED, FLAG_HISTORICAL, KIND_STATUS, Record
from host_bridge.outputs.opcua import OpcUaOutput, browse_name, unece_unit_id
from host_bridge.outputs.register_map import value_specs
from host_bridge.tags import TagStore

N_VALUES = 41
SPECS = value_specs()


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class FakeHistorian:
    """The historian interface of host_bridge.store, in memory."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, records):
        self.records.extend(records)

    def history(self, node_id, start_ms, end_ms, kind=0, limit=None):
        def src(r):
            return r.device_time_ms if r.clock_synced else r.received_ms

        out = sorted(
            (r for r in self.records if r.node_id == node_id and r.kind == kind and start_ms <= src(r) <= end_ms),
            key=src,
        )
        return out[:limit] if limit else out


def values(k):
    v = [k + 0.5 * i for i in range(N_VALUES)]
    v[28] = 3.0
    return tuple(v)


NOW = int(time.time())
T0 = NOW - 3600  # history starts an hour ago


@pytest.fixture(scope="module")
def ua_bridge(tmp_path_factory):
    lt = LoopThread()
    nodes = [
        NodeConfig("pump-1", 1, site="plant1", area="hall2", asset="pump-A"),
        NodeConfig("pump-2", 2, site="plant1", area="hall2", asset="pump-A"),
        NodeConfig("fan-1", 3, site="plant1", area="roof", asset="fan"),
        NodeConfig("idle", 4, site="plant1", area="roof", asset="spare"),
        NodeConfig("gone", 5, site="plant1", area="roof", asset="old"),
    ]
    cfg = BridgeConfig(
        data_dir=tmp_path_factory.mktemp("ua"),
        nodes=nodes,
        opcua=OpcUaConfig(endpoint="opc.tcp://127.0.0.1:0", allow_anonymous=True, allow_none_security=True),
    )
    tags = TagStore([n.id for n in nodes], stale_after_s=30, offline_after_s=120)
    hist = FakeHistorian()
    out = OpcUaOutput(cfg, tags, hist, refresh_s=0.2)
    lt.run(out.start())
    live = Record("pump-1", 100, 2, 0, FLAG_CLOCK_SYNCED, NOW, 321, values(1.0), received_ms=NOW * 1000 + 400)
    # backfilled records arrive after the live one, in shuffled order; one unsynced (received time)
    back = [
        Record("pump-1", 50 + i, 2, 0, FLAG_CLOCK_SYNCED | FLAG_HISTORICAL, T0 + 60 * i, 0, values(10.0 + i),
               received_ms=NOW * 1000 + 500)
        for i in (3, 0, 4, 1, 2)
    ]
    hist.add([live] + back)
    tags.apply([live])
    tags.apply(back)  # older: go to history only, never overwrite the live value
    status = Record("pump-1", 101, 2, KIND_STATUS, FLAG_CLOCK_SYNCED, NOW, 0, (12.0, 50000.0, 1, -60.0, 7.0, 2.0,
                                                                             0, 0, 10203.0, 1, 99), received_ms=0)
    hist.add([status])
    tags.apply([status])
    tags.apply([Record("pump-2", 7, 1, 0, FLAG_CLOCK_SYNCED | FLAG_ACCEL_FAULT, NOW, 0,
                       (25.0,) + (float("nan"),) * 27 + (1.0,))])
    tags.apply([Record("fan-1", 3, 1, 0, FLAG_CLOCK_SYNCED, NOW - 40, 0, values(3.0))],
               received_ms=int(time.time() * 1000) - 40_000)
    tags.apply([Record("gone", 9, 1, 0, FLAG_CLOCK_SYNCED, NOW, 0, values(4.0))])
    tags.set_online("gone", False)
    client = Client(out.endpoint)
    lt.run(client.connect())
    idx = lt.run(client.get_namespace_index(cfg.opcua.namespace))
    time.sleep(0.3)
    yield lt, out, client, idx, tags
    lt.run(client.disconnect())
    lt.run(out.stop())
    lt.close()


def test_browse_names():
    assert browse_name("vel_rms_x") == "RMSVelocityX"
    assert browse_name("acc_rms_z") == "RMSAccelerationZ"
    assert browse_name("band3_y") == "Band3RMSAccelerationY"
    assert browse_name("iso_zone") == "ISOZone"
    assert unece_unit_id("C16") == 4403510 and unece_unit_id("K40") == 4928560


def test_address_space_values_units_ranges(ua_bridge):
    lt, out, client, idx, _ = ua_bridge

    async def check():
        objects = client.nodes.objects
        node = await objects.get_child([f"{idx}:plant1", f"{idx}:hall2", f"{idx}:pump-A", f"{idx}:pump-1"])
        assert node.nodeid == ua.NodeId("pump-1", idx)
        exp = values(1.0)
        expected_units = {"degC": "CEL", "g": "K40", "mm/s": "C16", "Hz": "HTZ", "1": "C62"}
        for i, spec in enumerate(SPECS):
            var = await node.get_child(f"{idx}:{browse_name(spec.name)}")
            assert var.nodeid == ua.NodeId(f"pump-1.{spec.name}", idx)
            dv = await var.read_data_value()
            assert dv.StatusCode.is_good()
            assert dv.Value.VariantType == ua.VariantType.Float
            assert dv.Value.Value == pytest.approx(exp[i])
            assert await var.read_type_definition() == ua.NodeId(ua.ObjectIds.AnalogUnitRangeType)
            eu = await (await var.get_child("0:EngineeringUnits")).read_value()
            assert eu.UnitId == unece_unit_id(expected_units[spec.unit]), spec.name
            assert eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
            rng = await (await var.get_child("0:EURange")).read_value()
            assert (rng.Low, rng.High) == (spec.eu_low, spec.eu_high)

    lt.run(check())


def test_source_and_server_timestamps(ua_bridge):
    lt, _, client, idx, _ = ua_bridge
    dv = lt.run(client.get_node(ua.NodeId("pump-1.vel_rms_x", idx)).read_data_value())
    assert dv.SourceTimestamp == dt.datetime.fromtimestamp(NOW + 0.321, dt.UTC)
    assert abs(dv.ServerTimestamp.timestamp() - time.time()) < 60


def test_status_codes(ua_bridge):
    lt, _, client, idx, _ = ua_bridge

    async def code(nid):
        dv = await client.get_node(ua.NodeId(nid, idx)).read_data_value(raise_on_bad_status=False)
        return dv

    dv = lt.run(code("fan-1.vel_rms_x"))
    assert dv.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
    assert dv.Value.Value == pytest.approx(values(3.0)[4])
    assert lt.run(code("gone.vel_rms_x")).StatusCode.value == ua.StatusCodes.BadNoCommunication
    assert lt.run(code("idle.temperature")).StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
    # accelerometer fault: vibration values NaN -> Bad_SensorFailure; temperature still Good
    assert lt.run(code("pump-2.vel_rms_y")).StatusCode.value == ua.StatusCodes.BadSensorFailure
    t = lt.run(code("pump-2.temperature"))
    assert t.StatusCode.is_good() and t.Value.Value == 25.0
    # values the node did not send, under an accelerometer fault
    assert lt.run(code("pump-2.band0_x")).StatusCode.value == ua.StatusCodes.BadSensorFailure


def test_node_status_variables(ua_bridge):
    lt, _, client, idx, _ = ua_bridge

    async def read(name, node="pump-1"):
        return await client.get_node(ua.NodeId(f"{node}.Status.{name}", idx)).read_data_value(raise_on_bad_status=False)

    assert lt.run(read("LastSeq")).Value.Value == 101
    assert lt.run(read("Backlog")).Value.Value == 7
    assert lt.run(read("Drops")).Value.Value == 2
    assert lt.run(read("FwVersion")).Value.Value == "1.2.3"
    assert lt.run(read("Online")).Value.Value is True
    assert lt.run(read("Quality")).Value.Value == "Good"
    assert lt.run(read("Online", "gone")).Value.Value is False
    assert lt.run(read("Quality", "fan-1")).Value.Value == "Stale"
    assert lt.run(read("Backlog", "idle")).StatusCode.value == ua.StatusCodes.BadWaitingForInitialData


def test_history_read_backfilled_in_source_order(ua_bridge):
    lt, out, client, idx, tags = ua_bridge
    node = client.get_node(ua.NodeId("pump-1.vel_rms_x", idx))
    start = dt.datetime.fromtimestamp(T0 - 1, dt.UTC)
    end = dt.datetime.fromtimestamp(NOW + 1, dt.UTC)
    res = lt.run(node.read_raw_history(start, end))
    srcs = [d.SourceTimestamp for d in res]
    assert srcs == sorted(srcs) and len(res) == 6
    assert [d.Value.Value for d in res] == pytest.approx([values(10.0 + i)[4] for i in range(5)] + [values(1.0)[4]])
    assert srcs[0] == dt.datetime.fromtimestamp(T0, dt.UTC)
    # the live value was not overwritten by the older backfill
    assert tags.value("pump-1", "vel_rms_x") == pytest.approx(values(1.0)[4])
    # limited, and reverse order when only the end is given
    assert len(lt.run(node.read_raw_history(start, end, numvalues=2))) == 2
    rev = lt.run(node.read_raw_history(None, end, numvalues=3))
    assert [d.SourceTimestamp for d in rev] == sorted((d.SourceTimestamp for d in rev), reverse=True)
    # status-report history
    bl = lt.run(client.get_node(ua.NodeId("pump-1.Status.Backlog", idx)).read_raw_history(start, end))
    assert [d.Value.Value for d in bl] == [7]


def test_subscription_gets_update_from_ingest_thread(ua_bridge):
    lt, _, client, idx, tags = ua_bridge
    got: list = []

    class Handler:
        def datachange_notification(self, node, val, data):
            got.append((val, data.monitored_item.Value.SourceTimestamp))

    async def subscribe():
        sub = await client.create_subscription(20, Handler())
        await sub.subscribe_data_change(client.get_node(ua.NodeId("pump-2.temperature", idx)))
        return sub

    sub = lt.run(subscribe())
    try:
        time.sleep(0.2)
        ts = int(time.time()) + 5
        th = threading.Thread(target=tags.apply, args=([Record("pump-2", 8, 1, 0, FLAG_CLOCK_SYNCED, ts, 0,
                                                               (31.5,) + (0.0,) * 28)],))
        th.start()
        th.join()
        deadline = time.monotonic() + 3
        while not any(v == 31.5 for v, _ in got) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(v == 31.5 and s == dt.datetime.fromtimestamp(ts, dt.UTC) for v, s in got), got
    finally:
        lt.run(sub.delete())


def test_unsubscribed_values_are_read_from_node_state_and_follow_subscriptions(tmp_path):
    """Value variables nobody subscribes to get no DataValue per record (lazy_values); a Read
    still returns the newest value, status code and timestamps, and a variable switches to
    eager writes while it has a monitored item and back when it is deleted."""
    lt = LoopThread()
    cfg = BridgeConfig(
        data_dir=tmp_path, nodes=[NodeConfig("m1", 1)],
        opcua=OpcUaConfig(endpoint="opc.tcp://127.0.0.1:0", allow_anonymous=True, allow_none_security=True),
    )
    tags = TagStore(["m1"], stale_after_s=30, offline_after_s=120)
    out = OpcUaOutput(cfg, tags, FakeHistorian(), refresh_s=0.2)
    assert out.lazy_values
    lt.run(out.start())
    client = Client(out.endpoint)
    lt.run(client.connect())
    idx = lt.run(client.get_namespace_index(cfg.opcua.namespace))
    vx, temp = (client.get_node(ua.NodeId(f"m1.{n}", idx)) for n in ("vel_rms_x", "temperature"))
    i_vx, i_t = (next(i for i, s in enumerate(SPECS) if s.name == n) for n in ("vel_rms_x", "temperature"))

    def apply(seq, k):
        writes = out.stats["value_writes"]
        tags.apply([Record("m1", seq, 1, 0, FLAG_CLOCK_SYNCED, NOW + seq, 0, values(k))])
        deadline = time.monotonic() + 3
        while (lt.run(read(temp)).Value.Value != values(k)[i_t]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return out.stats["value_writes"] - writes

    async def read(node):
        return await node.read_data_value(raise_on_bad_status=False)

    got: list = []

    class Handler:
        def datachange_notification(self, node, val, data):
            got.append((val, data.monitored_item.Value.SourceTimestamp))

    try:
        assert lt.run(read(vx)).StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
        writes = apply(1, 1.0)
        assert writes < 41  # status variables only: eagerly, every one of the 41 values is written too
        dv = lt.run(read(vx))
        assert dv.StatusCode.is_good() and dv.Value.Value == pytest.approx(values(1.0)[i_vx])
        assert dv.SourceTimestamp == dt.datetime.fromtimestamp(NOW + 1, dt.UTC)

        async def subscribe():
            sub = await client.create_subscription(20, Handler())
            handle = await sub.subscribe_data_change(vx)
            return sub, handle

        sub, handle = lt.run(subscribe())
        time.sleep(0.2)
        writes = apply(2, 2.0)
        assert writes < 41  # the watched value and status variables, not all 41 values
        deadline = time.monotonic() + 3
        while not any(v == pytest.approx(values(2.0)[i_vx]) for v, _ in got) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (pytest.approx(values(2.0)[i_vx]), dt.datetime.fromtimestamp(NOW + 2, dt.UTC)) in got, got
        t = lt.run(read(temp))  # unsubscribed neighbour: same record, same source time
        assert t.Value.Value == pytest.approx(values(2.0)[i_t]) and t.SourceTimestamp == dt.datetime.fromtimestamp(
            NOW + 2, dt.UTC)

        lt.run(sub.unsubscribe(handle))
        lt.run(sub.delete())
        apply(3, 3.0)
        apply(4, 4.0)  # the first record after the unsubscribe turns the variable lazy again
        assert lt.run(read(vx)).Value.Value == pytest.approx(values(4.0)[i_vx])
        tags.set_online("m1", False)
        deadline = time.monotonic() + 3
        while lt.run(read(vx)).StatusCode.value != ua.StatusCodes.BadNoCommunication and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lt.run(read(vx)).StatusCode.value == ua.StatusCodes.BadNoCommunication
        assert lt.run(read(temp)).StatusCode.value == ua.StatusCodes.BadNoCommunication
    finally:
        lt.run(client.disconnect())
        lt.run(out.stop())
        lt.close()
