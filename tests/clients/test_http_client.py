"""MeterHttpClient against the project's simulator over real sockets on 127.0.0.1."""

from __future__ import annotations

import socket

import httpx
import pytest

from emu_opcua.clients.http import DATALOG_PAGE, LOGBOOK_PAGE, MeterHttpClient
from emu_opcua.errors import (
    AuthenticationFailed,
    HttpStatusError,
    MeterTimeout,
    MeterUnreachable,
    ParseError,
    TruncatedDataError,
)
from emu_opcua.meter.catalogue import CATALOGUE
from emu_opcua.meter.meterdata import format_meterdata, parse_meterdata

HOST = "127.0.0.1"


def client_for(meter, **kwargs) -> MeterHttpClient:
    return MeterHttpClient(HOST, meter.http_port, **kwargs)


def indices(rows) -> list[int]:
    return [r.index for r in rows]


# --- documents ---------------------------------------------------------------------------
async def test_status_describes_the_meter(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    async with client_for(meter) as http:
        status = await http.status()
    assert status.serial == meter.serial
    assert status.mac == meter.mac
    assert status.modbus_enabled is True
    assert status.modbus_port == meter.modbus_port
    assert status == meter.status()


async def test_meterdata_carries_the_live_values_and_extremes(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    # the clock stands still: this is exactly what the meter sends
    expected = parse_meterdata(format_meterdata(meter.meterdata()))
    async with client_for(meter) as http:
        data = await http.meterdata()
    assert data.meter_time == expected.meter_time
    # meterdata.json carries exactly the catalogue's meterdata quantities
    assert set(data.values) == {q.code for q in CATALOGUE if q.meterdata}
    assert data == expected
    assert data.extremes is not None and len(data.extremes) > 0


# --- datalog paging ------------------------------------------------------------------------
@pytest.fixture
async def long_history(start_fleet):
    """A meter with 80 days of quarter-hour rows: 7680, more than two pages."""
    fleet = await start_fleet(history_days=80)
    meter = fleet.meters[0]
    assert meter.physics.last_index > 2 * DATALOG_PAGE + 1000
    return meter


async def test_datalog_last_n_is_newest_first(long_history):
    meter = long_history
    newest = meter.physics.last_index
    async with client_for(meter) as http:
        rows = await http.datalog(last=5)
    assert indices(rows) == list(range(newest, newest - 5, -1))
    assert list(rows) == meter.datalog_rows(range(newest, newest - 5, -1))


async def test_datalog_ascending_range_over_several_pages(long_history):
    meter = long_history
    async with client_for(meter) as http:
        rows = await http.datalog(from_index=1, to_index=7000)
    assert indices(rows) == list(range(1, 7001))  # contiguous, ascending, no duplicates
    assert list(rows) == meter.datalog_rows(range(1, 7001))


async def test_datalog_descending_range_over_several_pages(long_history):
    meter = long_history
    async with client_for(meter) as http:
        rows = await http.datalog(from_index=7000, to_index=1)
    assert indices(rows) == list(range(7000, 0, -1))
    assert list(rows) == meter.datalog_rows(range(7000, 0, -1))


@pytest.mark.parametrize("first,last", [(2999, 3001), (3000, 6001), (6001, 3000), (10, 3009), (10, 3010)])
async def test_datalog_page_edges(long_history, first, last):
    async with client_for(long_history) as http:
        rows = await http.datalog(from_index=first, to_index=last)
    step = 1 if first <= last else -1
    assert indices(rows) == list(range(first, last + step, step))


async def test_datalog_last_more_than_a_page(long_history):
    meter = long_history
    newest = meter.physics.last_index
    async with client_for(meter) as http:
        rows = await http.datalog(last=7000)
    assert indices(rows) == list(range(newest, newest - 7000, -1))


async def test_datalog_last_more_than_the_meter_holds(long_history):
    meter = long_history
    newest = meter.physics.last_index
    async with client_for(meter) as http:
        rows = await http.datalog(last=newest + 500)
    assert indices(rows) == list(range(newest, 0, -1))


async def test_datalog_range_past_the_newest_row_is_clipped(long_history):
    meter = long_history
    newest = meter.physics.last_index
    async with client_for(meter) as http:
        rows = await http.datalog(from_index=newest - 10, to_index=newest + 100_000)
        beyond = await http.datalog(from_index=newest + 1, to_index=newest + 9000)
    assert indices(rows) == list(range(newest - 10, newest + 1))
    assert beyond == ()


async def test_datalog_default_is_the_newest_page(long_history):
    meter = long_history
    newest = meter.physics.last_index
    async with client_for(meter) as http:
        rows = await http.datalog()
    assert indices(rows) == list(range(newest, newest - DATALOG_PAGE, -1))


async def test_datalog_since_fetches_only_new_rows_ascending(long_history, clock):
    meter = long_history
    newest = meter.physics.last_index
    async with client_for(meter) as http:
        assert await http.newest_datalog_index() == newest
        backlog = await http.datalog_since(500)
        assert indices(backlog) == list(range(501, newest + 1))
        assert await http.datalog_since(newest) == ()
        clock.advance(3 * 900)  # three more quarter hours on the meter
        fresh = await http.datalog_since(newest)
    assert indices(fresh) == [newest + 1, newest + 2, newest + 3]
    assert list(fresh) == meter.datalog_rows(range(newest + 1, newest + 4))


@pytest.mark.parametrize("kwargs", [
    {"last": 0}, {"last": 5, "from_index": 1, "to_index": 2}, {"from_index": 1}, {"to_index": 3},
])
async def test_datalog_rejects_contradictory_arguments(start_fleet, kwargs):
    fleet = await start_fleet()
    async with client_for(fleet.meters[0]) as http:
        with pytest.raises(ValueError):
            await http.datalog(**kwargs)


# --- logbook paging -------------------------------------------------------------------------
async def test_logbook_pages_beyond_2048_entries(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    for i in range(LOGBOOK_PAGE + 100):
        meter.change_pulse(1000 + i % 2)  # every change is a logbook entry
    total = meter.physics.logbook_count
    assert total > LOGBOOK_PAGE + 1
    async with client_for(meter) as http:
        ascending = await http.logbook(from_index=1, to_index=total)
        descending = await http.logbook(last=total)
        since = await http.logbook_since(total - 3)
    assert indices(ascending) == list(range(1, total + 1))
    assert list(ascending) == meter.logbook_entries(range(1, total + 1))
    assert indices(descending) == list(range(total, 0, -1))
    assert indices(since) == [total - 2, total - 1, total]


async def test_logbook_missing_on_meters_without_it(start_fleet):
    fleet = await start_fleet(logbook=False)
    async with client_for(fleet.meters[0]) as http:
        with pytest.raises(HttpStatusError) as info:
            await http.logbook(last=1)
    assert info.value.status == 404


# --- authentication ------------------------------------------------------------------------
async def test_right_password_is_accepted(start_fleet):
    fleet = await start_fleet(password="s3cret")
    async with client_for(fleet.meters[0], password="s3cret") as http:
        assert (await http.status()).serial == fleet.meters[0].serial
        assert len(await http.datalog(last=2)) == 2


async def test_missing_password(start_fleet):
    fleet = await start_fleet(password="s3cret")
    async with client_for(fleet.meters[0]) as http:
        with pytest.raises(AuthenticationFailed) as info:
            await http.status()
    assert "none given" in str(info.value)


async def test_wrong_password_is_not_echoed(start_fleet):
    fleet = await start_fleet(password="s3cret")
    async with client_for(fleet.meters[0], password="guessed-wrong") as http:
        with pytest.raises(AuthenticationFailed) as info:
            await http.meterdata()
    message = str(info.value)
    assert "wrong password" in message
    assert "guessed-wrong" not in message and "s3cret" not in message


async def test_meter_demanding_another_password(start_fleet):
    fleet = await start_fleet(password="s3cret")
    meter = fleet.meters[0]
    await meter.demand_wrong_password("changed-on-site")
    async with client_for(meter, password="s3cret") as http:
        with pytest.raises(AuthenticationFailed):
            await http.datalog(last=1)


# --- transport failures ---------------------------------------------------------------------
def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def test_nothing_listening_is_unreachable():
    async with MeterHttpClient(HOST, _closed_port(), timeout=2.0) as http:
        with pytest.raises(MeterUnreachable):
            await http.status()


async def test_meter_refusing_connections_is_unreachable(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    async with client_for(meter) as http:
        assert (await http.status()).serial == meter.serial  # a kept-alive connection now
        await meter.refuse_connections()
        with pytest.raises(MeterUnreachable):
            await http.status()
        await meter.refuse_connections(False)
        assert (await http.status()).serial == meter.serial  # and back


async def test_slow_meter_times_out(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    await meter.slow_responses(30.0)
    async with client_for(meter, timeout=0.2) as http:
        with pytest.raises(MeterTimeout):
            await http.meterdata()
    await meter.clear_faults()


async def test_http_500(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    await meter.http_errors()
    async with client_for(meter) as http:
        with pytest.raises(HttpStatusError) as info:
            await http.status()
    assert info.value.status == 500
    assert "/status.json" in str(info.value)


# --- what the meter sent ---------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("status", "/status.json"), ("meterdata", "/meterdata.json")])
async def test_malformed_json_is_a_parse_error_naming_the_url(start_fleet, method, path):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    await meter.malformed_json()
    async with client_for(meter) as http:
        with pytest.raises(ParseError) as info:
            await getattr(http, method)()
    assert f"http://{HOST}:{meter.http_port}{path}" in str(info.value)
    assert info.value.where.startswith(f"http://{HOST}:{meter.http_port}{path}")


async def test_truncated_csv_strict(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    await meter.truncated_csv()
    async with client_for(meter) as http:
        with pytest.raises(TruncatedDataError) as info:
            await http.datalog(last=5)
    assert "/data/?last=5" in str(info.value)


async def test_truncated_csv_lenient_keeps_the_good_rows(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    newest = meter.physics.last_index
    await meter.truncated_csv()
    async with client_for(meter) as http:
        result = await http.datalog_lenient(last=5)
    # newest first: the cut last line is the oldest of the five
    assert indices(result.rows) == list(range(newest, newest - 4, -1))
    assert len(result.errors) == 1
    assert isinstance(result.errors[0], TruncatedDataError)
    assert "/data/?last=5" in str(result.errors[0])
    assert not result.ok


async def test_lenient_since_collects_errors_from_every_page(long_history):
    meter = long_history
    newest = meter.physics.last_index
    await meter.truncated_csv()
    async with client_for(meter) as http:
        result = await http.datalog_since_lenient(newest - 2 * DATALOG_PAGE - 10)
    # three pages (3000, 3000, 10 rows), each with its last row cut
    assert len(result.errors) == 3
    assert all(isinstance(e, TruncatedDataError) for e in result.errors)
    got = indices(result.rows)
    assert got == sorted(set(got))  # ascending, no duplicates
    assert len(got) == 2 * DATALOG_PAGE + 10 - 3


# --- sharing a transport -----------------------------------------------------------------------
async def test_clients_can_share_one_transport(start_fleet):
    fleet = await start_fleet(meters=2)
    a, b = fleet.meters
    async with httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=10)) as transport:
        async with MeterHttpClient(HOST, a.http_port, transport=transport) as ha:
            assert (await ha.status()).serial == a.serial
        # closing one client leaves the shared transport usable for the others
        async with MeterHttpClient(HOST, b.http_port, transport=transport) as hb:
            assert (await hb.status()).serial == b.serial
