"""Meter events end to end: a simulated meter's logbook and the gateway's link to it,
live on the meter and on Server (asyncua's client), and from history after a restart
with the same EventIds."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from asyncua import Client, ua

from emu_opcua.opcua.config import HistoryConfig, MeterConfig, ServerConfig
from emu_opcua.opcua.nodeset import NAMESPACE_URI
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig

WAIT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def sim_event(fleet, name, **params):
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.post(f"http://127.0.0.1:{fleet.control_port}/_sim/meters/0/events/{name}", params=params)
    assert r.status_code == 200, r.text


class Collect:
    def __init__(self):
        self.events = []

    def event_notification(self, event):
        self.events.append(event)


async def wait_for(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def gateway_config(tmp_path, port, **meter):
    return ServerConfig(
        host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki", data_dir=tmp_path / "data",
        application_uri="urn:test:emu-opcua", security_policies=("None",),
        history=HistoryConfig(enabled=True, interval=0.3),
        meters=(MeterConfig(name="boiler", host=port.host, http_port=port.http_port, modbus_port=port.modbus_port,
                            **meter),))


def select(idx, *names, type_name="EmuMeterEventType"):
    """Select clauses by browse path: BaseEventType's names in ns 0, ours in ``idx``."""
    base = ("EventId", "EventType", "SourceNode", "SourceName", "Time", "Message", "Severity")
    clauses = []
    for name in names:
        op = ua.SimpleAttributeOperand()
        op.TypeDefinitionId = ua.NodeId(ua.ObjectIds.BaseEventType) if name in base else ua.NodeId(type_name, idx)
        op.BrowsePath = [ua.QualifiedName(name, 0 if name in base else idx)]
        op.AttributeId = ua.AttributeIds.Value
        clauses.append(op)
    return clauses


def of_type(idx, type_name):
    where = ua.ContentFilter()
    el = ua.ContentFilterElement()
    el.FilterOperator = ua.FilterOperator.OfType
    el.FilterOperands = [ua.LiteralOperand(Value=ua.Variant(ua.NodeId(type_name, idx)))]
    where.Elements = [el]
    return where


async def read_events(client, node_id, start, end, *, count=0, event_filter):
    """Every page of a ReadEventDetails HistoryRead (continuation points followed)."""
    details = ua.ReadEventDetails(NumValuesPerNode=count, StartTime=start, EndTime=end, Filter=event_filter)
    pages, point = [], None
    while True:
        params = ua.HistoryReadParameters(HistoryReadDetails=details, TimestampsToReturn=ua.TimestampsToReturn.Both,
                                          ReleaseContinuationPoints=False,
                                          NodesToRead=[ua.HistoryReadValueId(NodeId=node_id, ContinuationPoint=point)])
        [result] = await client.uaclient.history_read(params)
        assert result.StatusCode.is_good(), result.StatusCode
        pages.append([[v.Value for v in e.EventFields] for e in result.HistoryData.Events])
        point = result.ContinuationPoint
        if not point:
            return pages


async def test_events_live_on_meter_and_server_and_from_history_after_a_restart(tmp_path):
    fleet_config = FleetConfig(meters=1, history_days=0.25, speed=300.0, sync_delay=0.0)
    async with Fleet(fleet_config) as fleet:
        await fleet.wait_warm()
        port = fleet.ports()[0]
        config = gateway_config(tmp_path, port, stale_after=1.0, fast_interval=0.2)
        async with GatewayServer(config) as gateway:
            syncer = gateway.syncers["boiler"]
            await asyncio.wait_for(syncer.current.wait(), WAIT)
            async with Client(config.endpoint, timeout=10) as client:
                idx = await client.get_namespace_index(NAMESPACE_URI)
                meter = client.get_node(gateway.model.meters["boiler"].object)
                notifier = await meter.read_attribute(ua.AttributeIds.EventNotifier)
                assert notifier.Value.Value == 5  # SubscribeToEvents | HistoryRead
                # the HasNotifier chain Server -> Meters -> boiler
                [folder] = await client.nodes.server.get_referenced_nodes(ua.ObjectIds.HasNotifier)
                assert folder.nodeid == gateway.model.folder
                assert [n.nodeid for n in await folder.get_referenced_nodes(ua.ObjectIds.HasNotifier)] == [
                    meter.nodeid]
                on_server, on_meter = Collect(), Collect()
                types = [client.get_node(ua.NodeId(n, idx)) for n in (
                    "LogbookEntryEventType", "MeterLostEventType", "MeterRegainedEventType")]
                sub_server = await client.create_subscription(50, on_server)
                await sub_server.subscribe_events(client.nodes.server, types)
                sub_meter = await client.create_subscription(50, on_meter)
                await sub_meter.subscribe_events(meter, types[:1])
                await sim_event(fleet, "ct_ratio", primary=600, secondary=5)
                await wait_for(lambda: on_server.events and on_meter.events, "the logbook event")
                live = on_meter.events[0]
                assert live.CtPrimary == 600 and live.CtSecondary == 5 and live.CtPrimaryBefore != 600
                assert live.SourceNode == meter.nodeid and live.SourceName == "boiler"
                assert live.EventType == ua.NodeId("LogbookEntryEventType", idx)
                assert on_server.events[0].EventId == live.EventId
                # the gateway loses the meter (an outage longer than stale_after) and regains it
                await sim_event(fleet, "power_outage", seconds=1200)
                await wait_for(lambda: any(e.EventType == ua.NodeId("MeterRegainedEventType", idx)
                                           for e in on_server.events), "the meter regained")
                kinds = [e.EventType.Identifier for e in on_server.events]
                assert kinds == ["LogbookEntryEventType", "MeterLostEventType", "MeterRegainedEventType"]
                assert len(on_meter.events) == 1  # subscribed to logbook events only
                live_ids = [e.EventId for e in on_server.events]
                # the outage's row (0x20) shows in history once the meter writes it
                await wait_for(lambda: any(s.event.kind == "power_outage" for s in
                                           gateway.history.store.read_events("boiler", 0, 1 << 40)),
                               "the power outage row")
        # a restart: the same events, with the same EventIds, from history
        async with GatewayServer(config) as gateway:
            async with Client(config.endpoint, timeout=10) as client:
                idx = await client.get_namespace_index(NAMESPACE_URI)
                node = gateway.model.meters["boiler"].object
                start = datetime.now(timezone.utc) - timedelta(days=30)
                end = datetime.now(timezone.utc) + timedelta(days=30)
                f = ua.EventFilter(SelectClauses=select(idx, "EventId", "EventType", "Time", "CtPrimary"),
                                   WhereClause=ua.ContentFilter())
                everything = [e for page in await read_events(client, node, start, end, event_filter=f) for e in page]
                ids = [e[0] for e in everything]
                assert set(live_ids) <= set(ids) and len(set(ids)) == len(ids)
                types = {e[1].Identifier for e in everything}
                assert {"LogbookEntryEventType", "MeterLostEventType", "MeterRegainedEventType",
                        "PowerOutageEventType"} <= types
                times = [e[2] for e in everything]
                assert times == sorted(times)
                # CtPrimary is a LogbookEntryEventType field: null for the others
                assert all((e[3] is not None) == (e[1].Identifier == "LogbookEntryEventType") for e in everything)
                # one event a page, continuation points between: the same events
                paged = await read_events(client, node, start, end, count=1, event_filter=f)
                assert [len(p) for p in paged] == [1] * len(everything)
                assert [p[0] for p in paged] == everything
                # newest first (end before start)
                back = await read_events(client, node, end, start, event_filter=f)
                assert [e for page in back for e in page] == everything[::-1]
                # where clause: OfType a supertype (DatalogStatusEventType) answers its subtypes
                status_only = ua.EventFilter(SelectClauses=select(idx, "EventType", "DatalogIndex",
                                                                  type_name="DatalogStatusEventType"),
                                             WhereClause=of_type(idx, "DatalogStatusEventType"))
                got = [e for page in await read_events(client, node, start, end, event_filter=status_only)
                       for e in page]
                assert got and all(e[0].Identifier in ("PowerOutageEventType", "ClockChangedEventType",
                                                       "ClockNotSynchronisedEventType", "LogbookFullEventType")
                                   and isinstance(e[1], int) for e in got)
                assert any(e[0].Identifier == "PowerOutageEventType" for e in got)
