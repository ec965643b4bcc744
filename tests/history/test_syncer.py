"""Datalog sync against simulated meters on real sockets into a real SQLite store."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sim_helpers import control_url

from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.errors import MeterUnreachable
from emu_opcua.history.sqlite import row_tuple
from emu_opcua.history.sync import SyncPolicy
from emu_opcua.history.syncer import MeterSyncer, SyncSettings
from emu_opcua.meter.datalog import DatalogStatus

IV = 900


async def event(fleet, name, n=0, **params):
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.post(f"{control_url(fleet)}/{n}/events/{name}", params=params)
    assert r.status_code == 200, r.text


def held(meter):
    """Every row the simulated meter holds now, as the store packs them."""
    p = meter.advance()
    return [row_tuple(r) for r in meter.datalog_rows(range(p.first_index, p.last_index + 1))]


def stored(writer, name, series=None):
    rows = writer.store.read(name, 0, 1 << 40)
    return [(r.timestamp, r.index, r.status, *r.raw) for r in sorted(rows, key=lambda r: (r.series_id, r.index))
            if series is None or r.series_id == series.id]


async def settle(syncer, limit=500):
    """Run sync steps until it waits for the next interval (retrying as run() does)."""
    attempt = 1
    for _ in range(limit):
        step = await syncer.step(attempt)
        if step.retry:
            attempt += 1
            continue
        attempt = 1
        if not step.more:
            return step
    raise AssertionError("sync did not settle")


@pytest.fixture
async def open_syncer(writer):
    clients = []

    async def make(meter, *, page=3000, pages=None, name="m", backfill_rows=None):
        http = MeterHttpClient(meter.host, meter.http_port)
        clients.append(http)
        syncer = MeterSyncer(name, http, writer, pages or asyncio.Semaphore(4),
                             SyncSettings(SyncPolicy(page=page, backfill_rows=backfill_rows), interval=0.01))
        await syncer._load()
        return syncer

    yield make
    for c in clients:
        await c.aclose()


async def test_backfill_then_incremental_rows_equal_what_the_meter_serves(make_fleet, monotonic, writer,
                                                                          open_syncer):
    fleet = await make_fleet(history_days=3, logbook_capacity=2)  # full after the first change: 0x80
    meter = fleet.meters[0]
    for name, params in [("ct_ratio", {"primary": 200, "secondary": 5}),
                         ("vt_ratio", {"primary": 400, "secondary": 100}),
                         ("pulse", {"value": 2000, "length_ms": 50}), ("power_outage", {})]:
        await event(fleet, name, **params)
        monotonic.advance(IV)
    syncer = await open_syncer(meter, page=100)
    await settle(syncer)
    expected = held(meter)
    assert len(expected) > 250
    assert stored(writer, "m") == expected
    statuses = {r[2] for r in expected}
    # CT (row 1: commissioning), then with the logbook full (0x80): VT, pulse, outage
    assert {0x02, 0x80 | 0x02, 0x80 | 0x04, 0x80 | 0x18, 0x80 | 0x20} <= statuses
    d = syncer.diagnostics
    assert d.state == "current" and d.progress == 1.0 and d.rows_stored == len(expected)
    assert d.oldest_row.timestamp() == expected[0][0] and d.newest_row.timestamp() == expected[-1][0]
    monotonic.advance(5 * IV)
    await settle(syncer)
    assert stored(writer, "m") == held(meter) and len(held(meter)) == len(expected) + 5


async def test_a_restarted_syncer_resumes_without_gap_or_duplicate(make_fleet, monotonic, writer, open_syncer):
    fleet = await make_fleet()
    meter = fleet.meters[0]
    first = await open_syncer(meter, page=40)
    for _ in range(3):  # part of the backfill, then the gateway goes away
        await first.step()
    assert 0 < writer.store.row_count("m") < len(held(meter))
    monotonic.advance(30 * IV)
    second = await open_syncer(meter, page=40)
    assert second.state == first.state
    await settle(second)
    assert stored(writer, "m") == held(meter)
    assert second.state.lost == 0


async def test_ring_wrap_while_away_stores_what_is_held_and_counts_the_lost(make_fleet, monotonic, writer,
                                                                            open_syncer):
    fleet = await make_fleet(datalog_capacity=100)
    meter = fleet.meters[0]
    syncer = await open_syncer(meter, page=30)
    await settle(syncer)
    before = held(meter)
    assert len(before) == 100
    monotonic.advance(60 * IV)  # within the ring: nothing lost
    await settle(syncer)
    assert syncer.state.lost == 0
    monotonic.advance(150 * IV)  # longer than the ring: 50 rows gone before we asked
    await settle(syncer)
    got = stored(writer, "m")
    assert got[:100] == before
    assert got[-100:] == held(meter)
    assert len(got) == 100 + 60 + 100 and syncer.state.lost == 50
    assert syncer.diagnostics.lost == 50


async def test_index_reset_starts_a_new_series(make_fleet, monotonic, writer, open_syncer):
    fleet = await make_fleet(history_days=1)
    meter = fleet.meters[0]
    syncer = await open_syncer(meter)
    await settle(syncer)
    old_rows = held(meter)
    await event(fleet, "index_reset")
    monotonic.advance(3 * IV)
    await settle(syncer)
    old, new = writer.store.series("m")
    assert old.serial == new.serial == meter.serial
    assert stored(writer, "m", old) == old_rows
    assert stored(writer, "m", new) == held(meter) and [r[1] for r in held(meter)] == [1, 2, 3]


async def test_index_reset_found_after_the_log_grew_past_the_stored_index(make_fleet, monotonic, writer,
                                                                         open_syncer):
    fleet = await make_fleet(history_days=0.1)  # 9 rows, then the reset and 12 new rows
    meter = fleet.meters[0]
    syncer = await open_syncer(meter)
    await settle(syncer)
    old_rows = held(meter)
    await event(fleet, "index_reset")
    monotonic.advance((len(old_rows) + 3) * IV)
    await settle(syncer)
    old, new = writer.store.series("m")
    assert stored(writer, "m", old) == old_rows and stored(writer, "m", new) == held(meter)


async def test_a_replaced_meter_is_a_new_series_never_mixed_with_the_old(make_fleet, monotonic, writer,
                                                                        open_syncer):
    fleet = await make_fleet(history_days=1)
    meter = fleet.meters[0]
    syncer = await open_syncer(meter)
    await settle(syncer)
    old_rows, old_serial = held(meter), meter.serial
    await event(fleet, "replace_meter")
    monotonic.advance(4 * IV)
    await settle(syncer)
    old, new = writer.store.series("m")
    assert (old.serial, new.serial) == (old_serial, meter.serial) and old_serial != meter.serial
    assert stored(writer, "m", old) == old_rows
    assert stored(writer, "m", new) == held(meter)
    assert syncer.diagnostics.serial == meter.serial


async def test_clock_back_and_forth(make_fleet, monotonic, writer, open_syncer):
    fleet = await make_fleet(history_days=0.5)
    meter = fleet.meters[0]
    syncer = await open_syncer(meter)
    await settle(syncer)
    await event(fleet, "clock_change", offset=-3 * 3600)
    monotonic.advance(8 * IV)
    await settle(syncer)
    await event(fleet, "clock_change", offset=5 * 3600)
    monotonic.advance(8 * IV)
    await settle(syncer)
    expected = held(meter)
    assert stored(writer, "m") == expected
    stamps = [r[0] for r in expected]
    assert len(set(stamps)) < len(stamps)  # the clock set back repeated timestamps
    assert sum(r[2] & DatalogStatus.CLOCK_CHANGED for r in expected) == 2


async def test_power_outage_fails_then_resumes_with_the_outage_row(make_fleet, monotonic, writer, open_syncer):
    fleet = await make_fleet(history_days=0.5)
    meter = fleet.meters[0]
    syncer = await open_syncer(meter)
    await settle(syncer)
    await event(fleet, "power_outage", seconds=2 * 3600)
    with pytest.raises(MeterUnreachable):
        await syncer.step()
    monotonic.advance(2 * 3600 + 3 * IV)
    for _ in range(100):  # the simulator notices the power is back
        await asyncio.sleep(0.05)
        try:
            await settle(syncer)
            break
        except MeterUnreachable:
            continue
    expected = held(meter)
    assert stored(writer, "m") == expected
    assert any(r[2] & DatalogStatus.POWER_OUTAGE for r in expected)


async def test_a_truncated_page_is_never_stored_and_is_fetched_whole_later(make_fleet, monotonic, writer,
                                                                          open_syncer):
    fleet = await make_fleet(history_days=1)
    meter = fleet.meters[0]
    syncer = await open_syncer(meter, page=50)
    await syncer.step()  # the newest row: first contact
    await meter.truncated_csv(True)
    for attempt in range(1, 5):
        step = await syncer.step(attempt)
        assert step.retry and "cut off" in step.error
    assert writer.store.row_count("m") == 0
    await meter.truncated_csv(False)
    await settle(syncer)
    assert stored(writer, "m") == held(meter)


async def test_backfill_is_throttled_fleet_wide(make_fleet, writer, open_syncer):
    fleet = await make_fleet(meters=4, history_days=2)

    class CountingSemaphore(asyncio.Semaphore):
        held = most = 0

        async def __aenter__(self):
            await super().__aenter__()
            CountingSemaphore.held += 1
            CountingSemaphore.most = max(CountingSemaphore.most, CountingSemaphore.held)

        async def __aexit__(self, *exc):
            CountingSemaphore.held -= 1
            await asyncio.sleep(0)
            return await super().__aexit__(*exc)

    pages = CountingSemaphore(2)
    syncers = [await open_syncer(m, page=20, pages=pages, name=f"m{i}") for i, m in enumerate(fleet.meters)]
    await asyncio.gather(*(settle(s) for s in syncers))
    assert CountingSemaphore.most == 2
    for i, m in enumerate(fleet.meters):
        assert stored(writer, f"m{i}") == held(m)


async def test_run_reports_failing_and_recovers(make_fleet, monotonic, writer):
    fleet = await make_fleet(history_days=0.5)
    meter = fleet.meters[0]
    reports = []

    async def report(d):
        reports.append(d)

    async with MeterHttpClient(meter.host, meter.http_port) as http:
        await meter.http_errors(True)
        syncer = MeterSyncer("m", http, writer, asyncio.Semaphore(1), SyncSettings(interval=0.01), report=report)
        syncer._backoff = type(syncer._backoff)(0.01, 0.02)
        task = asyncio.create_task(syncer.run())
        try:
            for _ in range(200):
                await asyncio.sleep(0.01)
                if reports and reports[-1].state == "failing":
                    break
            assert "HTTP 500" in reports[-1].last_error
            await meter.http_errors(False)
            await asyncio.wait_for(syncer.current.wait(), 10)
        finally:
            task.cancel()
    assert stored(writer, "m") == held(meter)
    assert reports[-1].state == "current" and reports[-1].last_error == ""


async def test_catching_up_after_a_restart_is_throttled_even_when_the_state_said_current(
        make_fleet, monotonic, writer, open_syncer):
    fleet = await make_fleet(history_days=0.5)
    meter = fleet.meters[0]
    await settle(await open_syncer(meter))
    assert writer.store.sync_state("m")["current"]
    monotonic.advance(200 * IV)  # the gateway was away
    pages = asyncio.Semaphore(1)
    syncer = await open_syncer(meter, page=50, pages=pages)
    await pages.acquire()  # every backfill slot of the fleet is taken
    task = asyncio.create_task(settle(syncer))
    done, _ = await asyncio.wait({task}, timeout=0.5)
    assert not done and writer.store.row_count("m") == 48
    pages.release()
    await asyncio.wait_for(task, 30)
    assert stored(writer, "m") == held(meter)
    # caught up: checks for new rows no longer wait for a backfill slot
    await pages.acquire()
    monotonic.advance(IV)
    await asyncio.wait_for(settle(syncer), 10)
    assert stored(writer, "m") == held(meter)


async def test_a_current_meter_is_synced_without_reference_cycles(make_fleet, monotonic, writer, open_syncer):
    """Performance contract (ARCHITECTURE.md): nothing on the polling path makes garbage
    for the cycle collector; a current meter's sync step is on it once per interval."""
    import gc

    fleet = await make_fleet(history_days=0.5)
    syncer = await open_syncer(fleet.meters[0])
    await settle(syncer)
    for _ in range(5):
        await syncer.step()
    gc.collect()
    gc.disable()
    try:
        for i in range(100):
            if i % 25 == 0:
                monotonic.advance(IV)  # now and then a new row
            await syncer.step()
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert stored(writer, "m") == held(fleet.meters[0])
