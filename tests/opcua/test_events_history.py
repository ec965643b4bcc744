"""ReadEventDetails against a store of known events (asyncua's client, real sockets): the
time rules, select and where clauses, paging and the refusals."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

import pytest
from asyncua import Client, ua

from emu_opcua.history.events import MeterEvent
from emu_opcua.history.sqlite import SqliteHistoryStore
from emu_opcua.opcua.config import MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GatewayServer
from tests.opcua.test_events import of_type, select

T0 = 1_760_000_000


def dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EVENTS = [
    MeterEvent("boiler", "power_outage", T0 + 0, "1:10", "outage", {"MeterSerial": "1", "DatalogIndex": 10,
                                                                     "DatalogStatus": 0x60}),
    MeterEvent("boiler", "logbook", T0 + 10, "1:2:x", "CT", {"MeterSerial": "1", "LogbookIndex": 2, "CtPrimary": 400,
                                                               "CtPrimaryBefore": 5, "TimeAfterChange": T0 + 10}),
    MeterEvent("boiler", "meter_lost", T0 + 10, "lost:1", "lost", {"LastError": "refused"}),
    MeterEvent("boiler", "clock_changed", T0 + 20, "1:12", "clock", {"MeterSerial": "1", "DatalogIndex": 12,
                                                                      "DatalogStatus": 1}),
    MeterEvent("hall", "meter_lost", T0 + 5, "lost:1", "lost", {"LastError": "x"}),
]


@pytest.fixture
async def served(tmp_path):
    store = SqliteHistoryStore.in_directory(tmp_path / "data")
    store.add_events(EVENTS)
    config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki",
                          application_uri="urn:test:emu-opcua", security_policies=("None",),
                          meters=tuple(MeterConfig(name=n, host="127.0.0.1", http_port=9, modbus_port=9)
                                       for n in ("boiler", "hall")))
    async with GatewayServer(config, history_store=store) as gateway:
        async with Client(config.endpoint, timeout=10) as client:
            yield gateway, client
    store.close()


async def history(client, node_id, *, start=None, end=None, count=0, clauses, where=None, point=None):
    not_given = datetime(1601, 1, 1, tzinfo=timezone.utc)  # DateTime MinValue
    details = ua.ReadEventDetails(NumValuesPerNode=count, StartTime=start or not_given, EndTime=end or not_given,
                                  Filter=ua.EventFilter(SelectClauses=clauses, WhereClause=where or ua.ContentFilter()))
    params = ua.HistoryReadParameters(HistoryReadDetails=details, ReleaseContinuationPoints=False,
                                      NodesToRead=[ua.HistoryReadValueId(NodeId=node_id, ContinuationPoint=point)])
    [result] = await client.uaclient.history_read(params)
    events = [[v.Value for v in e.EventFields] for e in result.HistoryData.Events] if result.HistoryData else []
    return result.StatusCode, events, result.ContinuationPoint


async def test_time_rules_order_and_the_end_excluded(served):
    gateway, client = served
    idx = gateway.model.namespace_index
    node = gateway.model.meters["boiler"].object
    clauses = select(idx, "Message", "Time")
    _, got, point = await history(client, node, start=dt(T0), end=dt(T0 + 20), clauses=clauses)
    assert [m.Text for m, _t in got] == ["outage", "CT", "lost"] and point is None
    # end before start: newest first, the (later) start included, the end excluded
    _, got, _ = await history(client, node, start=dt(T0 + 20), end=dt(T0), clauses=clauses)
    assert [m.Text for m, _t in got] == ["clock", "lost", "CT"]
    # only an end and a count: newest first from the end
    _, got, _ = await history(client, node, end=dt(T0 + 15), count=2, clauses=clauses)
    assert [m.Text for m, _t in got] == ["lost", "CT"]
    # another meter's events are its own
    _, got, _ = await history(client, gateway.model.meters["hall"].object, start=dt(T0), end=dt(T0 + 99),
                              clauses=clauses)
    assert [m.Text for m, _t in got] == ["lost"]
    status, got, point = await history(client, node, start=dt(T0 + 50), end=dt(T0 + 99), clauses=clauses)
    assert status.value == ua.StatusCodes.GoodNoData and got == [] and point is None


async def test_fields_of_another_type_are_null_and_where_clauses_filter(served):
    gateway, client = served
    idx = gateway.model.namespace_index
    node = gateway.model.meters["boiler"].object
    clauses = select(idx, "EventType", "CtPrimary", "CtPrimaryBefore", type_name="LogbookEntryEventType") \
        + select(idx, "DatalogIndex", type_name="DatalogStatusEventType") + select(idx, "Severity", "EventId")
    _, got, _ = await history(client, node, start=dt(T0), end=dt(T0 + 99), clauses=clauses)
    assert [(t.Identifier, ct, before, di) for t, ct, before, di, _s, _id in got] == [
        ("PowerOutageEventType", None, None, 10), ("LogbookEntryEventType", 400, 5, None),
        ("MeterLostEventType", None, None, None), ("ClockChangedEventType", None, None, 12)]
    assert [e[5] for e in got] == [e.event_id for e in EVENTS[:4]]
    _, got, _ = await history(client, node, start=dt(T0), end=dt(T0 + 99), clauses=clauses,
                              where=of_type(idx, "DatalogStatusEventType"))
    assert [e[3] for e in got] == [10, 12]
    # Severity above 550: the outage (600) and the lost meter (800)
    where = ua.ContentFilter()
    el = ua.ContentFilterElement()
    el.FilterOperator = ua.FilterOperator.GreaterThan
    el.FilterOperands = [select(idx, "Severity")[0], ua.LiteralOperand(Value=ua.Variant(550, ua.VariantType.UInt16))]
    where.Elements = [el]
    _, got, _ = await history(client, node, start=dt(T0), end=dt(T0 + 99), clauses=clauses, where=where)
    assert [e[0].Identifier for e in got] == ["PowerOutageEventType", "MeterLostEventType"]


async def test_pages_with_continuation_points_and_the_refusals(served):
    gateway, client = served
    idx = gateway.model.namespace_index
    node = gateway.model.meters["boiler"].object
    clauses = select(idx, "Message")
    seen, point = [], None
    for _ in range(10):
        status, got, point = await history(client, node, start=dt(T0), end=dt(T0 + 99), count=1, clauses=clauses,
                                           point=point)
        assert status.is_good() and len(got) == 1
        seen += [m.Text for (m,) in got]
        if point is None:
            break
    assert seen == ["outage", "CT", "lost", "clock"]
    # a used point, a point of another request, no select clauses, too few times, not a meter
    status, _, first = await history(client, node, start=dt(T0), end=dt(T0 + 99), count=1, clauses=clauses)
    assert (await history(client, node, start=dt(T0), end=dt(T0 + 99), count=1, clauses=clauses,
                          point=first))[0].is_good()
    for point, kwargs in ((first, {}), (b"junk", {})):
        status, _, _ = await history(client, node, start=dt(T0), end=dt(T0 + 99), count=1, clauses=clauses,
                                     point=point, **kwargs)
        assert status.value == ua.StatusCodes.BadContinuationPointInvalid
    status, _, other = await history(client, node, start=dt(T0), end=dt(T0 + 99), count=1, clauses=clauses)
    status, _, _ = await history(client, node, start=dt(T0), end=dt(T0 + 98), count=1, clauses=clauses, point=other)
    assert status.value == ua.StatusCodes.BadContinuationPointInvalid
    assert (await history(client, node, start=dt(T0), end=dt(T0 + 99), clauses=[]))[0].value == \
        ua.StatusCodes.BadEventFilterInvalid
    assert (await history(client, node, start=dt(T0), clauses=clauses))[0].value == \
        ua.StatusCodes.BadInvalidTimestampArgument
    assert (await history(client, gateway.model.folder, start=dt(T0), end=dt(T0 + 99), clauses=clauses))[0].value == \
        ua.StatusCodes.BadHistoryOperationUnsupported


async def test_live_where_clause_of_type_a_supertype_matches_its_subtypes(served):
    """Pins the patch of asyncua's live WhereClauseEvaluator (events.patch_live_where_clauses)."""
    import asyncio

    gateway, client = served
    idx = gateway.model.namespace_index

    class Collect:
        def __init__(self):
            self.events = []

        def event_notification(self, event):
            self.events.append(event)

    by_base, by_logbook, on_boiler = Collect(), Collect(), Collect()
    for handler, type_name, notifier in (
            (by_base, "EmuMeterEventType", ua.NodeId(ua.ObjectIds.Server)),
            (by_logbook, "LogbookEntryEventType", ua.NodeId(ua.ObjectIds.Server)),
            (on_boiler, "EmuMeterEventType", gateway.model.meters["boiler"].object)):
        sub = await client.create_subscription(20, handler)
        evfilter = ua.EventFilter(SelectClauses=select(idx, "EventId", "EventType", "Message"),
                                  WhereClause=of_type(idx, type_name))
        await sub.subscribe_events(notifier, evfilter=evfilter)
    lost = [MeterEvent(m, "meter_lost", T0 + 99, "lost:live", "lost live", {"LastError": "refused"})
            for m in ("hall", "boiler")]
    await gateway.events.emit(lost)
    for _ in range(100):
        if len(by_base.events) == 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # time for a wrong delivery to the logbook-only subscription
    # Server notifies for every meter, a meter for itself
    assert [e.EventId for e in by_base.events] == [e.event_id for e in lost]
    assert [e.EventId for e in on_boiler.events] == [lost[1].event_id]
    assert by_logbook.events == []


async def test_a_where_clause_on_a_field_other_types_lack_matches_only_those_with_it(served, caplog):
    gateway, client = served
    idx = gateway.model.namespace_index
    node = gateway.model.meters["boiler"].object
    where = ua.ContentFilter()
    el = ua.ContentFilterElement()
    el.FilterOperator = ua.FilterOperator.GreaterThan
    el.FilterOperands = [select(idx, "CtPrimary", type_name="LogbookEntryEventType")[0],
                         ua.LiteralOperand(Value=ua.Variant(100, ua.VariantType.UInt32))]
    where.Elements = [el]
    _, got, _ = await history(client, node, start=dt(T0), end=dt(T0 + 99), clauses=select(idx, "Message"),
                              where=where)
    assert [m.Text for (m,) in got] == ["CT"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_without_a_store_meters_notify_but_offer_no_event_history(tmp_path):
    config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki",
                          application_uri="urn:test:emu-opcua", security_policies=("None",),
                          meters=(MeterConfig(name="boiler", host="127.0.0.1", http_port=9, modbus_port=9),))
    async with GatewayServer(config) as gateway:
        async with Client(config.endpoint, timeout=10) as client:
            meter = client.get_node(gateway.model.meters["boiler"].object)
            notifier = await meter.read_attribute(ua.AttributeIds.EventNotifier)
            assert notifier.Value.Value == ua.EventNotifier.SubscribeToEvents.mask
            caps = client.get_node(ua.ObjectIds.HistoryServerCapabilities)
            assert await (await caps.get_child("0:AccessHistoryEventsCapability")).read_value() is False
            status, _, _ = await history(client, meter.nodeid, start=dt(T0), end=dt(T0 + 9),
                                         clauses=select(gateway.model.namespace_index, "Message"))
            assert status.value == ua.StatusCodes.BadHistoryOperationUnsupported
