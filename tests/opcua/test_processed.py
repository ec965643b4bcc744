"""End to end: a simulated meter's datalog, synced into the gateway's store, read back
processed over OPC UA (asyncua's client and node-opcua's): daily consumption and hourly
load against what the meter's own CSV says, computed here from its columns."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from asyncua import Client, ua

from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.opcua.config import HistoryConfig, MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT = 60.0
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
T1_WH, T2_WH, POWER_W = 5, 6, 13  # CSV columns: active energy import T1, T2 [Wh], active power total [W]
DELTA_BOUNDS = ua.NodeId(ua.ObjectIds.AggregateFunction_DeltaBounds)
DELTA = ua.NodeId(ua.ObjectIds.AggregateFunction_Delta)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Setup:
    def __init__(self, gateway, client, rows, endpoint) -> None:
        self.gateway, self.client, self.rows, self.endpoint = gateway, client, rows, endpoint

    def node(self, code: str) -> ua.NodeId:
        return self.gateway.model.quantity("boiler", code)

    async def processed(self, start, end, interval: timedelta, aggregate, codes) -> list[ua.HistoryReadResult]:
        params = ua.HistoryReadParameters()
        params.HistoryReadDetails = ua.ReadProcessedDetails(
            StartTime=start, EndTime=end, ProcessingInterval=interval.total_seconds() * 1000,
            AggregateType=[aggregate] * len(codes))
        params.TimestampsToReturn = ua.TimestampsToReturn.Source
        params.ReleaseContinuationPoints = False  # asyncua's default is True
        params.NodesToRead = [ua.HistoryReadValueId(NodeId=self.node(c)) for c in codes]
        return await self.client.uaclient.history_read(params)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("processed")
    async with Fleet(FleetConfig(meters=1, history_days=3, control_port=None)) as fleet:
        await fleet.wait_warm()
        port = fleet.ports()[0]
        async with MeterHttpClient(port.host, port.http_port) as http:
            rows = sorted(await http.datalog(last=3000), key=lambda r: (r.timestamp, r.index))
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp / "pki", data_dir=tmp / "data",
            application_uri="urn:test:emu-opcua", security_policies=("None",),
            history=HistoryConfig(enabled=True, interval=1.0),
            meters=(MeterConfig(name="boiler", host=port.host, http_port=port.http_port,
                                modbus_port=port.modbus_port),))
        async with GatewayServer(config) as gateway:
            store = gateway.history.store
            deadline = time.monotonic() + WAIT
            while store.row_count("boiler") < len(rows):
                if time.monotonic() > deadline:
                    pytest.fail(f"the store has {store.row_count('boiler')} rows, the meter {len(rows)}")
                await asyncio.sleep(0.2)
            async with Client(config.endpoint, timeout=10) as client:
                yield Setup(gateway, client, rows, config.endpoint)


def day_starts(rows, offset: timedelta = timedelta(0)) -> list[datetime]:
    """Midnights (shifted by ``offset``: a local midnight in UTC) with a row at each, from
    the first after the first row to the last one."""
    at = {r.timestamp for r in rows}
    first = rows[0].timestamp.replace(hour=0, minute=0, second=0, microsecond=0) + offset
    days = []
    t = first
    while t <= rows[-1].timestamp:
        if t in at:
            days.append(t)
        t += DAY
    return days


def row_at(rows, t):
    (row,) = [r for r in rows if r.timestamp == t]
    return row


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(hours=-1)], ids=["utc", "local-midnight-utc+1"])
async def test_daily_consumption_is_the_counter_difference_at_consecutive_midnights(setup: Setup, offset):
    rows = setup.rows
    days = day_starts(rows, offset)
    assert len(days) >= 3, "three days of history, rows at every quarter hour"
    start, end = days[0], days[-1]
    t1, total = await setup.processed(start, end, DAY, DELTA_BOUNDS,
                                      ["active_energy_import_t1", "active_energy_import_total"])
    want_t1 = [(row_at(rows, b).column(T1_WH) - row_at(rows, a).column(T1_WH)) / 1000 for a, b in zip(days, days[1:])]
    want_total = [(row_at(rows, b).column(T1_WH) + row_at(rows, b).column(T2_WH)
                   - row_at(rows, a).column(T1_WH) - row_at(rows, a).column(T2_WH)) / 1000
                  for a, b in zip(days, days[1:])]
    for result, want in ((t1, want_t1), (total, want_total)):
        dvs = result.HistoryData.DataValues
        assert [dv.SourceTimestamp for dv in dvs] == days[:-1]  # aligned to the requested start
        assert [dv.Value.Value for dv in dvs] == pytest.approx(want, rel=1e-12)
        assert all(dv.StatusCode.value == 0x401 for dv in dvs)  # Good, Calculated
    assert sum(want_total) > 0


async def test_daily_delta_is_the_days_last_minus_first_row(setup: Setup):
    def kwh(row) -> float:  # import T1 + T2 (at night only T2 counts)
        return (row.column(T1_WH) + row.column(T2_WH)) / 1000

    rows = setup.rows
    days = day_starts(rows)
    (result,) = await setup.processed(days[0], days[-1], DAY, DELTA, ["active_energy_import_total"])
    want = []
    for a, b in zip(days, days[1:]):
        inside = [r for r in rows if a <= r.timestamp < b]
        want.append((kwh(inside[-1]) - kwh(inside[0])))
    assert [dv.Value.Value for dv in result.HistoryData.DataValues] == pytest.approx(want, rel=1e-12)
    # Delta misses the last quarter hour of each day, DeltaBounds has it
    (bounds,) = await setup.processed(days[0], days[-1], DAY, DELTA_BOUNDS, ["active_energy_import_total"])
    missed = [kwh(row_at(rows, b)) - kwh([r for r in rows if r.timestamp < b][-1]) for b in days[1:]]
    assert [b.Value.Value - d.Value.Value for d, b in zip(result.HistoryData.DataValues,
                                                          bounds.HistoryData.DataValues)] == pytest.approx(missed)
    assert sum(missed) > 0


async def test_hourly_average_and_peak_of_power(setup: Setup):
    rows = setup.rows
    start = rows[0].timestamp.replace(minute=0, second=0) + HOUR
    end = start + 24 * HOUR
    average, peak = [
        r for agg in (ua.ObjectIds.AggregateFunction_Average, ua.ObjectIds.AggregateFunction_Maximum)
        for r in await setup.processed(start, end, HOUR, ua.NodeId(agg), ["active_power_total"])]
    want_avg, want_max = [], []
    t = start
    while t < end:
        watts = [r.column(POWER_W) / 1000 for r in rows if t <= r.timestamp < t + HOUR and r.status == 0]
        want_avg.append(sum(watts) / len(watts))
        want_max.append(max(watts))
        t += HOUR
    assert [dv.Value.Value for dv in average.HistoryData.DataValues] == pytest.approx(want_avg, rel=1e-12)
    assert [dv.Value.Value for dv in peak.HistoryData.DataValues] == pytest.approx(want_max, rel=1e-12)


async def test_node_opcua_reads_daily_consumption(setup: Setup):
    from tests.opcua.test_history import node_history

    rows = setup.rows
    days = day_starts(rows)
    request = {"mode": "processed", "start": int(days[0].timestamp() * 1000),
               "end": int(days[-1].timestamp() * 1000), "interval": 86_400_000, "aggregate": "i=11507",
               "nodeIds": [setup.node("active_power_total").to_string()]}
    got = await node_history(setup, setup.node("active_energy_import_t1"), request)
    want = [(row_at(rows, b).column(T1_WH) - row_at(rows, a).column(T1_WH)) / 1000 for a, b in zip(days, days[1:])]
    assert [v["t"] for v in got["values"]] == [int(d.timestamp() * 1000) for d in days[:-1]]
    assert [v["v"] for v in got["values"]] == pytest.approx(want, rel=1e-12)
    assert {v["s"] for v in got["values"]} == {0x401}
    # the second node of the same request (DeltaBounds of power: as computed, just there)
    assert got["others"][0]["count"] == len(days) - 1
    assert datetime.fromtimestamp(got["others"][0]["first"]["t"] / 1000, UTC) == days[0]
