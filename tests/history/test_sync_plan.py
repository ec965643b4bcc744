"""Sync planning (sans-IO): a meter's datalog as plain rows, every case by index."""

from __future__ import annotations

from datetime import datetime, timezone

import attrs
import pytest

from emu_opcua.history.sync import (
    IndexRange,
    NewestRow,
    SyncPolicy,
    SyncState,
    apply_answer,
    next_request,
    progress,
)
from emu_opcua.meter.datalog import RAW_COLUMNS, DatalogRow

T0 = 1_760_000_400


class Datalog:
    """A meter's datalog ring: rows oldest..newest, ``from``/``to`` clipped to them."""

    def __init__(self, serial="A", capacity=10**9, t0=T0):
        self.serial, self.capacity, self.t = serial, capacity, t0
        self.rows: list[DatalogRow] = []
        self.next_index = 1
        self.energy = 1000

    def write(self, n=1, status=0, step=900):
        for _ in range(n):
            self.energy += 7
            raw = (self.energy,) + (self.next_index % 97,) * (RAW_COLUMNS - 1)
            self.rows.append(DatalogRow(datetime.fromtimestamp(self.t, timezone.utc), self.next_index,
                                        status, self.serial, raw))
            self.next_index += 1
            self.t += step
        del self.rows[:-self.capacity]

    def answer(self, request):
        if isinstance(request, NewestRow):
            return self.rows[-1:]
        return [r for r in self.rows if request.first <= r.index <= request.last][:3000]


class Store:
    """What the driver does with steps: series by serial, rows by (series, index)."""

    def __init__(self):
        self.series: list[tuple[int, str]] = []
        self.rows: dict[tuple[int, int], DatalogRow] = {}
        self.state = SyncState()
        self.events: list[str] = []

    def sync(self, meter, policy=SyncPolicy(), limit=1000):
        for _ in range(limit):
            request = next_request(self.state, policy)
            step = apply_answer(self.state, request, meter.answer(request), policy=policy)
            state = step.state
            if step.new_series:
                self.series.append((len(self.series) + 1, step.new_series))
                state = attrs.evolve(state, series_id=len(self.series))
            for r in step.rows:
                key = (state.series_id, r.index)
                assert key not in self.rows, f"row {key} stored twice"
                self.rows[key] = r
            if step.event:
                self.events.append(step.event)
            self.state = state
            if not step.more:
                return
        raise AssertionError("sync did not settle")

    def of(self, series_id):
        return [r for (s, _i), r in sorted(self.rows.items()) if s == series_id]


def test_first_contact_backfills_everything_in_pages_then_follows():
    meter = Datalog()
    meter.write(7000)
    store = Store()
    requests = []
    orig = meter.answer
    meter.answer = lambda req: requests.append(req) or orig(req)
    store.sync(meter)
    assert requests[0] == NewestRow()
    assert requests[1:] == [IndexRange(1, 3000), IndexRange(3000, 5999), IndexRange(5999, 8998)]
    assert store.of(1) == meter.rows
    assert store.state.current and progress(store.state) == 1.0
    meter.write(3)
    store.sync(meter)
    assert store.of(1) == meter.rows and store.events == ["first contact"]


def test_progress_while_backfilling():
    meter = Datalog()
    meter.write(9001)
    state = SyncState()
    state = apply_answer(state, NewestRow(), meter.answer(NewestRow())).state
    state = attrs.evolve(state, series_id=1)
    assert progress(state) == 0.0
    step = apply_answer(state, next_request(state), meter.answer(next_request(state)))
    assert not step.state.current and step.more
    assert progress(step.state) == pytest.approx(2999 / 9000)


def test_backfill_depth():
    meter = Datalog()
    meter.write(500)
    store = Store()
    store.sync(meter, SyncPolicy(backfill_rows=96))
    assert [r.index for r in store.of(1)] == list(range(405, 501))


def test_resume_after_an_outage_fills_every_row_the_meter_still_holds():
    meter = Datalog(capacity=5000)
    meter.write(4000)
    store = Store()
    store.sync(meter)
    meter.write(4000)  # the gateway was away: the ring dropped rows 1..3000, none we missed
    store.sync(meter)
    assert [r.index for r in store.of(1)] == list(range(1, 8001))
    assert store.state.lost == 0


def test_an_outage_longer_than_the_ring_counts_the_rows_lost():
    meter = Datalog(capacity=1000)
    meter.write(1000)
    store = Store()
    store.sync(meter)
    meter.write(1500)  # rows 1001..1500 dropped before we came back
    store.sync(meter)
    assert [r.index for r in store.of(1)] == list(range(1, 1001)) + list(range(1501, 2501))
    assert store.state.lost == 500
    assert any("500 row(s) after index 1000" in e for e in store.events)


def test_an_outage_pages_longer_than_the_ring_moves_on_over_empty_pages():
    meter = Datalog(capacity=1000)
    meter.write(1000)
    store = Store()
    store.sync(meter)
    meter.write(9000)  # the meter holds 9001..10000: pages from 1000 on are empty for a while
    store.sync(meter)
    assert [r.index for r in store.of(1)] == list(range(1, 1001)) + list(range(9001, 10001))
    assert store.state.lost == 8000


def test_index_reset_starts_a_new_series_when_the_log_is_shorter():
    meter = Datalog()
    meter.write(300)
    store = Store()
    store.sync(meter)
    meter.rows.clear()
    meter.next_index = 1
    meter.write(10)
    store.sync(meter)
    assert store.series == [(1, "A"), (2, "A")]
    assert len(store.of(1)) == 300 and [r.index for r in store.of(2)] == list(range(1, 11))
    assert "index reset" in store.events[-1]


def test_index_reset_is_found_by_the_overlapping_row_when_the_log_grew_past_it():
    meter = Datalog()
    meter.write(300)
    store = Store()
    store.sync(meter)
    old = list(meter.rows)
    meter.rows.clear()
    meter.next_index = 1
    meter.write(400)  # index 300 exists again, but it is another row
    store.sync(meter)
    assert store.of(1) == old and store.of(2) == meter.rows


def test_a_replaced_meter_gets_its_own_series():
    meter = Datalog(serial="A")
    meter.write(100)
    store = Store()
    store.sync(meter)
    old = list(meter.rows)
    meter.serial, meter.rows, meter.next_index = "B", [], 1
    meter.write(150)
    store.sync(meter)
    assert store.series == [(1, "A"), (2, "B")]
    assert store.of(1) == old and store.of(2) == meter.rows
    assert "meter replaced: serial A -> B" in store.events


def test_clock_back_and_forth_keeps_every_row_by_index():
    meter = Datalog()
    meter.write(50)
    meter.t -= 3600 * 5
    meter.write(50, status=0x01)
    meter.t += 3600 * 24
    meter.write(50, status=0x01)
    store = Store()
    store.sync(meter)
    assert store.of(1) == meter.rows


def test_a_truncated_page_is_not_stored_and_asked_again():
    meter = Datalog()
    meter.write(100)
    state = attrs.evolve(apply_answer(SyncState(), NewestRow(), meter.answer(NewestRow())).state, series_id=1)
    request = next_request(state)
    rows = meter.answer(request)[:40]
    step = apply_answer(state, request, rows, ["datalog line 42: cut"], truncated=True)
    assert step.retry and step.rows == () and step.state == state
    assert next_request(step.state) == request


def test_bad_rows_are_retried_then_stored_around_and_reported():
    meter = Datalog()
    meter.write(100)
    state = attrs.evolve(apply_answer(SyncState(), NewestRow(), meter.answer(NewestRow())).state, series_id=1)
    request = next_request(state)
    rows = [r for r in meter.answer(request) if r.index != 50]
    errors = ["datalog line 51, column 7: bad value 'x'"]
    for attempt in (1, 2):
        step = apply_answer(state, request, rows, errors, attempt=attempt)
        assert step.retry and not step.rows
    step = apply_answer(state, request, rows, errors, attempt=3)
    assert not step.retry and len(step.rows) == 99
    assert step.state.unparseable == 1 and "column 7" in step.error
    assert step.state.current


def test_an_empty_datalog_waits():
    step = apply_answer(SyncState(), NewestRow(), [])
    assert not step.more and step.new_series is None


def test_state_survives_json():
    meter = Datalog()
    meter.write(10)
    store = Store()
    store.sync(meter)
    assert SyncState.from_json(store.state.to_json()) == store.state
    assert SyncState.from_json(None) == SyncState()


def test_policy_is_checked():
    with pytest.raises(ValueError):
        SyncPolicy(page=3001)
    with pytest.raises(ValueError):
        SyncPolicy(backfill_rows=-1)
