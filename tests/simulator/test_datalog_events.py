"""The datalog as a real meter keeps it, over real sockets: clock changes, outages, status
bits, the ring, factory reset, meter replacement, accelerated time (history issue 8.6)."""

import asyncio
import socket

import httpx
import pytest

from emu_opcua.meter.datalog import CATALOGUE_HEADER, HEADER, DatalogStatus, format_datalog, parse_datalog
from emu_opcua.meter.status import parse_status
from emu_opcua.simulator.physics import MeterPhysics, PhysicsConfig
from sim_helpers import START, base_url, control_url

IV = 900


async def datalog(meter, **params):
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.get(base_url(meter) + "/data/", params=params)
    assert r.status_code == 200
    return parse_datalog(r.content)


async def event(fleet, name, n=0, **params):
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.post(f"{control_url(fleet)}/{n}/events/{name}", params=params)
    assert r.status_code == 200, r.text
    return r


def counters(row):
    return row.raw[:8]


def connect_refused(port) -> bool:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


async def test_clock_forward_moves_only_the_clock(make_fleet, monotonic):
    fleet = await make_fleet(meters=2)  # meter 1: the same load, clock left alone
    changed, same = fleet.meters
    same.physics = MeterPhysics(changed.serial, seed=changed.seed, start=START,
                                config=changed.physics.config)
    newest = changed.advance().last_index
    await event(fleet, "clock_change", offset=3600)
    monotonic.advance(4 * IV)
    rows = (await datalog(changed, **{"from": newest + 1}))
    ref = (await datalog(same, **{"from": newest + 1}))
    # no rows invented for the hour skipped, the index keeps rising by one
    assert [r.index for r in rows] == [r.index for r in ref] == list(range(newest + 1, newest + 5))
    # timestamps follow the clock, energy counts at the real rate
    assert [r.timestamp.timestamp() - 3600 for r in rows] == [r.timestamp.timestamp() for r in ref]
    assert [counters(r) for r in rows] == [counters(r) for r in ref]
    assert rows[0].status == DatalogStatus.CLOCK_CHANGED and rows[1].status == 0
    async with httpx.AsyncClient(timeout=5) as c:
        status = parse_status((await c.get(base_url(changed) + "/status.json")).content)
    assert status.meter_time.timestamp() == pytest.approx(START + 4 * IV + 3600, abs=1)


async def test_clock_back_repeats_timestamps_and_keeps_counting(fleet, monotonic):
    meter = fleet.meters[0]
    newest = meter.advance().last_index
    before = (await datalog(meter, last=1))[0]
    await event(fleet, "clock_change", offset=-3600)
    monotonic.advance(6 * IV)
    rows = await datalog(meter, **{"from": newest + 1})
    assert [r.index for r in rows] == list(range(newest + 1, newest + 7))
    stamps = [r.timestamp.timestamp() for r in rows]
    assert stamps[0] == before.timestamp.timestamp() - 3600 + IV  # the hour again
    assert all(b - a == IV for a, b in zip(stamps, stamps[1:]))
    energy = [sum(counters(r)[:4]) for r in (before, *rows)]
    assert all(b > a for a, b in zip(energy, energy[1:]))  # never frozen
    assert rows[0].status == DatalogStatus.CLOCK_CHANGED
    entry = meter.logbook_entries([meter.physics.logbook_count])[0]
    assert entry.timestamp_after.timestamp() - entry.timestamp.timestamp() == -3600
    assert entry.datalog_index == newest + 1


async def test_power_outage_takes_the_meter_off_the_network(make_fleet, monotonic):
    fleet = await make_fleet(meters=2)
    meter = fleet.meters[0]
    newest = meter.advance().last_index
    fails = meter.physics.power_fail_count
    energy = sum(meter.physics.counters_wh()[:4])
    await event(fleet, "power_outage", seconds=2 * 3600)
    assert connect_refused(meter.http_port) and connect_refused(meter.modbus_port)
    assert not connect_refused(fleet.meters[1].http_port)  # the other meter is up
    monotonic.advance(3600)
    await asyncio.sleep(0.3)
    assert connect_refused(meter.http_port) and connect_refused(meter.modbus_port)
    monotonic.advance(3600 + 2 * IV)
    for _ in range(100):
        if not connect_refused(meter.http_port):
            break
        await asyncio.sleep(0.05)
    assert not connect_refused(meter.http_port) and not connect_refused(meter.modbus_port)
    rows = await datalog(meter, **{"from": newest + 1})
    # 10:07:30 + 2 h = 12:07:30 back: rows for 12:15 and 12:30 only
    assert [r.index for r in rows] == [newest + 1, newest + 2]
    assert [r.timestamp.timestamp() for r in rows] == [START - 450 + 2 * 3600 + IV * k for k in (1, 2)]
    assert rows[0].status == DatalogStatus.POWER_OUTAGE and rows[1].status == 0
    assert meter.physics.power_fail_count == fails + 1
    # nothing was measured while the meter was off: up to the first row, the energy of
    # 7.5 minutes (about half of the next interval's), not of 2 h 7.5 min
    first, second = (sum(counters(r)[:4]) for r in rows)
    assert first - energy < 1.5 * (second - first)


async def test_clock_not_synchronised_after_a_start(make_fleet, monotonic):
    fleet = await make_fleet(sync_delay=1200)  # start 10:07:30, synchronised 10:27:30
    monotonic.advance(2 * IV)
    rows = await datalog(fleet.meters[0], last=3)
    assert [int(r.status) for r in rows] == [0, DatalogStatus.CLOCK_NOT_SYNCHRONISED, 0]
    assert [r.timestamp.timestamp() % 3600 for r in rows] == [1800, 900, 0]  # 10:30, 10:15, 10:00


async def test_clock_not_synchronised_after_an_outage(make_fleet, monotonic):
    fleet = await make_fleet(sync_delay=1500)
    await event(fleet, "power_outage", seconds=60)
    monotonic.advance(60 + 3 * IV)
    await asyncio.sleep(0.3)
    rows = await datalog(fleet.meters[0], last=3)
    s40, s20 = DatalogStatus.CLOCK_NOT_SYNCHRONISED, DatalogStatus.POWER_OUTAGE
    assert [int(r.status) for r in rows] == [0, s40, s40 | s20]  # 10:45, 10:30, 10:15


async def test_logbook_full(make_fleet, monotonic):
    fleet = await make_fleet(logbook_capacity=3)
    meter = fleet.meters[0]
    await event(fleet, "ct_ratio", primary=200, secondary=5)
    monotonic.advance(IV)
    assert (await datalog(meter, last=1))[0].status == DatalogStatus.CT_RATIO_CHANGED
    await event(fleet, "vt_ratio", primary=2, secondary=1)  # the third entry: full
    await event(fleet, "ct_ratio", primary=300, secondary=5)  # not logged
    monotonic.advance(2 * IV)
    rows = await datalog(meter, last=2)
    full = DatalogStatus.LOGBOOK_FULL
    assert rows[1].status == full | DatalogStatus.VT_RATIO_CHANGED | DatalogStatus.CT_RATIO_CHANGED
    assert rows[0].status == full
    assert meter.physics.logbook_count == 3


async def test_first_logbook_entry_marks_its_row(fleet):
    meter = fleet.meters[0]
    first = (await datalog(meter, **{"from": 1, "to": 2}))
    entry = meter.logbook_entries([1])[0]
    assert entry.datalog_index == 1 and (entry.ct_primary, entry.ct_primary_before) == (100, 5)
    assert first[0].status == DatalogStatus.CT_RATIO_CHANGED and first[1].status == 0


async def test_header_as_real_meters_send_it(fleet):
    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(base_url(fleet.meters[0]) + "/data/", params={"last": 2})).text
    header = text.splitlines()[0].split(";")
    assert header[4] == "Active Energy Import L123 T1 [Wh]"
    assert header[20:] == ["Current N [mA]", "Voltage L1-N [1/10 V]", "Voltage L2-N [1/10 V]",
                           "Voltage L3-N [1/10 V]", "Powerfactor L1 [1/100]", "Powerfactor L2 [1/100]",
                           "Powerfactor L3 [1/100]", "Frequency [1/10 Hz]"]
    rows = parse_datalog(text)
    # the parser reads by position: the catalogue's wording parses to the same rows
    old = ";".join(CATALOGUE_HEADER) + "\n" + format_datalog(rows, header=False)
    assert parse_datalog(old) == rows and tuple(header) == HEADER


async def test_ring_drops_the_oldest_rows(make_fleet):
    fleet = await make_fleet(datalog_capacity=100)  # 2 days = 192 rows made, 100 held
    meter = fleet.meters[0]
    assert [r.index for r in await datalog(meter)] == list(range(192, 92, -1))
    assert [r.index for r in await datalog(meter, last=500)] == list(range(192, 92, -1))
    assert [r.index for r in await datalog(meter, **{"from": 1, "to": 95})] == [93, 94, 95]
    assert await datalog(meter, **{"from": 1, "to": 92}) == ()
    assert [r.index for r in await datalog(meter, **{"from": 95, "to": 1})] == [95, 94, 93]
    assert [r.index for r in await datalog(meter, **{"from": 190})] == [190, 191, 192]


def test_ring_keeps_rising_over_many_wraps():
    p = MeterPhysics(22350000, seed=1, start=START,
                     config=PhysicsConfig(history_days=0, datalog_capacity=50))
    p.advance_to(START + 10 * 86400)  # 960 rows made
    assert (p.first_index, p.last_index, p.row_count) == (911, 960, 50)
    stamps = [p.row(i).timestamp for i in range(911, 961)]
    assert all(b - a == IV for a, b in zip(stamps, stamps[1:]))
    with pytest.raises(IndexError):
        p.row(910)


async def test_index_reset_clears_the_datalog(fleet, monotonic):
    meter = fleet.meters[0]
    energy = sum(meter.advance().counters_wh()[:4])
    await event(fleet, "index_reset")
    assert await datalog(meter) == ()
    monotonic.advance(2 * IV)
    rows = await datalog(meter)
    assert [r.index for r in rows] == [2, 1]
    assert sum(counters(rows[1])[:4]) > energy  # the metering went on
    assert [r.index for r in await datalog(meter, **{"from": 1, "to": 3000})] == [1, 2]


async def test_meter_replacement(fleet, monotonic):
    meter = fleet.meters[0]
    old_energy = sum(meter.advance().counters_wh()[:4])
    await event(fleet, "replace_meter", serial=22390001)
    async with httpx.AsyncClient(timeout=5) as c:
        status = parse_status((await c.get(base_url(meter) + "/status.json")).content)
        assert status.serial == "22390001"
        assert (await c.get(f"{control_url(fleet)}/22390001/info")).json()["datalog_rows"] == 0
    assert await datalog(meter) == ()
    monotonic.advance(IV)
    (row,) = await datalog(meter)
    assert row.index == 1 and row.serial == "22390001"
    assert 0 < sum(counters(row)[:4]) < old_energy
    assert meter.logbook_entries(range(1, meter.physics.logbook_count + 1)) == []


async def test_accelerated_time_writes_the_same_rows(make_fleet, monotonic):
    fleet = await make_fleet(speed=3600.0, history_days=0)
    meter = fleet.meters[0]
    for step in (0.3, 1.7, 0.01, 5.0, 2.99, 14.0):  # 24 s: a day, in uneven steps
        monotonic.advance(step)
        meter.advance()
    rows = await datalog(meter, **{"from": 1, "to": 3000})
    ref = MeterPhysics(meter.serial, seed=meter.seed, start=START, config=meter.physics.config)
    ref.advance_to(START + 86400)  # in one go
    assert len(rows) == ref.row_count == 96
    stamps = [r.timestamp.timestamp() for r in rows]
    assert stamps == [ref.row(i).timestamp for i in range(1, 97)]
    assert all(b - a == IV for a, b in zip(stamps, stamps[1:]))
    for r in rows:
        expected = ref.row(r.index)
        assert all(abs(x - y) <= 1 for x, y in zip(counters(r), expected.raw[:8]))
        assert r.raw[8:] == expected.raw[8:]


@pytest.mark.parametrize("days, rows", [(0, 0), (1095, 105_120)])
def test_history_days_from_none_to_three_years(days, rows):
    p = MeterPhysics(22350000, seed=1, start=START, config=PhysicsConfig(history_days=days))
    p.advance_to(START)
    assert (p.row_count, p.first_index, p.last_index) == (rows, 1, rows)
    if rows:
        assert p.row_time(rows) == START - 450 and p.row_time(1) == START - 450 - (rows - 1) * IV
