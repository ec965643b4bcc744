"""End to end: simulated meters (real sockets) -> GatewayServer -> a real asyncua client.

One fleet of three simulated meters and one gateway serve the whole module (starting them
costs a few seconds). Every test that injects a fault restores its meter and waits until
the gateway reports it healthy again, so the tests stay independent of their order.

Meters served:
- ``boiler``  fleet meter 0, explicit Modbus port
- ``hall-3``  fleet meter 1, explicit Modbus port
- ``pv_roof`` fleet meter 2, Modbus port "auto" (taken from status.json)
- ``misread`` fleet meter 1 again, with a register map whose addresses are shifted by two
  registers: every value decodes to something plausible but wrong.
"""

from __future__ import annotations

import asyncio
import gc
import math
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from asyncua import Client, ua

from emu_opcua.clients.modbus import MeterModbusClient
from emu_opcua.gateway.poller import (
    DATALOG_ONLY_CODES, FAST_CODES, SOURCE_HTTP_MISMATCH, SOURCE_HTTP_MODBUS_FAILED, SOURCE_HTTP_MODBUS_OFF,
    SOURCE_MODBUS,
)
from emu_opcua.meter.catalogue import BY_CODE, MEASUREMENTS
from emu_opcua.meter.crosscheck import cross_check
from emu_opcua.meter.meterdata import DECIMALS, MeterData
from emu_opcua.meter.registers import RegisterMap
from emu_opcua.meter.units import UNECE_NAMESPACE_URI
from emu_opcua.opcua import nodeset
from emu_opcua.opcua.config import MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GC_THRESHOLDS, GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

T = TypeVar("T")

NAMES = ("boiler", "hall-3", "pv_roof")
MISREAD = "misread"
SHIFT = 2  # registers: float32 values land on their neighbour's register
STALE_AFTER = 2.0
WAIT = 20.0  # bound for every condition below (they normally hold within a few seconds)

#: Measurements the meter sends in meterdata.json (the rest only come from the datalog).
METERDATA_CODES = tuple(q.code for q in MEASUREMENTS if q.meterdata)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], what: str,
                   timeout: float = WAIT, interval: float = 0.1, show: Callable[[T], Any] = repr) -> T:
    """Call ``probe`` until ``check(result)`` holds; fail naming ``what`` and the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if check(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}; last seen: {show(result)}")
        await asyncio.sleep(interval)


def shifted_register_map() -> str:
    lines = []
    for code, src in RegisterMap.default().entries.items():
        lines += [f"[registers.{code}]", f"address = {src.address + SHIFT}", ""]
    return "\n".join(lines)


class Gateway:
    """What the tests need: the fleet, the gateway, a connected client, node look-ups."""

    def __init__(self, fleet: Fleet, gateway: GatewayServer, client: Client) -> None:
        self.fleet = fleet
        self.gateway = gateway
        self.client = client
        self.model = gateway.model
        assert self.model is not None

    def sim(self, name: str):
        return self.fleet.meters[NAMES.index(name if name != MISREAD else "hall-3")]

    def node(self, node_id: ua.NodeId):
        return self.client.get_node(node_id)

    async def read(self, node_id: ua.NodeId) -> ua.DataValue:
        return await self.node(node_id).read_data_value(raise_on_bad_status=False)

    async def read_many(self, node_ids: list[ua.NodeId]) -> list[ua.DataValue]:
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in node_ids]
        return await self.client.uaclient.read(params)

    async def measurements(self, meter: str, codes=None) -> dict[str, ua.DataValue]:
        quantities = self.model.meters[meter].quantities
        codes = [c for c in (codes or [q.code for q in MEASUREMENTS])]
        values = await self.read_many([quantities[c] for c in codes])
        return dict(zip(codes, values))

    async def diagnostics(self, meter: str) -> dict[str, Any]:
        ids = dict(self.model.meters[meter].diagnostics)
        ids["DeviceHealth"] = self.model.meters[meter].identification["DeviceHealth"]
        values = await self.read_many(list(ids.values()))
        return {name: dv.Value.Value if dv.Value is not None else None for name, dv in zip(ids, values)}


def status_of(values: dict[str, ua.DataValue]) -> dict[str, str]:
    return {code: dv.StatusCode.name for code, dv in values.items()}


def brief(values: dict[str, ua.DataValue]) -> dict[str, tuple[str, Any]]:
    return {code: (dv.StatusCode.name, dv.Value.Value if dv.Value is not None else None)
            for code, dv in values.items()}


def all_status(values: dict[str, ua.DataValue], name: str) -> bool:
    return all(dv.StatusCode.name == name for dv in values.values())


def numbers(values: dict[str, ua.DataValue]) -> dict[str, float]:
    return {code: dv.Value.Value for code, dv in values.items()}


def at_meterdata_resolution(code: str, value: float) -> bool:
    """True when ``value`` has the decimals meterdata.json sends (Modbus floats do not)."""
    scaled = value * 10 ** DECIMALS[BY_CODE[code].group]
    return abs(scaled - round(scaled)) < 1e-6


def assert_agree(served: dict[str, float], meterdata: MeterData, meter: str) -> None:
    result = cross_check(served, meterdata)
    assert result.ok, f"{meter}: served values disagree with the meter's own meterdata:\n{result.summary()}"


async def all_good(gw: Gateway, meter: str) -> dict[str, ua.DataValue]:
    return await wait_for(lambda: gw.measurements(meter), lambda v: all_status(v, "Good"),
                          f"every measurement of {meter} Good", show=status_of)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(tmp_path_factory) -> Gateway:
    tmp = tmp_path_factory.mktemp("gateway")
    map_file = tmp / "shifted-map.toml"
    map_file.write_text(shifted_register_map(), encoding="utf-8")
    async with Fleet(FleetConfig(meters=3, host="127.0.0.1", control_port=None)) as fleet:
        await fleet.wait_warm()
        ports = fleet.ports()
        timing = dict(fast_interval=0.3, extremes_interval=1.0, status_interval=2.0, datalog_interval=1.0,
                      stale_after=STALE_AFTER, http_timeout=2.0, modbus_timeout=1.0)
        meters = [
            MeterConfig(name=name, host=p.host, http_port=p.http_port,
                        modbus_port="auto" if name == "pv_roof" else p.modbus_port, **timing)
            for name, p in zip(NAMES, ports)
        ]
        meters.append(MeterConfig(name=MISREAD, host=ports[1].host, http_port=ports[1].http_port,
                                  modbus_port=ports[1].modbus_port, register_map=map_file, **timing))
        config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp / "pki",
                              application_uri="urn:test:emu-opcua", security_policies=("None",),
                              meters=tuple(meters))
        async with GatewayServer(config) as gateway:
            client = Client(config.endpoint, timeout=10)
            async with client:
                gw = Gateway(fleet, gateway, client)
                for name in NAMES:  # every group has answered once
                    await all_good(gw, name)
                    serial_id = gw.model.identification(name, "SerialNumber")
                    await wait_for(lambda: gw.read(serial_id), lambda dv: dv.StatusCode.is_good(),
                                   f"{name} SerialNumber from status.json")
                yield gw


# --- the address space and the values ---------------------------------------------------------
async def test_browse_measurements_with_units_and_values(gw: Gateway):
    client = gw.client
    idx = await client.get_namespace_index(nodeset.NAMESPACE_URI)
    meters = await client.nodes.objects.get_child(f"{idx}:Meters")
    names = {(await c.read_browse_name()).Name for c in await meters.get_children()}
    assert names == {*NAMES, MISREAD}
    folder = await meters.get_child([f"{idx}:boiler", f"{idx}:Measurements"])
    browsed = {(await c.read_browse_name()).Name: c for c in await folder.get_children()}
    assert {"AcActivePowerTotal", "AcVoltagePeL1", "AcActiveEnergyTotalImportHp", "AcFrequency"} <= set(browsed)
    power = browsed["AcActivePowerTotal"]
    assert power.nodeid == ua.NodeId("boiler.Measurements.AcActivePowerTotal", idx)
    eu = await (await power.get_child("0:EngineeringUnits")).read_value()
    assert (eu.NamespaceUri, eu.UnitId, eu.DisplayName.Text) == (UNECE_NAMESPACE_URI, 4937556, "kW")
    for browse, unit_id in (("AcVoltagePeL1", 5655636), ("AcCurrentL1", 4279632),
                            ("AcActiveEnergyTotalImportHp", 4937544), ("AcFrequency", 4740186)):
        eu = await (await browsed[browse].get_child("0:EngineeringUnits")).read_value()
        assert eu.UnitId == unit_id, browse
    dv = await power.read_data_value()
    assert dv.StatusCode.is_good() and isinstance(dv.Value.Value, float)
    assert dv.SourceTimestamp is not None


async def test_long_lived_objects_are_frozen_once_every_meter_was_polled(gw: Gateway):
    # full garbage collections must not walk the address space and the pollers (GC
    # pauses made polls late at scale); a stopped server unfreezes (test_serve_gc.py)
    await asyncio.wait_for(gw.gateway.settled.wait(), 30)
    assert all(p.stats.polls or p.stats.failures for p in gw.gateway.pollers.values())
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == GC_THRESHOLDS[0]


@pytest.mark.parametrize("meter", NAMES)
async def test_values_are_good_and_agree_with_the_meter(gw: Gateway, meter: str):
    values = await all_good(gw, meter)
    served = numbers(values)
    assert all(isinstance(v, float) and math.isfinite(v) for v in served.values())
    assert_agree({c: served[c] for c in METERDATA_CODES}, gw.sim(meter).meterdata(), meter)
    # Datalog-only quantities (reactive energy, neutral current) come from the newest row.
    sim = gw.sim(meter)
    row = sim.datalog_rows([sim.advance().last_index])[0]
    for code in DATALOG_ONLY_CODES:
        assert served[code] == pytest.approx(row.value(BY_CODE[code]), abs=1e-9), code
        assert values[code].SourceTimestamp == row.timestamp, code


async def test_history_read_without_a_store_is_unsupported_not_an_empty_answer(gw: Gateway):
    # asyncua's own history manager answers Good with no data for a node without history
    params = ua.HistoryReadParameters()
    params.HistoryReadDetails = ua.ReadRawModifiedDetails(StartTime=datetime(2024, 1, 1), EndTime=datetime(2030, 1, 1))
    params.TimestampsToReturn = ua.TimestampsToReturn.Source
    params.ReleaseContinuationPoints = False  # (asyncua's default is True: release, read nothing)
    params.NodesToRead = [ua.HistoryReadValueId(NodeId=gw.model.quantity("boiler", "active_power_total"))]
    (result,) = await gw.client.uaclient.history_read(params)
    assert result.StatusCode.value == ua.StatusCodes.BadHistoryOperationUnsupported
    historizing = await gw.node(gw.model.quantity("boiler", "active_power_total")).read_attribute(
        ua.AttributeIds.Historizing)
    assert historizing.Value.Value is False


async def test_identification_and_configuration(gw: Gateway):
    for meter in NAMES:
        nodes = gw.model.meters[meter]
        sim = gw.sim(meter)
        serial = await gw.read(nodes.identification["SerialNumber"])
        assert serial.StatusCode.is_good() and serial.Value.Value == sim.serial
        port = await gw.read(nodes.configuration["ModbusPort"])
        assert port.StatusCode.is_good() and port.Value.Value == sim.modbus_port
        assert (await gw.read(nodes.configuration["ModbusEnabled"])).Value.Value is True
        diag = await gw.diagnostics(meter)
        assert diag["ConnectionState"] == "Connected" and diag["DataSource"] == SOURCE_MODBUS
        assert diag["DeviceHealth"] == 0 and diag["ConsecutiveFailures"] == 0 and diag["LastError"] == ""
    # "auto": the gateway found pv_roof's Modbus port in status.json
    assert gw.gateway.pollers["pv_roof"].modbus_port == gw.sim("pv_roof").modbus_port


async def test_subscription_sees_the_meter_change(gw: Gateway):
    changes: list[tuple[float, Any]] = []

    class Handler:
        def datachange_notification(self, node, val, data):
            changes.append((val, data.monitored_item.Value.SourceTimestamp))

    sub = await gw.client.create_subscription(100, Handler())
    try:
        await sub.subscribe_data_change(gw.node(gw.model.quantity("hall-3", "active_power_total")))
        await wait_for(lambda: asyncio.sleep(0, len({v for v, _ in changes})), lambda n: n >= 3,
                       "three different AcActivePowerTotal values notified")
    finally:
        await sub.delete()
    assert all(isinstance(v, float) for v, _ in changes)
    stamps = [t for _, t in changes]
    assert stamps == sorted(stamps)


# --- faults -----------------------------------------------------------------------------------
async def test_dead_meter_turns_uncertain_then_bad_others_unaffected(gw: Gateway):
    dead, alive = "boiler", ("hall-3", "pv_roof")
    power_id = gw.model.quantity(dead, "active_power_total")
    last_good = await wait_for(lambda: gw.read(power_id), lambda dv: dv.StatusCode.is_good(), "boiler Good")
    before = {m: (await gw.measurements(m, ["active_power_total"]))["active_power_total"] for m in alive}
    await gw.sim(dead).refuse_connections()
    try:
        seen: list[ua.DataValue] = []

        async def probe():
            dv = await gw.read(power_id)
            seen.append(dv)
            return dv

        uncertain = await wait_for(probe, lambda dv: dv.StatusCode.name == "UncertainLastUsableValue",
                                   "boiler AcActivePowerTotal UncertainLastUsableValue", interval=0.05)
        # the last value is kept, with the time it was measured
        goods = [dv for dv in seen if dv.StatusCode.is_good()] or [last_good]
        assert uncertain.Value.Value == goods[-1].Value.Value
        assert uncertain.SourceTimestamp == goods[-1].SourceTimestamp

        bad = await wait_for(lambda: gw.measurements(dead), lambda v: all_status(v, "BadNoCommunication"),
                             "every boiler measurement BadNoCommunication", show=status_of)
        assert all(dv.Value is None or dv.Value.Value is None for dv in bad.values())
        diag = await wait_for(lambda: gw.diagnostics(dead), lambda d: d["DeviceHealth"] == 1,
                              "boiler DeviceHealth FAILURE")
        assert diag["ConnectionState"] == "Disconnected"
        assert diag["ConsecutiveFailures"] > 0
        assert diag["LastError"] and "MeterUnreachable" in diag["LastError"]

        # the other meters went on: Good, newer source timestamps, values agreeing with them
        for meter in alive:
            now = await wait_for(
                lambda m=meter: gw.measurements(m, ["active_power_total"]),
                lambda v, m=meter: v["active_power_total"].StatusCode.is_good()
                and v["active_power_total"].SourceTimestamp > before[m].SourceTimestamp,
                f"{meter} AcActivePowerTotal updated while boiler is down")
            values = await gw.measurements(meter)
            assert all_status(values, "Good"), status_of(values)
            assert_agree({c: numbers(values)[c] for c in FAST_CODES}, gw.sim(meter).meterdata(), meter)
    finally:
        await gw.sim(dead).clear_faults()
    values = await all_good(gw, dead)
    assert_agree({c: numbers(values)[c] for c in METERDATA_CODES}, gw.sim(dead).meterdata(), dead)
    diag = await wait_for(lambda: gw.diagnostics(dead), lambda d: d["ConnectionState"] == "Connected"
                          and d["DeviceHealth"] == 0, "boiler Connected again")
    assert diag["ConsecutiveFailures"] == 0 and diag["LastError"] == ""


async def test_modbus_disabled_serves_meterdata(gw: Gateway):
    meter = "pv_roof"
    sim = gw.sim(meter)
    await sim.disable_modbus()
    try:
        diag = await wait_for(lambda: gw.diagnostics(meter), lambda d: d["DataSource"] == SOURCE_HTTP_MODBUS_OFF,
                              f"{meter} DataSource {SOURCE_HTTP_MODBUS_OFF!r}")
        enabled = await gw.read(gw.model.configuration(meter, "ModbusEnabled"))
        assert enabled.Value.Value is False
        values = await wait_for(
            lambda: gw.measurements(meter),
            lambda v: all_status(v, "Good") and all(at_meterdata_resolution(c, v[c].Value.Value) for c in FAST_CODES),
            f"{meter} measurements Good and from meterdata.json", show=brief)
        assert_agree({c: numbers(values)[c] for c in METERDATA_CODES}, sim.meterdata(), meter)
        diag = await wait_for(lambda: gw.diagnostics(meter), lambda d: d["ConnectionState"] == "Connected",
                              f"{meter} Connected over HTTP")
        assert diag["DeviceHealth"] == 0
    finally:
        await sim.clear_faults()
    await wait_for(lambda: gw.diagnostics(meter), lambda d: d["DataSource"] == SOURCE_MODBUS,
                   f"{meter} back on Modbus")
    await all_good(gw, meter)


async def test_wrong_register_map_falls_back_to_http(gw: Gateway):
    meter = MISREAD
    sim = gw.sim(meter)
    diag = await wait_for(lambda: gw.diagnostics(meter), lambda d: d["DataSource"] == SOURCE_HTTP_MISMATCH,
                          f"{meter} DataSource {SOURCE_HTTP_MISMATCH!r}")
    assert diag["CrossCheckOk"] is False
    assert "disagrees" in diag["CrossCheck"]
    assert diag["DeviceHealth"] == 4  # MAINTENANCE_REQUIRED: the map needs fixing

    # what the shifted map decodes really is wrong (checked here with our own client)
    shifted = RegisterMap.from_toml(shifted_register_map(), source="shifted")
    async with MeterModbusClient(sim.host, sim.modbus_port, register_map=shifted, timeout=2.0) as modbus:
        wrong = await modbus.read_values(FAST_CODES)
    assert not cross_check(wrong, sim.meterdata()).ok

    values = await wait_for(
        lambda: gw.measurements(meter),
        lambda v: all_status(v, "Good") and all(at_meterdata_resolution(c, v[c].Value.Value) for c in FAST_CODES),
        f"{meter} measurements Good and from meterdata.json", show=brief)
    served = numbers(values)
    assert_agree({c: served[c] for c in METERDATA_CODES}, sim.meterdata(), meter)
    assert not cross_check({c: served[c] for c in FAST_CODES}, _as_meterdata(wrong)).ok
    # the same meter served with the right map is unaffected
    assert (await gw.diagnostics("hall-3"))["DataSource"] == SOURCE_MODBUS


def _as_meterdata(values: dict[str, float]) -> MeterData:
    from datetime import UTC

    return MeterData(datetime.now(UTC), values, None)


async def test_dropped_modbus_connections_are_served_from_meterdata(gw: Gateway):
    meter = "boiler"
    sim = gw.sim(meter)
    power_fail_id = gw.model.quantity(meter, "power_fail_count")
    await wait_for(lambda: gw.read(power_fail_id), lambda dv: dv.StatusCode.is_good(), "PowerFailCount Good")
    await sim.drop_modbus_connections()
    try:
        seen: list[dict[str, str]] = []

        async def probe():
            values = await gw.measurements(meter, list(FAST_CODES))
            seen.append(status_of(values))
            return values

        await wait_for(lambda: gw.diagnostics(meter),
                       lambda d: d["DataSource"] == SOURCE_HTTP_MODBUS_FAILED,
                       f"{meter} DataSource {SOURCE_HTTP_MODBUS_FAILED!r}")
        values = await wait_for(
            probe, lambda v: all(at_meterdata_resolution(c, v[c].Value.Value) for c in FAST_CODES),
            f"{meter} fast values from meterdata.json", interval=0.05, show=brief)
        assert_agree(numbers(values), sim.meterdata(), meter)
        # the fast values were served all along; what only Modbus supplies degrades
        assert all(s == "Good" for statuses in seen for s in statuses.values()), seen
        await wait_for(lambda: gw.read(power_fail_id), lambda dv: dv.StatusCode.name == "BadNoCommunication",
                       "PowerFailCount Bad while Modbus does not answer")
        diag = await gw.diagnostics(meter)
        assert diag["ConnectionState"] == "Connected" and diag["DeviceHealth"] == 0
    finally:
        await sim.clear_faults()
    await wait_for(lambda: gw.diagnostics(meter), lambda d: d["DataSource"] == SOURCE_MODBUS,
                   f"{meter} back on Modbus", timeout=5.0)
    await wait_for(lambda: gw.read(power_fail_id), lambda dv: dv.StatusCode.is_good(), "PowerFailCount Good again")
    await all_good(gw, meter)


FROZEN, REFRESHED = "frozen", "refreshed"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slow_gw(tmp_path_factory) -> Gateway:
    """One simulated meter that refreshes its registers once an hour (every Modbus value
    stands still), served twice: as ``frozen`` and, with refresh_timestamps, as
    ``refreshed``. status.json and the datalog are polled once a minute."""
    tmp = tmp_path_factory.mktemp("slow-gateway")
    async with Fleet(FleetConfig(meters=1, host="127.0.0.1", control_port=None, history_days=0.2,
                                 refresh_interval=3600.0)) as fleet:
        await fleet.wait_warm()
        p = fleet.ports()[0]
        timing = dict(fast_interval=0.3, extremes_interval=1.0, status_interval=60.0, datalog_interval=60.0,
                      stale_after=STALE_AFTER, http_timeout=1.0, modbus_timeout=1.0)
        meters = tuple(MeterConfig(name=name, host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                                   refresh_timestamps=name == REFRESHED, **timing) for name in (FROZEN, REFRESHED))
        config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp / "pki",
                              application_uri="urn:test:emu-opcua", security_policies=("None",), meters=meters)
        async with GatewayServer(config) as gateway, Client(config.endpoint, timeout=10) as client:
            yield Gateway(fleet, gateway, client)


async def test_everything_a_meter_supplies_degrades_with_it(slow_gw: Gateway):
    """status.json and the datalog are polled once a minute here: their values must
    still turn Uncertain when the meter goes away, Bad after stale_after, and Good again
    as soon as the meter is back."""
    gw, model, meter = slow_gw, slow_gw.model, FROZEN
    sim = gw.fleet.meters[0]
    nodes = {
        "SerialNumber": model.identification(meter, "SerialNumber"),
        "ModbusPort": model.configuration(meter, "ModbusPort"),
        "MeterTime": model.diagnostics(meter, "MeterTime"),
        "CrossCheckOk": model.diagnostics(meter, "CrossCheckOk"),
        "PowerFailCount": model.quantity(meter, "power_fail_count"),
        "ReactiveEnergy (datalog)": model.quantity(meter, DATALOG_ONLY_CODES[0]),
        "AcActivePowerTotal": model.quantity(meter, "active_power_total"),
        "AcActiveEnergyT1 (meterdata)": model.quantity(meter, "active_energy_import_t1"),
        "AcActivePowerTotalMax": model.extreme(meter, "active_power_total", "max"),
    }
    names = list(nodes)

    async def statuses() -> dict[str, str]:
        return {name: dv.StatusCode.name for name, dv in zip(names, await gw.read_many(list(nodes.values())))}

    await wait_for(statuses, lambda s: all(v == "Good" for v in s.values()), "everything Good")
    meter_time = (await gw.read(nodes["MeterTime"])).Value.Value
    await sim.refuse_connections()
    try:
        seen: list[dict[str, str]] = []

        async def probe():
            seen.append(await statuses())
            return seen[-1]

        await wait_for(probe, lambda s: all(v == "BadNoCommunication" for v in s.values()),
                       "everything BadNoCommunication", timeout=STALE_AFTER + 6.0, interval=0.1)
        for name in names:  # the last values were kept as last usable first
            assert "UncertainLastUsableValue" in {s[name] for s in seen}, (name, [s[name] for s in seen])
    finally:
        await sim.clear_faults()
    await wait_for(statuses, lambda s: all(v == "Good" for v in s.values()), "everything Good again", timeout=8.0)
    assert (await gw.read(nodes["MeterTime"])).Value.Value > meter_time


async def test_refresh_timestamps_on_every_good_poll(slow_gw: Gateway):
    """Written only on change, a value that stands still keeps its SourceTimestamp; with
    refresh_timestamps every good poll gives it the poll's time."""
    gw = slow_gw
    for meter in (FROZEN, REFRESHED):
        power = gw.model.quantity(meter, "active_power_total")
        first = await wait_for(lambda p=power: gw.read(p), lambda dv: dv.StatusCode.is_good(),
                               f"{meter} AcActivePowerTotal Good")
        await asyncio.sleep(1.0)  # three fast polls
        later = await gw.read(power)
        assert later.StatusCode.is_good() and later.Value.Value == first.Value.Value
        if meter == REFRESHED:
            assert first.SourceTimestamp < later.SourceTimestamp
            assert (later.SourceTimestamp - first.SourceTimestamp).total_seconds() < 2.0
        else:
            assert later.SourceTimestamp == first.SourceTimestamp
