"""SqliteHistoryStore on real SQLite files: what goes in comes out, once, in read order."""

from __future__ import annotations

import random
import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from emu_opcua.history.sqlite import (
    CHUNK_ROWS,
    PAGE_SIZE,
    SqliteHistoryStore,
    StoreError,
    pack_rows,
    row_tuple,
    unpack_columns,
    unpack_rows,
)
from emu_opcua.history.store import RowPosition, StoredRow
from emu_opcua.meter.datalog import RAW_COLUMNS, DatalogRow

T0 = 1_760_000_400  # a quarter hour


def make_rows(first: int, count: int, *, t0: int = T0, serial: str = "22000001", step: int = 900,
              seed: int = 1) -> list[DatalogRow]:
    """Rows shaped like a meter's: rising counters, noisy instantaneous values, every status."""
    rnd = random.Random(seed + first)
    counters = [1_234_567, 765_432, 12_345, 0, 222_222, 111_111, 5_000, 4_000]
    rows = []
    for k in range(count):
        index = first + k
        counters = [c + rnd.randrange(0, 400) for c in counters]
        inst = [rnd.randrange(-9000, 9000) for _ in range(4)] + [rnd.randrange(-20000, 20000) for _ in range(5)] \
            + [rnd.randrange(2250, 2350) for _ in range(3)] + [rnd.randrange(-100, 101) for _ in range(3)] \
            + [rnd.randrange(498, 502)]
        raw = tuple(counters + inst)
        assert len(raw) == RAW_COLUMNS
        ts = datetime.fromtimestamp(t0 + k * step, timezone.utc)
        rows.append(DatalogRow(ts, index, index % 256, serial, raw))
    return rows


def as_stored(row: DatalogRow, series_id: int) -> StoredRow:
    t, index, status, *raw = row_tuple(row)
    return StoredRow(t, series_id, index, status, tuple(raw))


@pytest.fixture
def store(tmp_path):
    s = SqliteHistoryStore.in_directory(tmp_path / "data")
    yield s
    s.close()


def test_rows_come_back_as_stored_every_column_and_status(store):
    series = store.new_series("boiler", "22000001", 1)
    rows = make_rows(1, 600)
    assert store.append(series, rows, {"next": 601}) == 600
    got = store.read("boiler", T0, T0 + 600 * 900)
    assert got == [as_stored(r, series.id) for r in rows]
    assert {r.status for r in got} == set(range(256))
    assert store.row_count("boiler") == 600
    assert store.sync_state("boiler") == {"next": 601}
    oldest, newest = store.extent("boiler")
    assert (oldest.index, newest.index) == (1, 600)


def test_rows_already_stored_are_neither_duplicated_nor_overwritten(store):
    series = store.new_series("m", "1", 1)
    rows = make_rows(1, 200)
    store.append(series, rows[:150], {"n": 1})
    changed = [DatalogRow(r.timestamp, r.index, 0, r.serial, (0,) * RAW_COLUMNS) for r in rows[100:150]]
    assert store.append(series, changed + rows[150:], {"n": 2}) == 50
    assert store.append(series, rows, {"n": 3}) == 0
    assert store.row_count("m") == 200
    assert list(store.indices(series)) == list(range(1, 201))
    assert store.read("m", T0, T0 + 10**6) == [as_stored(r, series.id) for r in rows]
    assert store.sync_state("m") == {"n": 3}


def test_a_failed_batch_stores_no_row_and_keeps_the_old_sync_state(store):
    series = store.new_series("m", "1", 1)
    store.append(series, make_rows(1, 10), {"n": 1})
    good = [row_tuple(r) for r in make_rows(11, 100)]
    bad = good[:99] + [good[99][:5]]
    with pytest.raises(ValueError):
        store.append_tuples(series, bad, {"n": 2})
    huge = good[:99] + [good[99][:3] + (1 << 64,) + good[99][4:]]
    with pytest.raises(ValueError):
        store.append_tuples(series, huge, {"n": 2})
    assert store.row_count("m") == 10
    assert list(store.indices(series)) == list(range(1, 11))
    assert store.sync_state("m") == {"n": 1}


def test_series_are_kept_apart_and_read_in_position_order(store):
    old = store.new_series("m", "A", 1)
    store.append(old, make_rows(1, 100, serial="A"), {})
    # the replacement meter starts its index at 1 again, in the same hours
    new = store.new_series("m", "B", 1)
    store.append(new, make_rows(1, 100, t0=T0 + 50 * 900, serial="B", seed=7), {})
    assert [s.serial for s in store.series("m")] == ["A", "B"]
    assert store.row_count("m") == 200
    got = store.read("m", T0, T0 + 10**6)
    assert len(got) == 200
    assert [r.position for r in got] == sorted(r.position for r in got)
    assert sum(r.series_id == old.id for r in got) == 100
    assert store.read("other", T0, T0 + 10**6) == [] and store.extent("other") is None


def test_clock_set_back_repeats_timestamps_and_nothing_is_lost(store):
    series = store.new_series("m", "1", 1)
    first = make_rows(1, 100)
    # the clock goes back 10 hours: rows 101.. repeat the timestamps of rows 61..
    back = make_rows(101, 100, t0=T0 + 60 * 900)
    store.append(series, first + back, {})
    got = store.read("m", T0, T0 + 10**6)
    assert len(got) == 200
    expected = sorted((as_stored(r, series.id) for r in first + back), key=lambda r: r.position)
    assert got == expected
    # a time range inside the repeated hours has rows of both passes
    window = store.read("m", T0 + 70 * 900, T0 + 71 * 900)
    assert [r.index for r in window] == [71, 111]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("limit", [1, 7, 64, 1000])
def test_paging_with_continuation_visits_every_row_once(store, reverse, limit):
    a = store.new_series("m", "A", 1)
    b = store.new_series("m", "B", 1)
    store.append(a, make_rows(1, 300) + make_rows(301, 50, t0=T0 + 100 * 900), {})
    store.append(b, make_rows(1, 120, t0=T0 + 200 * 900, serial="B"), {})
    start, end = T0 + 30 * 900, T0 + 290 * 900
    everything = store.read("m", start, end, reverse=reverse)
    assert everything == sorted(everything, key=lambda r: r.position, reverse=reverse)
    assert all(start <= r.timestamp < end for r in everything)
    seen: list[StoredRow] = []
    after = None
    while True:
        page = store.read("m", start, end, after=after, limit=limit, reverse=reverse)
        assert len(page) <= limit
        if not page:
            break
        seen += page
        after = page[-1].position
    assert seen == everything
    assert len(everything) == len({(r.series_id, r.index) for r in everything})


def _projected(rows: list[StoredRow], columns) -> list[tuple[int, ...]]:
    return [(r.timestamp, r.series_id, r.index, r.status, *[r.raw[c] for c in columns]) for r in rows]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("columns", [(), (9,), (5, 2), tuple(range(RAW_COLUMNS))])
def test_read_columns_is_read_with_only_the_asked_columns(store, reverse, columns):
    a = store.new_series("m", "A", 1)
    b = store.new_series("m", "B", 1)
    # overlapping series and a clock set back (repeated timestamps inside series A)
    store.append(a, make_rows(1, 300) + make_rows(301, 200, t0=T0 + 100 * 900), {})
    store.append(b, make_rows(1, 120, t0=T0 + 200 * 900, serial="B"), {})
    for start, end in [(T0, T0 + 10**6), (T0 + 30 * 900 + 1, T0 + 290 * 900), (T0 + 150 * 900, T0 + 151 * 900)]:
        assert store.read_columns("m", start, end, columns, reverse=reverse) == \
            _projected(store.read("m", start, end, reverse=reverse), columns)
        for limit in (1, 50, 129):
            after = None
            while True:
                got = store.read_columns("m", start, end, columns, after=after, limit=limit, reverse=reverse)
                assert got == _projected(store.read("m", start, end, after=after, limit=limit, reverse=reverse),
                                         columns)
                if not got:
                    break
                after = RowPosition(*got[-1][:3])


def test_read_columns_refuses_columns_a_row_does_not_have(store):
    store.new_series("m", "A", 1)
    with pytest.raises(ValueError):
        store.read_columns("m", T0, T0 + 900, (RAW_COLUMNS,))
    with pytest.raises(ValueError):
        store.read_columns("m", T0, T0 + 900, (-1,))


def test_after_is_strict(store):
    series = store.new_series("m", "1", 1)
    store.append(series, make_rows(1, 10), {})
    p = RowPosition(T0 + 4 * 900, series.id, 5)
    assert [r.index for r in store.read("m", T0, T0 + 10**6, after=p)] == [6, 7, 8, 9, 10]
    assert [r.index for r in store.read("m", T0, T0 + 10**6, after=p, reverse=True)] == [4, 3, 2, 1]


def test_prune_deletes_only_older_rows(store):
    series = store.new_series("m", "1", 1)
    rows = make_rows(1, 3 * CHUNK_ROWS)
    store.append(series, rows, {})
    cut = T0 + (CHUNK_ROWS + 10) * 900
    assert store.prune(cut) == CHUNK_ROWS + 10
    assert store.row_count("m") == 2 * CHUNK_ROWS - 10
    assert store.read("m", 0, 1 << 40) == [as_stored(r, series.id) for r in rows[CHUNK_ROWS + 10:]]
    assert store.prune(cut) == 0


def test_survives_reopening(tmp_path):
    s = SqliteHistoryStore.in_directory(tmp_path)
    series = s.new_series("m", "1", 5, sync_state={"phase": "backfill"})
    s.append(series, make_rows(5, 70), {"phase": "current"})
    s.close()
    with pytest.raises(StoreError):
        s.read("m", 0, 1)
    s = SqliteHistoryStore.in_directory(tmp_path)
    assert s.series("m") == (series,)
    assert s.row_count("m") == 70
    assert s.sync_state("m") == {"phase": "current"}
    assert s.meters() == ("m",)
    s.close()


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="not a usable history store"):
        SqliteHistoryStore(path)


def test_readers_in_other_threads_see_committed_rows_while_one_writes(store):
    series = store.new_series("m", "1", 1)
    errors = []

    def reader():
        try:
            for _ in range(50):
                got = store.read("m", 0, 1 << 40)
                # a batch is visible whole or not at all
                assert len(got) % 100 == 0
                assert [r.index for r in got] == list(range(1, len(got) + 1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for k in range(20):
        store.append(series, make_rows(1 + k * 100, 100, t0=T0 + k * 100 * 900), {"k": k})
    for t in threads:
        t.join()
    assert not errors
    assert store.row_count("m") == 2000


def test_pack_roundtrip_extremes():
    rows = [(T0, 1, 0) + (0,) * RAW_COLUMNS,
            (T0 - 5, 2, 255) + tuple((-1) ** i * (1 << 40) for i in range(RAW_COLUMNS)),
            (0, 3, 1) + tuple(range(-12, 12))]
    assert unpack_rows(pack_rows(rows), 3) == rows
    assert unpack_rows(pack_rows([]), 0) == []
    blob = pack_rows(rows)
    assert unpack_columns(blob, 3, (0, 26, 3, 2)) == [[r[c] for r in rows] for c in (0, 26, 3, 2)]
    assert unpack_columns(b"", 0, (1, 2)) == [[], []]


def test_wal_and_large_pages(tmp_path):
    s = SqliteHistoryStore.in_directory(tmp_path)
    s.close()
    con = sqlite3.connect(tmp_path / "history.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    con.close()
