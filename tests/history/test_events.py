"""Meter events: derived from datalog rows and logbook entries, stored once, stable ids;
logbook sync against simulated meters on real sockets into a real SQLite store."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from tests.history.test_syncer import IV, event, settle

from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.history import logbook_sync
from emu_opcua.history.events import MeterEvent, datalog_events, event_id
from emu_opcua.history.sync import SyncPolicy
from emu_opcua.history.syncer import MeterSyncer, SyncSettings
from emu_opcua.meter.datalog import DatalogRow, DatalogStatus

S = DatalogStatus


def _row(index: int, status: int) -> DatalogRow:
    return DatalogRow(datetime.fromtimestamp(1_760_000_400 + 900 * index, timezone.utc), index, status,
                      "22000001", (0,) * 24)


def test_status_bits_marking_a_row_are_an_event_each_lasting_ones_where_they_come_on():
    rows = [_row(1, S.CLOCK_NOT_SYNCHRONISED), _row(2, S.CLOCK_NOT_SYNCHRONISED | S.POWER_OUTAGE),
            _row(3, 0), _row(4, S.POWER_OUTAGE | S.CLOCK_NOT_SYNCHRONISED), _row(5, S.CLOCK_CHANGED | S.LOGBOOK_FULL),
            _row(6, S.LOGBOOK_FULL | S.CT_RATIO_CHANGED)]
    got = [(e.kind, e.fields["DatalogIndex"]) for e in datalog_events("m", 7, rows, previous_status=0)]
    assert got == [("clock_not_synchronised", 1), ("power_outage", 2), ("power_outage", 4),
                   ("clock_not_synchronised", 4), ("clock_changed", 5), ("logbook_full", 5)]
    # the row before the page had the bit: no new event where the page starts
    assert [e.kind for e in datalog_events("m", 7, rows[:1], previous_status=S.CLOCK_NOT_SYNCHRONISED)] == []
    again = datalog_events("m", 7, rows, previous_status=0)
    assert [e.event_id for e in again] == [e.event_id for e in datalog_events("m", 7, rows, previous_status=0)]
    assert len({e.event_id for e in again}) == len(again)


def test_event_ids_name_meter_kind_and_key():
    assert event_id("a", "logbook", "1") != event_id("b", "logbook", "1") != event_id("a", "logbook", "2")
    e = MeterEvent("a", "logbook", 5, "1", "x")
    assert e.event_id == event_id("a", "logbook", "1") and len(e.event_id) == 16
    with pytest.raises(ValueError, match="unknown event kind"):
        MeterEvent("a", "nonsense", 5, "1", "x")


def test_store_keeps_each_event_once_and_reads_in_order_with_positions(tmp_path):
    from emu_opcua.history.sqlite import SqliteHistoryStore

    store = SqliteHistoryStore.in_directory(tmp_path)
    evs = [MeterEvent("m", "meter_lost", t, f"k{t}", "lost") for t in (30, 10, 20, 20)]
    evs[3] = MeterEvent("m", "meter_regained", 20, "k20", "back")
    assert store.add_events(evs) == evs
    assert store.add_events(evs[:2]) == []  # already there
    got = store.read_events("m", 0, 100)
    assert [(s.event.time, s.event.kind) for s in got] == [(10, "meter_lost"), (20, "meter_lost"),
                                                            (20, "meter_regained"), (30, "meter_lost")]
    page = store.read_events("m", 0, 100, after=got[1].position, limit=1)
    assert [s.event for s in page] == [got[2].event]
    assert [s.event.time for s in store.read_events("m", 0, 30, reverse=True)] == [20, 20, 10]
    assert store.read_events("m", 0, 100, reverse=True, after=got[1].position) == [got[0]]
    assert store.prune(20) == 0 and store.event_count("m") == 3
    store.close()


@pytest.fixture
async def open_syncer(writer):
    clients = []

    async def make(meter, *, name="m", seen=None):
        http = MeterHttpClient(meter.host, meter.http_port)
        clients.append(http)

        async def on_events(events):
            if seen is not None:
                seen.extend(events)

        syncer = MeterSyncer(name, http, writer, asyncio.Semaphore(4),
                             SyncSettings(SyncPolicy(), interval=0.01), on_events=on_events)
        await syncer._load()
        return syncer

    yield make
    for c in clients:
        await c.aclose()


async def sync_all(syncer):
    await settle(syncer)
    await syncer.sync_logbook()


def stored_events(writer, name="m"):
    return [s.event for s in writer.store.read_events(name, 0, 1 << 40)]


async def test_logbook_entries_become_events_with_settings_before_and_after(make_fleet, monotonic, writer,
                                                                            open_syncer):
    fleet = await make_fleet(history_days=1)
    meter = fleet.meters[0]
    seen: list[MeterEvent] = []
    syncer = await open_syncer(meter, seen=seen)
    await sync_all(syncer)
    backfilled = stored_events(writer)
    assert [e.kind for e in backfilled if e.kind == "logbook"] == ["logbook"]  # commissioning
    assert seen == []  # a backfill is history, not news
    await event(fleet, "ct_ratio", primary=400, secondary=5)
    monotonic.advance(2 * IV)
    await sync_all(syncer)
    logbook = [e for e in seen if e.kind == "logbook"]
    assert len(logbook) == 1
    e = logbook[0].fields
    entry = meter.physics.logbook_entry(2)
    assert (e["LogbookIndex"], e["CtPrimary"], e["CtSecondary"]) == (2, 400, 5)
    assert (e["CtPrimaryBefore"], e["CtSecondaryBefore"]) == (entry.ct[1], entry.ct[3]) != (400, 5)
    assert e["DatalogIndex"] == entry.datalog_index and e["MeterSerial"] == meter.serial
    assert e["AcActiveEnergyT1ImportHp"] == entry.energies[0] / 1000  # kWh
    assert "CT" in logbook[0].message
    assert stored_events(writer) == backfilled + logbook


async def test_datalog_status_events_live_and_stored_and_a_restart_stores_nothing_twice(
        make_fleet, monotonic, writer, open_syncer):
    fleet = await make_fleet(history_days=0.5)
    meter = fleet.meters[0]
    seen: list[MeterEvent] = []
    syncer = await open_syncer(meter, seen=seen)
    await sync_all(syncer)
    await event(fleet, "clock_change", offset=600)
    monotonic.advance(3 * IV)
    await sync_all(syncer)
    assert sorted(e.kind for e in seen) == ["clock_changed", "logbook"]
    clock = next(e for e in seen if e.kind == "clock_changed")
    row = writer.store.read("m", 0, 1 << 40)
    assert any(r.index == clock.fields["DatalogIndex"] and r.status & S.CLOCK_CHANGED for r in row)
    before = stored_events(writer)
    # a new syncer on the same store (a restart) resumes: nothing new, nothing twice
    seen2: list[MeterEvent] = []
    again = await open_syncer(meter, seen=seen2)
    assert again.logbook.high == 2
    await sync_all(again)
    assert seen2 == [] and stored_events(writer) == before
    # ... and the next change is found after the restart
    await event(fleet, "vt_ratio", primary=20000, secondary=100)
    monotonic.advance(2 * IV)
    await sync_all(again)
    assert [e.fields["LogbookIndex"] for e in seen2 if e.kind == "logbook"] == [3]


async def test_replaced_meter_and_index_reset_are_events(make_fleet, monotonic, writer, open_syncer):
    fleet = await make_fleet(history_days=0.5)
    meter = fleet.meters[0]
    seen: list[MeterEvent] = []
    syncer = await open_syncer(meter, seen=seen)
    await sync_all(syncer)
    old_serial = meter.serial
    await event(fleet, "index_reset")
    monotonic.advance(2 * IV)
    await sync_all(syncer)
    await event(fleet, "replace_meter")
    monotonic.advance(2 * IV)
    await sync_all(syncer)
    kinds = [e.kind for e in seen if e.kind in ("index_reset", "meter_replaced")]
    assert kinds == ["index_reset", "meter_replaced"]
    replaced = next(e for e in seen if e.kind == "meter_replaced")
    assert (replaced.fields["PreviousSerial"], replaced.fields["MeterSerial"]) == (old_serial, meter.serial)
    # the new meter's logbook is read from its first entry
    await event(fleet, "pulse", value=2000)
    monotonic.advance(2 * IV)
    await sync_all(syncer)
    new = [e.fields for e in seen if e.kind == "logbook"]
    assert [(f["MeterSerial"], f["LogbookIndex"], f["S0PulseValue"]) for f in new] == [(meter.serial, 1, 2000)]


def test_logbook_plan_rescans_when_the_stored_entry_is_gone_or_differs():
    from emu_opcua.meter.logbook import LogbookEntry

    def entry(i, t=0, serial="1"):
        ts = datetime.fromtimestamp(1_760_000_000 + t + i, timezone.utc)
        return LogbookEntry(ts, ts, i, serial, (0, 0, 0, 0), i, *([1] * 12))

    st = logbook_sync.LogbookState()
    req = logbook_sync.next_logbook_request(st, page=3)
    assert req == logbook_sync.LogbookRequest(1, 3)
    step = logbook_sync.apply_logbook(st, req, [entry(1), entry(2), entry(3)])
    assert step.more and step.state.high == 3 and len(step.entries) == 3
    req = logbook_sync.next_logbook_request(step.state, page=3)
    assert req.first == 3
    nxt = logbook_sync.apply_logbook(step.state, req, [entry(3), entry(4)])
    assert [e.index for e in nxt.entries] == [4] and nxt.state.current and not nxt.more
    differs = logbook_sync.apply_logbook(nxt.state, logbook_sync.LogbookRequest(4, 6), [entry(4, t=99)])
    assert differs.state.high is None and differs.more and differs.state.rescans == 1 and not differs.entries
    gone = logbook_sync.apply_logbook(nxt.state, logbook_sync.LogbookRequest(4, 6), [])
    assert gone.state.high is None and gone.more
    assert logbook_sync.LogbookState.from_json(nxt.state.to_json()) == nxt.state


async def test_a_logbook_page_with_a_bad_row_is_stored_without_it_only_after_the_attempts(writer, tmp_path):
    from emu_opcua.meter.logbook import LogbookEntry, format_logbook

    ts = datetime.fromtimestamp(1_760_000_000, timezone.utc)
    good = [LogbookEntry(ts, ts, i, "22000001", (1, 2, 3, 4), i, *([1] * 12)) for i in (1, 2, 3)]
    lines = format_logbook(good).splitlines()
    lines[2] = lines[2].replace(";2;", ";x;", 1)  # entry 2's index does not parse
    body = ("\n".join(lines) + "\n").encode()
    async with MeterHttpClient("127.0.0.1", 9) as http:
        syncer = MeterSyncer("m", http, writer, asyncio.Semaphore(1), SyncSettings(SyncPolicy(attempts=3)))
        request = logbook_sync.next_logbook_request(syncer.logbook)
        for _ in range(2):  # tried again: nothing stored meanwhile
            step, new = await writer.call(syncer._store_logbook, body, request, syncer.logbook)
            assert step is None and new == [] and stored_events(writer) == []
        step, new = await writer.call(syncer._store_logbook, body, request, syncer.logbook)
        assert [e.fields["LogbookIndex"] for e in new] == [1, 3] and step.state.high == 3
        # a cut page is never stored, however often it comes
        cut = format_logbook(good)[:-5].encode()
        for _ in range(5):
            step, _ = await writer.call(syncer._store_logbook, cut, request, logbook_sync.LogbookState())
            assert step is None
