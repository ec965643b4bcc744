"""Subscriptions end to end: deadbands, filter refusals and sampling intervals.

Simulated meters (real sockets) -> GatewayServer -> a real asyncua client. The ramp drives
the simulator's load (``SimulatedMeter.set_load``, what ``/_sim/meters/{n}/events/load``
does) from 2 to 10 kW in 0.5 kW steps and waits until the gateway serves each step.

Meters served (poll intervals chosen apart, so every figure tells its source):
- ``ramp``  fleet meter 0: fast 0.2 s, extremes 1 s, status 3 s
- ``slow``  fleet meter 1: fast 0.4 s, the rest alike
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from asyncua import Client, Server, ua
from asyncua.server.address_space import AddressSpace
from asyncua.server.internal_subscription import InternalSubscription
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.server.subscription_service import SubscriptionService

from emu_opcua.opcua import subscriptions
from emu_opcua.opcua.config import MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.opcua.subscriptions import DataChangeMonitor, Watch
from emu_opcua.simulator.fleet import Fleet, FleetConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

T = TypeVar("T")
WAIT = 20.0
TIMING = dict(extremes_interval=1.0, status_interval=3.0, datalog_interval=3.0, stale_after=10.0,
              http_timeout=2.0, modbus_timeout=1.0)
FAST = {"ramp": 0.2, "slow": 0.4}
RAMP_KW = [2.0 + 0.5 * i for i in range(17)]  # 2.0, 2.5, ... 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], what: str,
                   timeout: float = WAIT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if check(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}; last seen: {result!r}")
        await asyncio.sleep(0.05)


class Env:
    def __init__(self, fleet: Fleet, gateway: GatewayServer, client: Client) -> None:
        self.fleet, self.gateway, self.client = fleet, gateway, client
        self.model = gateway.model

    def power(self, meter: str = "ramp") -> ua.NodeId:
        return self.model.quantity(meter, "active_power_total")

    async def value(self, node_id: ua.NodeId) -> Any:
        dv = await self.client.get_node(node_id).read_data_value(raise_on_bad_status=False)
        return dv.Value.Value if dv.StatusCode.is_good() and dv.Value is not None else None

    async def set_load(self, kw: float) -> float:
        """Force meter 0's total power and wait until the gateway serves it; the value served."""
        self.fleet.meters[0].set_load(kw * 1000.0)
        return await wait_for(lambda: self.value(self.power()),
                              lambda v: v is not None and abs(v - kw) < 1e-3, f"AcActivePowerTotal = {kw} kW")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory) -> Env:
    tmp = tmp_path_factory.mktemp("subscriptions")
    async with Fleet(FleetConfig(meters=2, host="127.0.0.1", control_port=None, refresh_interval=0.1)) as fleet:
        await fleet.wait_warm()
        ports = fleet.ports()
        meters = tuple(MeterConfig(name=name, host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                                   fast_interval=FAST[name], **TIMING)
                       for name, p in zip(("ramp", "slow"), ports))
        config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp / "pki",
                              application_uri="urn:test:emu-opcua", security_policies=("None",), meters=meters)
        async with GatewayServer(config) as gateway:
            async with Client(config.endpoint, timeout=10) as client:
                e = Env(fleet, gateway, client)
                for name in ("ramp", "slow"):
                    await wait_for(lambda: e.value(e.power(name)), lambda v: v is not None, f"{name} polled")
                yield e


def deadband_rule(values: list[float], deadband: float) -> list[float]:
    """What OPC 10000-4 7.22.2 sends for a sequence of samples: the first, then every
    sample further than the deadband from the last one sent."""
    sent = [values[0]]
    for v in values[1:]:
        if abs(v - sent[-1]) > deadband:
            sent.append(v)
    return sent


class Collector:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def datachange_notification(self, node, val, data) -> None:
        self.values.append(val)


async def ramp(env: Env, filter_: ua.DataChangeFilter) -> tuple[list[float], list[float]]:
    """(values served at each step, values notified) for the ramp 2 -> 10 kW."""
    first = await env.set_load(RAMP_KW[0])
    collector = Collector()
    sub = await env.client.create_subscription(20, collector)
    try:
        await sub._subscribe(env.client.get_node(env.power()), ua.AttributeIds.Value, filter_)
        await wait_for(lambda: asyncio.sleep(0, list(collector.values)), lambda v: len(v) >= 1, "first value")
        served = [first]
        for kw in RAMP_KW[1:]:
            served.append(await env.set_load(kw))
            await asyncio.sleep(0.1)  # a publishing cycle or more
        await asyncio.sleep(0.5)
    finally:
        await sub.delete()
        env.fleet.meters[0].set_load(None)
    return served, collector.values


def deadband(kind: ua.DeadbandType, amount: float) -> ua.DataChangeFilter:
    return ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue, DeadbandType=kind, DeadbandValue=amount)


# --- deadbands ------------------------------------------------------------------------------
@pytest.mark.parametrize("filter_", [deadband(ua.DeadbandType.Absolute, 2.0),
                                     # EURange of AcActivePowerTotal: -1000..1000 kW, 0.1 % = 2 kW
                                     deadband(ua.DeadbandType.Percent, 0.1)],
                         ids=["absolute-2kW", "percent-0.1-of-EURange"])
async def test_deadband_ramp_reports_against_the_last_value_sent(env: Env, filter_):
    served, notified = await ramp(env, filter_)
    expected = deadband_rule(served, 2.0)
    assert len(expected) == 4, expected  # 2, 4.5, 7, 9.5: the steps crossing 2 kW from the last sent
    assert notified == pytest.approx(expected, abs=1e-6)
    # the client is left within the deadband of the true value
    assert abs(notified[-1] - served[-1]) <= 2.0


async def test_ramp_without_deadband_reports_every_step(env: Env):
    served, notified = await ramp(env, deadband(ua.DeadbandType.None_, 0.0))
    assert notified == pytest.approx(served, abs=1e-6)


async def test_status_change_is_reported_inside_the_deadband():
    watch = Watch(deadband=5.0)
    good, bad = ua.StatusCode(ua.StatusCodes.Good), ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
    assert watch.passes(ua.DataValue(ua.Variant(1.0), StatusCode=good))
    assert not watch.passes(ua.DataValue(ua.Variant(2.0), StatusCode=good))
    assert watch.passes(ua.DataValue(ua.Variant(2.0), StatusCode=bad))  # status changed
    assert not watch.passes(ua.DataValue(ua.Variant(2.0), StatusCode=bad))
    assert watch.passes(ua.DataValue(ua.Variant(None), StatusCode=ua.StatusCode(ua.StatusCodes.BadNoCommunication)))
    assert watch.passes(ua.DataValue(ua.Variant(float("nan")), StatusCode=good))  # entering NaN: once
    assert not watch.passes(ua.DataValue(ua.Variant(float("nan")), StatusCode=good))
    assert watch.passes(ua.DataValue(ua.Variant(3.0), StatusCode=good))  # leaving NaN


async def create_raw(env: Env, sub, node_id: ua.NodeId, *, filter_=None, sampling: float = 0.0,
                     attribute: ua.AttributeIds = ua.AttributeIds.Value) -> ua.MonitoredItemCreateResult:
    params = ua.CreateMonitoredItemsParameters(
        SubscriptionId=sub.subscription_id, TimestampsToReturn=ua.TimestampsToReturn.Both,
        ItemsToCreate=[ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=attribute),
            MonitoringMode=ua.MonitoringMode.Disabled,  # no notifications for handles the client does not know
            RequestedParameters=ua.MonitoringParameters(ClientHandle=999_000, SamplingInterval=sampling,
                                                        QueueSize=1, Filter=filter_))])
    return (await env.client.uaclient.create_monitored_items(params))[0]


@pytest.mark.parametrize("what, node, filter_, expected", [
    ("percent above 100", "power", deadband(ua.DeadbandType.Percent, 150.0), "BadDeadbandFilterInvalid"),
    ("negative percent", "power", deadband(ua.DeadbandType.Percent, -1.0), "BadDeadbandFilterInvalid"),
    ("negative absolute", "power", deadband(ua.DeadbandType.Absolute, -1.0), "BadDeadbandFilterInvalid"),
    ("unknown deadband type", "power", ua.DataChangeFilter(DeadbandType=7, DeadbandValue=1.0),
     "BadDeadbandFilterInvalid"),
    ("absolute on a string", "connection_state", deadband(ua.DeadbandType.Absolute, 1.0), "BadFilterNotAllowed"),
    ("percent on a string", "connection_state", deadband(ua.DeadbandType.Percent, 1.0), "BadFilterNotAllowed"),
    ("percent without EURange", "poll_duration", deadband(ua.DeadbandType.Percent, 1.0),
     "BadMonitoredItemFilterUnsupported"),
    ("absolute without EURange", "poll_duration", deadband(ua.DeadbandType.Absolute, 1.0), "Good"),
    ("percent with EURange", "power", deadband(ua.DeadbandType.Percent, 1.0), "Good"),
    ("data change filter on DisplayName", "power_display_name", deadband(ua.DeadbandType.None_, 0.0),
     "BadFilterNotAllowed"),
    ("event filter on a value", "power", ua.EventFilter(), "BadFilterNotAllowed"),
])
async def test_invalid_filters_are_refused_with_the_spec_codes(env: Env, what, node, filter_, expected):
    attribute = ua.AttributeIds.Value
    if node == "power_display_name":
        node_id, attribute = env.power(), ua.AttributeIds.DisplayName
    elif node == "power":
        node_id = env.power()
    elif node == "connection_state":
        node_id = env.model.diagnostics("ramp", "ConnectionState")
    else:
        node_id = env.model.diagnostics("ramp", "PollDuration")
    sub = await env.client.create_subscription(100, Collector())
    try:
        result = await create_raw(env, sub, node_id, filter_=filter_, attribute=attribute)
        assert result.StatusCode.name == expected, what
        if expected == "Good":  # and ModifyMonitoredItems checks alike
            params = ua.ModifyMonitoredItemsParameters(
                SubscriptionId=sub.subscription_id, TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToModify=[ua.MonitoredItemModifyRequest(
                    MonitoredItemId=result.MonitoredItemId,
                    RequestedParameters=ua.MonitoringParameters(
                        ClientHandle=999_000, SamplingInterval=0.0, QueueSize=1,
                        Filter=deadband(ua.DeadbandType.Percent, 101.0)))])
            modified = (await env.client.uaclient.modify_monitored_items(params))[0]
            assert modified.StatusCode.name == "BadDeadbandFilterInvalid"
    finally:
        await sub.delete()


# --- sampling intervals ---------------------------------------------------------------------
async def test_minimum_sampling_interval_is_the_poll_groups_interval_per_meter(env: Env):
    m = env.model

    async def msi(node_id: ua.NodeId) -> float:
        return (await env.client.get_node(node_id).read_attribute(ua.AttributeIds.MinimumSamplingInterval)).Value.Value

    for meter, fast in FAST.items():
        assert await msi(m.quantity(meter, "active_power_total")) == 1000 * fast
        assert await msi(m.diagnostics(meter, "PollDuration")) == 1000 * fast
        assert await msi(m.extreme(meter, "active_power_total", "max")) == 1000.0
        assert await msi(m.quantity(meter, "active_energy_import_t1")) == 1000.0  # meterdata.json only
        assert await msi(m.identification(meter, "SerialNumber")) == 3000.0
        assert await msi(m.configuration(meter, "IpAddress")) == 3000.0
        assert await msi(m.quantity(meter, "current_neutral")) == 3000.0  # datalog only
        eu_range = ua.NodeId(m.quantity(meter, "active_power_total").Identifier + ".EURange",
                             m.namespace_index)
        assert await msi(eu_range) == 0.0  # fixed by the model


@pytest.mark.parametrize("meter, node, requested, revised", [
    ("ramp", "power", 10.0, 200.0),  # faster than the poll: revised up to it
    ("ramp", "power", 0.0, 200.0),  # "as fast as possible": the poll interval
    ("ramp", "power", -1.0, 200.0),  # the publishing interval (100 ms), no faster than the poll
    ("ramp", "power", 5000.0, 5000.0),  # slower: honoured
    ("slow", "power", 10.0, 400.0),
    ("ramp", "extreme", 100.0, 1000.0),
    ("ramp", "serial", 100.0, 3000.0),
])
async def test_revised_sampling_interval_is_no_faster_than_the_poll(env: Env, meter, node, requested, revised):
    node_id = {"power": env.power(meter), "extreme": env.model.extreme(meter, "active_power_total", "max"),
               "serial": env.model.identification(meter, "SerialNumber")}[node]
    sub = await env.client.create_subscription(100, Collector())
    try:
        result = await create_raw(env, sub, node_id, sampling=requested)
        assert result.StatusCode.is_good()
        assert result.RevisedSamplingInterval == revised
    finally:
        await sub.delete()


async def test_slower_sampling_interval_is_honoured(env: Env):
    """The load profile changes the power at every poll (0.2 s): an item sampled every
    1 s gets at most one notification a second."""
    fast, slow = Collector(), Collector()
    sub_fast = await env.client.create_subscription(20, fast)
    sub_slow = await env.client.create_subscription(20, slow)
    try:
        await sub_fast.subscribe_data_change(env.client.get_node(env.power()), sampling_interval=0)
        await sub_slow.subscribe_data_change(env.client.get_node(env.power()), sampling_interval=1000)
        await asyncio.sleep(3.0)
    finally:
        await sub_fast.delete()
        await sub_slow.delete()
    assert len(fast.values) >= 8, fast.values  # the values do change at every poll
    assert 2 <= len(slow.values) <= 5, slow.values  # the first value, then one a second


# --- what we rely on in asyncua ---------------------------------------------------------------
async def test_asyncua_internals_we_rely_on():
    """subscriptions.py subclasses asyncua's MonitoredItemService and SubscriptionService;
    this pins the parts of asyncua it overrides or calls (checked for asyncua 2.1)."""
    names = lambda f: list(inspect.signature(f).parameters)  # noqa: E731
    assert names(MonitoredItemService.__init__) == ["self", "isub", "aspace"]
    assert names(MonitoredItemService._create_data_change_monitored_item) == ["self", "params"]
    assert names(MonitoredItemService._modify_monitored_item) == ["self", "params"]
    assert names(MonitoredItemService._delete_monitored_items) == ["self", "mid"]
    assert names(MonitoredItemService._make_monitored_item_common) == ["self", "params"]
    assert names(MonitoredItemService._commit_monitored_item) == ["self", "result", "mdata"]
    assert names(MonitoredItemService._revise_queue_size) == ["self", "requested"]
    assert names(MonitoredItemService.datachange_callback) == ["self", "handle", "value", "error"]
    assert names(MonitoredItemService.trigger_datachange) == ["self", "handle", "nodeid", "attr"]
    assert names(SubscriptionService.create_subscription) == [
        "self", "params", "callback", "session_id", "request_callback"]
    assert names(AddressSpace.add_datachange_callback) == ["self", "nodeid", "attr", "callback"]
    assert "monitored_item_srv" in inspect.getsource(InternalSubscription.__init__)

    server = Server()
    await server.init()
    subscriptions.install(server)
    iserver = server.iserver
    # one service object, held by the internal session too: the class swap reaches it
    assert iserver.isession.subscription_service is iserver.subscription_service
    node = await server.nodes.objects.add_variable(ua.NodeId("pin", 1), "pin", 1.0)
    received: list[float] = []

    class Handler:
        def datachange_notification(self, node, val, data):
            received.append(val)

    sub = await server.create_subscription(10, Handler())
    try:
        internal = iserver.subscription_service.subscriptions[sub.subscription_id]
        assert type(internal.monitored_item_srv) is DataChangeMonitor
        service = internal.monitored_item_srv
        # the attributes of the stock service we read and write
        assert isinstance(service._monitored_items, dict) and isinstance(service._monitored_datachange, dict)
        await sub.deadband_monitor(node, 2.0)
        # every write calls the item's callback with (handle, DataValue)
        for v in (1.5, 2.5, 3.5, 4.0, 4.5):
            await server.write_attribute_value(node.nodeid, ua.DataValue(ua.Variant(v, ua.VariantType.Double)))
        await wait_for(lambda: asyncio.sleep(0, list(received)), lambda r: r[-1:] == [3.5], "3.5 notified", 5)
        await asyncio.sleep(0.1)
        assert received == [1.0, 3.5]  # 2.5 is 1.5 from 1.0; 4.5 is 1.0 from 3.5
    finally:
        await sub.delete()


async def test_minimum_sampling_interval_is_shared_per_distinct_interval():
    """The memory design of model.py: meters polled alike share one AttributeValue."""
    from emu_opcua.opcua.model import MeterModel
    from emu_opcua.opcua.sampling import UpdateRates

    server = Server()
    await server.init()
    rates = {"a": UpdateRates(), "b": UpdateRates(fast=2000.0), "c": UpdateRates()}
    model = await MeterModel.build(server, list(rates), update_rates=rates)
    aspace = server.iserver.aspace

    def attribute(meter: str, code: str):
        return aspace[model.quantity(meter, code)].attributes[ua.AttributeIds.MinimumSamplingInterval]

    assert attribute("a", "active_power_total") is attribute("c", "active_power_total")
    assert attribute("a", "active_power_total") is attribute("a", "frequency")
    assert attribute("b", "active_power_total") is not attribute("a", "active_power_total")
    assert attribute("b", "active_power_total").value.Value.Value == 2000.0
    assert attribute("b", "active_energy_import_t1") is attribute("a", "active_energy_import_t1")  # 5 s both
    # shared: a write to one meter's attribute must not change the others'
    node = server.get_node(model.quantity("a", "active_power_total"))
    with pytest.raises(ua.uaerrors.BadNotWritable):
        await node.write_attribute(ua.AttributeIds.MinimumSamplingInterval,
                                   ua.DataValue(ua.Variant(5.0, ua.VariantType.Double)))
    assert attribute("c", "active_power_total").value.Value.Value == 1000.0
