"""HistoryRead against a GatewayServer whose SQLite store holds known rows (written
straight into the store), with asyncua's client and node-opcua's.

One fleet of two simulated meters and one gateway serve the module. The store holds, for
``boiler``: rows every 900 s from T0 (active power total = 1000 W * i, energy import T1 =
1000 Wh * i), one row with "clock not synchronised", one with "power outage", and five
rows sharing one timestamp (a clock set back); for ``hall``: rows from T0 + 1 day, and a
second series (a replaced meter) from T0 + 3 days.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from asyncua import Client, ua

from emu_opcua.history.sqlite import SqliteHistoryStore
from emu_opcua.history.store import StoredRow
from emu_opcua.meter.datalog import RAW_COLUMNS, DatalogStatus
from emu_opcua.opcua.config import MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

T0 = 1_750_000_500  # unix seconds
STEP = 900
N = 40
TIE = T0 + 50 * STEP  # five rows at one time (indices 100..104), after the regular ones
MAX_POINTS = 3
MAX_RETURN = 10_000  # the server default (MaxReturnDataValues)

P_COL, E_COL = 13 - 5, 5 - 5  # active power total [W], energy import T1 [Wh]


def raw_row(ts: int, index: int, watts: int, wh: int, status: int = 0, series: int = 1) -> StoredRow:
    raw = [0] * RAW_COLUMNS
    raw[P_COL] = watts
    raw[E_COL] = wh
    return StoredRow(ts, series, index, status, tuple(raw))


def boiler_rows() -> list[StoredRow]:
    rows = []
    for i in range(N):
        status = 0
        if i == 5:
            status = DatalogStatus.CLOCK_NOT_SYNCHRONISED
        elif i == 6:
            status = DatalogStatus.POWER_OUTAGE
        rows.append(raw_row(T0 + i * STEP, i, 1000 * i, 1000 * i, status))
    rows += [raw_row(TIE, 100 + k, 7000 + k, 99_000 + k) for k in range(5)]
    return rows


def put(store: SqliteHistoryStore, meter: str, rows: list[StoredRow]) -> None:
    """Write rows straight into the store, as one series of ``meter``."""
    series = store.new_series(meter, f"serial-{meter}", rows[0].index)
    store.append_tuples(series, [(r.timestamp, r.index, r.status, *r.raw) for r in rows], None)


def dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Setup:
    def __init__(self, gateway: GatewayServer, client: Client, store: SqliteHistoryStore, endpoint: str) -> None:
        self.gateway = gateway
        self.client = client
        self.store = store
        self.endpoint = endpoint
        self.model = gateway.model

    def q(self, meter: str, code: str) -> ua.NodeId:
        return self.model.quantity(meter, code)

    async def history(self, details, node_ids, points=None, *, timestamps=ua.TimestampsToReturn.Both,
                      release=False, client=None) -> list[ua.HistoryReadResult]:
        params = ua.HistoryReadParameters()
        params.HistoryReadDetails = details
        params.TimestampsToReturn = timestamps
        params.ReleaseContinuationPoints = release
        points = points or [None] * len(node_ids)
        params.NodesToRead = [ua.HistoryReadValueId(NodeId=n, ContinuationPoint=p) for n, p in zip(node_ids, points)]
        return await (client or self.client).uaclient.history_read(params)


def raw_details(start=None, end=None, count=0, bounds=False) -> ua.ReadRawModifiedDetails:
    return ua.ReadRawModifiedDetails(IsReadModified=False, StartTime=start or ua.get_win_epoch(),
                                     EndTime=end or ua.get_win_epoch(), NumValuesPerNode=count,
                                     ReturnBounds=bounds)


def values(result: ua.HistoryReadResult) -> list[float | None]:
    return [None if dv.Value is None else dv.Value.Value for dv in result.HistoryData.DataValues]


def times(result: ua.HistoryReadResult) -> list[float]:
    return [dv.SourceTimestamp.timestamp() for dv in result.HistoryData.DataValues]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def setup(tmp_path_factory):
    store = SqliteHistoryStore.in_directory(tmp_path_factory.mktemp("data"))
    put(store, "boiler", boiler_rows())
    put(store, "hall", [raw_row(T0 + 86_400 + i * STEP, i, 1, 1) for i in range(3)])
    # hall's meter replaced by a used one: a second series from T0 + 3 days, counter at 50 kWh
    put(store, "hall", [raw_row(T0 + 3 * 86_400 + i * STEP, i, 2000, 50_000 + 1000 * i, series=2)
                        for i in range(8)])
    async with Fleet(FleetConfig(meters=2, history_days=0.05, control_port=None)) as fleet:
        p = fleet.ports()
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp_path_factory.mktemp("pki"),
            application_uri="urn:test:emu-opcua", security_policies=("None",),
            max_history_continuation_points=MAX_POINTS,
            meters=tuple(MeterConfig(name=name, host=port.host, http_port=port.http_port,
                                     modbus_port=port.modbus_port)
                         for name, port in zip(("boiler", "hall"), p)))
        try:
            async with GatewayServer(config, history_store=store) as gateway:
                async with Client(config.endpoint, timeout=10) as client:
                    yield Setup(gateway, client, store, config.endpoint)
        finally:
            store.close()


# --- the nodes --------------------------------------------------------------------------------
async def test_historized_variables_carry_access_level_and_ha_configuration(setup: Setup):
    node = setup.client.get_node(setup.q("boiler", "active_power_total"))
    assert await node.read_attribute(ua.AttributeIds.Historizing) is not None
    assert (await node.read_attribute(ua.AttributeIds.Historizing)).Value.Value is True
    for attr in (ua.AttributeIds.AccessLevel, ua.AttributeIds.UserAccessLevel):
        level = (await node.read_attribute(attr)).Value.Value
        assert level & ua.AccessLevel.HistoryRead.mask and level & ua.AccessLevel.CurrentRead.mask
    (config,) = await node.get_referenced_nodes(ua.ObjectIds.HasHistoricalConfiguration)
    assert (await config.read_browse_name()) == ua.QualifiedName("HA Configuration", 0)
    assert (await config.read_type_definition()) == ua.NodeId(ua.ObjectIds.HistoricalDataConfigurationType)
    stepped = await config.get_child("0:Stepped")
    assert await stepped.read_value() is True  # power: load-profile samples
    start = await (await config.get_child("0:StartOfArchive")).read_value()
    online = await (await config.get_child("0:StartOfOnlineArchive")).read_value()
    assert start == online == dt(T0)
    aggregates = await config.get_child("0:AggregateConfiguration")
    assert await (await aggregates.get_child("0:TreatUncertainAsBad")).read_value() is True
    assert await (await aggregates.get_child("0:PercentDataBad")).read_value() == 100
    assert await (await aggregates.get_child("0:PercentDataGood")).read_value() == 100
    assert await (await aggregates.get_child("0:UseSlopedExtrapolation")).read_value() is False
    # energy is sloped; another meter has its own archive start (shared nodes, per-meter value)
    energy = setup.client.get_node(setup.q("hall", "active_energy_import_t1"))
    (config,) = await energy.get_referenced_nodes(ua.ObjectIds.HasHistoricalConfiguration)
    assert await (await config.get_child("0:Stepped")).read_value() is False
    assert await (await config.get_child("0:StartOfArchive")).read_value() == dt(T0 + 86_400)


async def test_every_datalog_quantity_is_historized_and_nothing_else(setup: Setup):
    from emu_opcua.opcua.history import HISTORIZED
    quantities = setup.model.meters["boiler"].quantities
    assert HISTORIZED <= set(quantities)
    for code, node_id in quantities.items():
        historizing = (await setup.client.get_node(node_id).read_attribute(ua.AttributeIds.Historizing)).Value.Value
        assert historizing is (code in HISTORIZED), code
    assert "reactive_power_total" in quantities and "reactive_power_total" not in HISTORIZED


async def test_server_history_capabilities_are_filled_in(setup: Setup):
    caps = setup.client.get_node(ua.ObjectIds.HistoryServerCapabilities)
    assert await (await caps.get_child("0:AccessHistoryDataCapability")).read_value() is True
    # meter events are served from the store too (emu_opcua.opcua.events)
    assert await (await caps.get_child("0:AccessHistoryEventsCapability")).read_value() is True
    assert await (await caps.get_child("0:MaxReturnEventValues")).read_value() == setup.gateway.events.max_values
    assert await (await caps.get_child("0:MaxReturnDataValues")).read_value() == setup.gateway.history_service.max_values
    assert await (await caps.get_child("0:InsertDataCapability")).read_value() is False
    assert await (await caps.get_child("0:DeleteRawCapability")).read_value() is False
    assert await (await caps.get_child("0:ServerTimestampSupported")).read_value() is True
    points = setup.client.get_node(ua.ObjectIds.Server_ServerCapabilities_MaxHistoryContinuationPoints)
    assert await points.read_value() == MAX_POINTS


# --- read raw ---------------------------------------------------------------------------------
async def test_raw_values_in_served_units_with_status_from_the_datalog(setup: Setup):
    power, energy = setup.q("boiler", "active_power_total"), setup.q("boiler", "active_energy_import_t1")
    r_power, r_energy = await setup.history(raw_details(dt(T0), dt(T0 + 8 * STEP)), [power, energy])
    assert values(r_power) == [float(i) for i in range(8)]  # W -> kW
    assert values(r_energy) == [float(i) for i in range(8)]  # Wh -> kWh
    assert times(r_power) == [T0 + i * STEP for i in range(8)]
    status = [dv.StatusCode.value for dv in r_power.HistoryData.DataValues]
    assert status[5] == ua.StatusCodes.UncertainConfigurationError  # clock not synchronised
    assert status[6] == ua.StatusCodes.UncertainDataSubNormal  # power outage: P is Uncertain
    assert all(s == ua.StatusCodes.Good for i, s in enumerate(status) if i not in (5, 6))
    assert r_energy.HistoryData.DataValues[6].StatusCode.is_good()  # ... an energy register is not


async def test_raw_direction_end_excluded_and_bounds(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    # forward, the end time excluded
    (r,) = await setup.history(raw_details(dt(T0 + STEP), dt(T0 + 4 * STEP)), [power])
    assert values(r) == [1.0, 2.0, 3.0] and r.ContinuationPoint is None
    # end before start: newest first, the (later) start included, the end excluded
    (r,) = await setup.history(raw_details(dt(T0 + 4 * STEP), dt(T0 + STEP)), [power])
    assert values(r) == [4.0, 3.0, 2.0]
    # bounds: the rows just outside
    (r,) = await setup.history(raw_details(dt(T0 + STEP + 1), dt(T0 + 3 * STEP + 1), bounds=True), [power])
    assert values(r) == [1.0, 2.0, 3.0, 4.0]
    # no bound before the first row: Bad_BoundNotFound stamped with the start time
    (r,) = await setup.history(raw_details(dt(T0 - 10), dt(T0 + STEP), bounds=True), [power])
    first = r.HistoryData.DataValues[0]
    assert first.StatusCode.value == ua.StatusCodes.BadBoundNotFound and values(r)[0] is None
    assert first.SourceTimestamp == dt(T0 - 10)
    assert values(r)[1:] == [0.0, 1.0]
    # start only + count; end only + count (newest first, the end time included)
    (r,) = await setup.history(raw_details(start=dt(T0 + 2 * STEP), count=3), [power])
    assert values(r) == [2.0, 3.0, 4.0] and r.ContinuationPoint is not None
    (r,) = await setup.history(raw_details(end=dt(T0 + 2 * STEP), count=5), [power])
    assert values(r) == [2.0, 1.0, 0.0] and r.ContinuationPoint is None
    # nothing in the range: GoodNoData
    (r,) = await setup.history(raw_details(dt(T0 + 1), dt(T0 + 2)), [power])
    assert r.StatusCode.value == ua.StatusCodes.GoodNoData and values(r) == []


async def test_timestamps_to_return(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    d = raw_details(dt(T0), dt(T0 + 2 * STEP))
    (r,) = await setup.history(d, [power], timestamps=ua.TimestampsToReturn.Source)
    assert all(dv.SourceTimestamp is not None and dv.ServerTimestamp is None for dv in r.HistoryData.DataValues)
    (r,) = await setup.history(d, [power], timestamps=ua.TimestampsToReturn.Server)
    assert all(dv.SourceTimestamp is None and dv.ServerTimestamp == dt(T0 + i * STEP)
               for i, dv in enumerate(r.HistoryData.DataValues))
    (r,) = await setup.history(d, [power], timestamps=ua.TimestampsToReturn.Both)
    assert all(dv.SourceTimestamp == dv.ServerTimestamp for dv in r.HistoryData.DataValues)
    with pytest.raises(ua.uaerrors.BadTimestampsToReturnInvalid):
        await setup.history(d, [power], timestamps=ua.TimestampsToReturn.Neither)


async def test_many_nodes_one_request_each_with_its_own_result(setup: Setup):
    nodes = [setup.q("boiler", "active_power_total"), setup.q("hall", "active_power_total"),
             ua.NodeId("nowhere.Measurements.AcFrequency", setup.model.namespace_index),
             setup.q("boiler", "reactive_power_total"),  # not in the datalog
             setup.model.diagnostics("boiler", "ConnectionState"),
             setup.q("boiler", "voltage_l1")]
    results = await setup.history(raw_details(dt(T0), dt(T0 + 86_400 * 2)), nodes)
    assert len(values(results[0])) == N + 5
    assert values(results[1]) == [0.001] * 3
    assert results[2].StatusCode.value == ua.StatusCodes.BadNodeIdUnknown
    # a variable without history: BadHistoryOperationUnsupported (asyncua: Good, no data)
    assert results[3].StatusCode.value == ua.StatusCodes.BadHistoryOperationUnsupported
    assert results[4].StatusCode.value == ua.StatusCodes.BadHistoryOperationUnsupported
    assert results[5].StatusCode.is_good() and len(values(results[5])) == N + 5


async def test_read_modified_is_unsupported(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    d = raw_details(dt(T0), dt(T0 + STEP))
    d.IsReadModified = True
    (r,) = await setup.history(d, [power])
    assert r.StatusCode.value == ua.StatusCodes.BadHistoryOperationUnsupported


# --- continuation points ----------------------------------------------------------------------
async def _all_pages(setup: Setup, details, node, page_limit=100):
    got, point, pages = [], None, 0
    while True:
        (r,) = await setup.history(details, [node], [point])
        assert r.StatusCode.is_good(), r.StatusCode
        assert r.HistoryData.DataValues or r.ContinuationPoint is None, "empty page with a continuation point"
        got.extend(values(r))
        point = r.ContinuationPoint
        pages += 1
        assert pages < page_limit
        if point is None:
            return got, pages


async def test_pages_through_values_sharing_a_timestamp(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    for reverse in (False, True):
        d = raw_details(dt(TIE + 1), dt(T0 + 38 * STEP - 1), count=2) if reverse else \
            raw_details(dt(T0 + 38 * STEP), dt(TIE + 1), count=2)
        got, pages = await _all_pages(setup, d, power)
        want = [38.0, 39.0] + [7.0 + k / 1000 for k in range(5)]
        assert got == (want[::-1] if reverse else want)
        assert pages == 4


async def test_continuation_points_are_single_use_and_bad_ones_fail_only_their_node(setup: Setup):
    power, voltage = setup.q("boiler", "active_power_total"), setup.q("boiler", "voltage_l1")
    d = raw_details(dt(T0), dt(T0 + 10 * STEP), count=3)
    (first,) = await setup.history(d, [power])
    point = first.ContinuationPoint
    assert point
    (second,) = await setup.history(d, [power], [point])
    assert values(second) == [3.0, 4.0, 5.0]
    # used once: invalid now; garbage: invalid; the other node of the request reads fine
    used, garbage, fine = await setup.history(d, [power, power, voltage], [point, b"garbage", None])
    assert used.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid
    assert garbage.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid
    assert fine.StatusCode.is_good() and len(values(fine)) == 3
    # a point is bound to its node and request
    (r,) = await setup.history(d, [power])
    (other_node,) = await setup.history(d, [voltage], [r.ContinuationPoint])
    assert other_node.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid


async def test_continuation_points_belong_to_their_session(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    d = raw_details(dt(T0), dt(T0 + 10 * STEP), count=3)
    (r,) = await setup.history(d, [power])
    async with Client(setup.endpoint, timeout=10) as other:
        (stolen,) = await setup.history(d, [power], [r.ContinuationPoint], client=other)
        assert stolen.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid
        (own,) = await setup.history(d, [power], client=other)
        assert own.ContinuationPoint
        service = setup.gateway.history_service
        sessions = [s for s in service.points._sessions if service.points.count(s)]
        assert len(sessions) >= 2
    # the other session closed: its points are gone
    assert all(s.state.name != "Closed" for s in service.points._sessions)
    (mine,) = await setup.history(d, [power], [r.ContinuationPoint])
    assert values(mine) == [3.0, 4.0, 5.0]


async def test_continuation_points_are_limited_per_session_and_released(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    d = raw_details(dt(T0), dt(T0 + 10 * STEP), count=2)
    points = []
    for _ in range(MAX_POINTS + 1):
        (r,) = await setup.history(d, [power])
        points.append(r.ContinuationPoint)
    # the oldest was dropped
    (r,) = await setup.history(d, [power], [points[0]])
    assert r.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid
    # release one: no data, and it is gone
    (r,) = await setup.history(d, [power], [points[1]], release=True)
    assert r.StatusCode.is_good() and not r.HistoryData
    (r,) = await setup.history(d, [power], [points[1]])
    assert r.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid
    (r,) = await setup.history(d, [power], [points[2]])
    assert values(r) == [2.0, 3.0]


# --- read at time -----------------------------------------------------------------------------
async def test_read_at_time_interpolates_sloped_and_holds_stepped(setup: Setup):
    energy, power = setup.q("boiler", "active_energy_import_t1"), setup.q("boiler", "active_power_total")
    req = [dt(T0 + STEP), dt(T0 + 1.5 * STEP), dt(T0 + 2 * STEP + 90), dt(T0 - 60)]
    for simple in (True, False):
        details = ua.ReadAtTimeDetails(ReqTimes=req, UseSimpleBounds=simple)
        r_energy, r_power = await setup.history(details, [energy, power])
        e, p = r_energy.HistoryData.DataValues, r_power.HistoryData.DataValues
        assert [dv.SourceTimestamp for dv in e] == req
        # at a row: raw
        assert e[0].Value.Value == 1.0 and e[0].StatusCode.value == ua.StatusCodes.Good
        # between rows: energy on the line, power held; the Interpolated bit set
        assert e[1].Value.Value == pytest.approx(1.5) and p[1].Value.Value == 1.0
        assert e[2].Value.Value == pytest.approx(2.1) and p[2].Value.Value == 2.0
        for dv in (e[1], p[1], e[2], p[2]):
            assert dv.StatusCode.value == ua.StatusCodes.Good | 0x0402
        # before the first row
        assert e[3].StatusCode.value == ua.StatusCodes.BadNoData and values(r_energy)[3] is None


# --- interop: node-opcua's client ------------------------------------------------------------
async def node_history(setup: Setup, node_id: ua.NodeId, request: dict) -> dict:
    import asyncio
    import json

    from tests.opcua.test_interop import INTEROP, node_or_fail

    node = node_or_fail()
    proc = await asyncio.create_subprocess_exec(
        node, str(INTEROP / "read_history.mjs"), setup.endpoint.replace("0.0.0.0", "127.0.0.1"),
        node_id.to_string(), json.dumps(request), cwd=INTEROP,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("node read_history.mjs did not finish within 60 s")
    assert proc.returncode == 0, f"node-opcua client failed:\n{err.decode(errors='replace')}"
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"no output from the node-opcua client; stderr:\n{err.decode(errors='replace')}"
    return json.loads(lines[-1])


async def test_node_opcua_reads_raw_history_through_continuation_points_with_bounds(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    got = await node_history(setup, power, {"mode": "raw", "start": (T0 + 30 * STEP + 1) * 1000,
                                            "end": (TIE + 1) * 1000, "numValuesPerNode": 3, "returnBounds": True})
    # the bound before (30), 31..39, the five rows sharing a timestamp, no bound after: LAST
    want = [float(i) for i in range(30, 40)] + [7.0 + k / 1000 for k in range(5)] + [None]
    assert [v["v"] for v in got["values"]] == want
    assert got["values"][-1]["s"] == ua.StatusCodes.BadBoundNotFound
    assert got["values"][-1]["t"] == (TIE + 1) * 1000
    assert [p["count"] for p in got["pages"]] == [3, 3, 3, 3, 3, 1]
    assert all(p["statusCode"] == 0 for p in got["pages"])
    # newest first, no bounds
    got = await node_history(setup, power, {"mode": "raw", "start": (T0 + 3 * STEP) * 1000,
                                            "end": T0 * 1000, "numValuesPerNode": 2})
    assert [v["v"] for v in got["values"]] == [3.0, 2.0, 1.0]
    assert [v["t"] for v in got["values"]] == [(T0 + i * STEP) * 1000 for i in (3, 2, 1)]


async def test_node_opcua_reads_at_time(setup: Setup):
    energy = setup.q("boiler", "active_energy_import_t1")
    times_ms = [(T0 + STEP) * 1000, int((T0 + 1.5 * STEP) * 1000), (T0 - 60) * 1000]
    for simple in (True, False):
        got = await node_history(setup, energy, {"mode": "attime", "times": times_ms, "useSimpleBounds": simple})
        values_ = got["values"]
        assert [v["t"] for v in values_] == times_ms
        assert values_[0]["v"] == 1.0 and values_[0]["s"] == 0
        assert values_[1]["v"] == pytest.approx(1.5) and values_[1]["s"] == 0x0402
        assert values_[2]["v"] is None and values_[2]["s"] == ua.StatusCodes.BadNoData


async def test_server_page_limit_pages_raw_and_at_time_reads(setup: Setup):
    service = setup.gateway.history_service
    power = setup.q("boiler", "active_power_total")
    saved = service.max_values
    service.max_values = 4  # MaxReturnDataValues, as if 10,000 were 4
    try:
        got, pages = await _all_pages(setup, raw_details(dt(T0), dt(T0 + 10 * STEP)), power)
        assert got == [float(i) for i in range(10)] and pages == 3
        req = [dt(T0 + i * STEP) for i in range(6)]
        details = ua.ReadAtTimeDetails(ReqTimes=req, UseSimpleBounds=True)
        got, pages = await _all_pages(setup, details, power)
        assert got == [float(i) for i in range(6)] and pages == 2
    finally:
        service.max_values = saved


async def test_asyncua_node_api_reads_history(setup: Setup):
    # asyncua's own convenience call (it follows continuation points itself)
    node = setup.client.get_node(setup.q("boiler", "active_energy_import_t1"))
    history = await node.read_raw_history(dt(T0), dt(T0 + 5 * STEP), numvalues=0, return_bounds=False)
    assert [dv.Value.Value for dv in history] == [0.0, 1.0, 2.0, 3.0, 4.0]
    # its default asks for bounds: the row at the end time is the end bound
    history = await node.read_raw_history(dt(T0), dt(T0 + 5 * STEP))
    assert [dv.Value.Value for dv in history] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


async def test_the_servers_internal_session_gets_history_objects(setup: Setup):
    # server-side code reading history goes through asyncua's internal session (no encoding)
    node = setup.gateway.server.get_node(setup.q("boiler", "active_power_total"))
    history = await node.read_raw_history(dt(T0), dt(T0 + 3 * STEP), return_bounds=False)
    assert [dv.Value.Value for dv in history] == [0.0, 1.0, 2.0]
    assert [dv.SourceTimestamp for dv in history] == [dt(T0 + i * STEP) for i in range(3)]


# --- ReadProcessed ----------------------------------------------------------------------------
AGG = ua.ObjectIds
GOOD_CALCULATED = 0x401  # Good, InfoType DataValue, historian bit Calculated
UNCERTAIN_CALCULATED = ua.StatusCodes.UncertainDataSubNormal | 0x401


def processed(start, end, interval_ms, *aggregates, config=None) -> ua.ReadProcessedDetails:
    d = ua.ReadProcessedDetails(StartTime=start, EndTime=end, ProcessingInterval=interval_ms,
                                AggregateType=[ua.NodeId(a) for a in aggregates])
    if config is not None:
        d.AggregateConfiguration = config
    return d


def statuses(result: ua.HistoryReadResult) -> list[int]:
    return [dv.StatusCode.value for dv in result.HistoryData.DataValues]


async def test_processed_several_nodes_and_aggregates_in_one_request(setup: Setup):
    # boiler: power i kW and energy i kWh at T0 + i * STEP; row 5 clock not synchronised
    # (every value Uncertain), row 6 power outage (power Uncertain, energy Good)
    power, energy = setup.q("boiler", "active_power_total"), setup.q("boiler", "active_energy_import_t1")
    d = processed(dt(T0), dt(T0 + 8 * STEP), 4 * STEP * 1000, AGG.AggregateFunction_Maximum,
                  AGG.AggregateFunction_DeltaBounds, AGG.AggregateFunction_Count, AGG.AggregateFunction_Delta)
    r_max, r_bounds, r_count, r_delta = await setup.history(d, [power, energy, power, energy])
    assert times(r_max) == times(r_bounds) == [T0, T0 + 4 * STEP]
    assert values(r_max) == [3.0, 7.0]
    assert values(r_bounds) == [4.0, 4.0]  # the counter at the next interval's start minus at this one's
    assert statuses(r_bounds) == [GOOD_CALCULATED, GOOD_CALCULATED]
    assert values(r_delta) == [3.0, 3.0]  # last minus first row inside: one quarter hour short
    assert statuses(r_delta) == [GOOD_CALCULATED, GOOD_CALCULATED]  # first and last Good: row 5 between
    assert values(r_count) == [4, 2]
    assert {dv.Value.VariantType for dv in r_count.HistoryData.DataValues} == {ua.VariantType.Int32}
    assert statuses(r_count) == [GOOD_CALCULATED, UNCERTAIN_CALCULATED]
    # interval 0: one interval over the range; end before start: latest first
    (r,) = await setup.history(processed(dt(T0), dt(T0 + 8 * STEP), 0, AGG.AggregateFunction_DeltaBounds), [energy])
    assert values(r) == [8.0] and times(r) == [T0]
    (r,) = await setup.history(processed(dt(T0 + 8 * STEP), dt(T0), 4 * STEP * 1000,
                                         AGG.AggregateFunction_DeltaBounds), [energy])
    assert values(r) == [4.0, 4.0] and times(r) == [T0 + 8 * STEP, T0 + 4 * STEP]


async def test_processed_value_types(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    d = processed(dt(T0), dt(T0 + 8 * STEP), 4 * STEP * 1000, AGG.AggregateFunction_AnnotationCount,
                  AGG.AggregateFunction_WorstQuality, AGG.AggregateFunction_Average)
    annotations, worst, average = await setup.history(d, [power, power, power])
    assert values(annotations) == [0, 0]  # the datalog has no annotations
    assert [dv.Value.VariantType for dv in annotations.HistoryData.DataValues] == [ua.VariantType.Int32] * 2
    assert [dv.Value.VariantType for dv in worst.HistoryData.DataValues] == [ua.VariantType.StatusCode] * 2
    assert [v.value for v in values(worst)] == [0, ua.StatusCodes.UncertainConfigurationError]  # row 5
    assert values(average) == [1.5, 5.5] and statuses(average) == [GOOD_CALCULATED, UNCERTAIN_CALCULATED]


async def test_processed_configuration_from_the_node_or_the_request(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    # rows 4..7: 2 of 4 Good. The node's configuration (PercentDataGood 100): Uncertain
    window = (dt(T0 + 4 * STEP), dt(T0 + 8 * STEP), 4 * STEP * 1000, AGG.AggregateFunction_Average)
    (r,) = await setup.history(processed(*window), [power])
    assert statuses(r) == [UNCERTAIN_CALCULATED]
    half = ua.AggregateConfiguration(UseServerCapabilitiesDefaults=False, TreatUncertainAsBad=True,
                                     PercentDataBad=100, PercentDataGood=50, UseSlopedExtrapolation=False)
    (r,) = await setup.history(processed(*window, config=half), [power])
    assert statuses(r) == [GOOD_CALCULATED] and values(r) == [5.5]
    half.UseServerCapabilitiesDefaults = True  # the request's values are ignored
    (r,) = await setup.history(processed(*window, config=half), [power])
    assert statuses(r) == [UNCERTAIN_CALCULATED]
    rejected = ua.AggregateConfiguration(UseServerCapabilitiesDefaults=False, PercentDataBad=101, PercentDataGood=100)
    (r,) = await setup.history(processed(*window, config=rejected), [power])
    assert r.StatusCode.value == ua.StatusCodes.BadAggregateConfigurationRejected


async def test_processed_errors(setup: Setup):
    power, energy = setup.q("boiler", "active_power_total"), setup.q("boiler", "active_energy_import_t1")
    span = (dt(T0), dt(T0 + 8 * STEP))
    mismatch = await setup.history(processed(*span, 900_000, AGG.AggregateFunction_Average), [power, energy])
    assert [r.StatusCode.value for r in mismatch] == [ua.StatusCodes.BadAggregateListMismatch] * 2
    unknown, fine, plain = await setup.history(
        processed(*span, 900_000, AGG.Server, AGG.AggregateFunction_Average, AGG.AggregateFunction_Average),
        [power, power, setup.q("boiler", "power_fail_count")])
    assert unknown.StatusCode.value == ua.StatusCodes.BadAggregateNotSupported
    assert fine.StatusCode.is_good() and len(values(fine)) == 8
    assert plain.StatusCode.value == ua.StatusCodes.BadHistoryOperationUnsupported
    (r,) = await setup.history(processed(ua.get_win_epoch(), span[1], 900_000, AGG.AggregateFunction_Average), [power])
    assert r.StatusCode.value == ua.StatusCodes.BadInvalidTimestampArgument
    for d in (processed(span[0], span[0], 900_000, AGG.AggregateFunction_Average),
              processed(*span, -1, AGG.AggregateFunction_Average)):
        (r,) = await setup.history(d, [power])
        assert r.StatusCode.value == ua.StatusCodes.BadAggregateInvalidInputs


async def test_processed_continuation_points(setup: Setup):
    power = setup.q("boiler", "active_power_total")
    d = processed(dt(T0), dt(T0 + 8 * STEP), STEP * 1000, AGG.AggregateFunction_Average)
    (whole,) = await setup.history(d, [power])
    assert whole.ContinuationPoint is None and len(values(whole)) == 8
    service = setup.gateway.history_service
    service.max_values = 3
    try:
        got, point, pages = [], None, 0
        while True:
            (r,) = await setup.history(d, [power], [point])
            assert r.StatusCode.is_good()
            got += r.HistoryData.DataValues
            pages += 1
            point = r.ContinuationPoint
            if point is None:
                break
        (again,) = await setup.history(d, [power], [r.ContinuationPoint or b"x" * 42])
    finally:
        service.max_values = MAX_RETURN
    assert pages == 3 and got == whole.HistoryData.DataValues
    assert again.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid


async def test_aggregate_functions_folders_list_what_is_served(setup: Setup):
    from emu_opcua.history.aggregates import NODE_IDS

    expected = {ua.NodeId(i) for i in NODE_IDS.values()}
    assert len(expected) == 37

    async def listed(folder) -> set[ua.NodeId]:
        assert (await folder.read_browse_name()) == ua.QualifiedName("AggregateFunctions", 0)
        children = await folder.get_referenced_nodes(ua.ObjectIds.HasComponent, ua.BrowseDirection.Forward)
        for child in children:
            assert (await child.read_type_definition()) == ua.NodeId(ua.ObjectIds.AggregateFunctionType)
        return {c.nodeid for c in children}

    client = setup.client
    for folder in (ua.ObjectIds.Server_ServerCapabilities_AggregateFunctions,
                   ua.ObjectIds.HistoryServerCapabilities_AggregateFunctions):
        assert await listed(client.get_node(folder)) == expected
    for meter in ("boiler", "hall"):  # hall: a meter copied from the first one's nodes
        for code in ("active_power_total", "active_energy_import_t1"):
            (config,) = await client.get_node(setup.q(meter, code)).get_referenced_nodes(
                ua.ObjectIds.HasHistoricalConfiguration)
            assert await listed(await config.get_child("0:AggregateFunctions")) == expected


async def test_processed_consumption_is_never_differenced_across_a_meter_replacement(setup: Setup):
    energy = setup.q("hall", "active_energy_import_t1")
    day = 86_400
    # the days between the old meter's last row and the new one's first: no consumption
    # (a used meter's 50 kWh are not consumed energy), Bad with the Calculated bit
    (r,) = await setup.history(processed(dt(T0 + day), dt(T0 + 3 * day), day * 1000,
                                         AGG.AggregateFunction_DeltaBounds), [energy])
    assert values(r) == [None, None]
    assert statuses(r) == [ua.StatusCodes.Bad | 0x401] * 2
    # the new meter's own consumption is computed as usual
    (r,) = await setup.history(processed(dt(T0 + 3 * day), dt(T0 + 3 * day + 4 * STEP), 0,
                                         AGG.AggregateFunction_DeltaBounds), [energy])
    assert values(r) == [4.0] and statuses(r) == [GOOD_CALCULATED]
    # power is not a counter: its Average across the replacement is the rows' mean
    (r,) = await setup.history(processed(dt(T0 + day), dt(T0 + 3 * day + 2 * STEP), 0,
                                         AGG.AggregateFunction_Average), [setup.q("hall", "active_power_total")])
    assert values(r) == [pytest.approx((3 * 0.001 + 2 * 2.0) / 5)]
