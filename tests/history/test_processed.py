"""Processed reads over store rows (emu_opcua.history.processed): the rows fed, the
bounds-only reads and paging give what the engine gives over the whole archive."""

from __future__ import annotations

import random

import pytest

from emu_opcua.history import processed as pr
from emu_opcua.history.aggregates import SUPPORTED_AGGREGATES, AggregateConfiguration, process
from emu_opcua.history.raw import MAX_SECONDS, MIN_SECONDS, US, ListRows, RowConverter
from emu_opcua.history.sqlite import SqliteHistoryStore
from emu_opcua.history.store import StoredRow
from emu_opcua.meter.catalogue import BY_CODE
from emu_opcua.meter.datalog import RAW_COLUMNS, DatalogStatus

POWER = RowConverter(BY_CODE["active_power_total"])
ENERGY = RowConverter(BY_CODE["active_energy_import_t1"])
P_COL, E_COL = 13 - 5, 0
T0 = 1_750_000_000 - 1_750_000_000 % 86_400  # a UTC midnight
DAY = 86_400_000  # ms


def row(ts: int, index: int, watts: int, wh: int, status: int = 0, series: int = 1) -> StoredRow:
    raw = [0] * RAW_COLUMNS
    raw[P_COL] = watts
    raw[E_COL] = wh
    return StoredRow(ts, series, index, status, tuple(raw))


def archive(days: int = 6, seed: int = 3) -> list[StoredRow]:
    """Quarter hours with some clock-not-synchronised (Uncertain) and outage rows, a gap,
    and a clock set back (repeated timestamps)."""
    rnd = random.Random(seed)
    rows, wh, t, i = [], 0, T0 - 3 * 900, 0
    while t < T0 + days * 86_400:
        status = 0
        x = rnd.random()
        if x < 0.03:
            status = DatalogStatus.CLOCK_NOT_SYNCHRONISED
        elif x < 0.06:
            status = DatalogStatus.POWER_OUTAGE
        watts = rnd.randrange(0, 5000)
        wh += watts // 4
        rows.append(row(t, i, watts, wh, status))
        i += 1
        t += 900
        if i == 200:
            t += 5 * 3600  # five hours without rows
        if i == 300:
            t -= 1800  # clock set back: two timestamps repeat
    return rows


def whole(aggregate, rows, convert, start_ms, end_ms, interval, config=AggregateConfiguration(), stepped=False,
          counter=False):
    rows = sorted(rows, key=lambda r: r.position)  # the store's order (a clock set back repeats times)
    points = [(r.timestamp * 1000, convert.value(r.raw), convert.statuses[r.status]) for r in rows]
    return [((round(v.timestamp * 1000) if isinstance(v.timestamp, float) else v.timestamp * 1000), v.value, v.status)
            for v in process(aggregate, [points], start_ms, end_ms, interval, stepped=stepped, config=config,
                             counter=counter)]


CONFIGS = [AggregateConfiguration(), AggregateConfiguration(treat_uncertain_as_bad=False, percent_data_bad=50,
                                                            percent_data_good=50, use_sloped_extrapolation=True)]


@pytest.fixture(scope="module")
def archive_store(tmp_path_factory):
    store = SqliteHistoryStore(tmp_path_factory.mktemp("archive") / "h.sqlite")
    series = store.new_series("m", "s", 0)
    store.append_tuples(series, [(r.timestamp, r.index, r.status, *r.raw) for r in archive()], None)
    yield store
    store.close()


@pytest.mark.parametrize("aggregate", SUPPORTED_AGGREGATES)
def test_rows_fed_give_the_results_over_the_whole_archive(aggregate, archive_store):
    rows = archive()
    source = ListRows(rows)
    for config in CONFIGS:
        for convert, stepped in ((POWER, True), (ENERGY, False)):
            for start, end, interval in ((T0 * 1000 + 3_600_000, T0 * 1000 + 2 * DAY + 7_200_000, 3_600_000 * 5),
                                         (T0 * 1000 + 4 * DAY, T0 * 1000 + DAY, DAY),  # reverse
                                         (T0 * 1000 - 10 * DAY, T0 * 1000 + 20 * DAY, 0)):
                request = pr.ProcessedRequest(aggregate, start * 1000, end * 1000, interval, config)
                expected = whole(aggregate, rows, convert, start, end, interval, config, stepped)
                got, following = pr.read_processed(source, convert, request, limit=10_000, stepped=stepped)
                assert following is None
                assert got == expected, (aggregate, config, start, end, interval)
                # from the SQLite store, as plain tuples of the quantity's columns only
                columns = tuple(c - 5 for c in convert.quantity.datalog.columns)

                def tuples(lo, hi, columns=columns, **kwargs):
                    return archive_store.read_tuples("m", lo, hi, columns=columns, **kwargs)

                got, _ = pr.read_processed(source, convert, request, limit=10_000, stepped=stepped, tuples=tuples)
                assert got == expected
                # paged: three intervals at a time
                paged, offset = [], 0
                while offset is not None:
                    page, offset = pr.read_processed(source, convert, request, limit=3, offset=offset,
                                                     stepped=stepped)
                    paged += page
                assert paged == expected


@pytest.mark.parametrize("aggregate", sorted(pr.BOUNDS_ONLY))
def test_bounds_only_reads_give_the_same_results(aggregate, tmp_path):
    rows = archive()
    store = SqliteHistoryStore(tmp_path / "h.sqlite")
    try:
        series = store.new_series("m", "s", 0)
        store.append_tuples(series, [(r.timestamp, r.index, r.status, *r.raw) for r in rows], None)
        source = ListRows(rows)

        def around(cuts, exact=False):
            return store.read_around("m", cuts)

        def around_columns(cuts, exact=False):  # only the quantity's columns decoded, exact cuts
            return store.read_around("m", cuts, columns=(0,), exact=exact)

        for start, end, interval in ((T0 * 1000, T0 * 1000 + 5 * DAY, DAY), (T0 * 1000 + 5 * DAY, T0 * 1000, DAY),
                                     (T0 * 1000 - DAY + 1500, T0 * 1000 + 9 * DAY, 3_600_000 * 7 + 0.5)):
            request = pr.ProcessedRequest(aggregate, start * 1000 if isinstance(start, int) else int(start * 1000),
                                          end * 1000, interval)
            expected, _ = pr.read_processed(source, ENERGY, request, limit=10_000)
            assert expected == whole(aggregate, rows, ENERGY, request.start / 1000 if request.start % 1000
                                     else request.start // 1000, end, interval)
            # streamed from the store as plain tuples (the OPC UA layer's way): the same
            def tuples(start, end, **kwargs):
                return store.read_tuples("m", start, end, columns=(0,), **kwargs)

            got, _ = pr.read_processed(source, ENERGY, request, limit=10_000, tuples=tuples)
            assert got == expected
            for bounding in (around, around_columns, lambda cuts, exact: pr.bounding_rows(source, cuts)):
                got, _ = pr.read_processed(source, ENERGY, request, limit=10_000, bounding=bounding)
                assert got == expected
                paged, offset = [], 0
                while offset is not None:
                    page, offset = pr.read_processed(source, ENERGY, request, limit=2, offset=offset,
                                                     bounding=bounding)
                    paged += page
                assert paged == expected
    finally:
        store.close()


def test_read_around_finds_the_rows_two_reads_would(tmp_path):
    rows = archive(days=4)
    # a second series overlapping in time (a replaced meter whose clock was behind)
    other = [row(T0 + 86_400 + k * 900, k, 1, 10 * k, series=2) for k in range(300)]
    store = SqliteHistoryStore(tmp_path / "h.sqlite")
    try:
        s1 = store.new_series("m", "a", 0)
        store.append_tuples(s1, [(r.timestamp, r.index, r.status, *r.raw) for r in rows], None)
        s2 = store.new_series("m", "b", 0)
        store.append_tuples(s2, [(r.timestamp, r.index, r.status, *r.raw) for r in other], None)
        cuts = sorted({T0 - 10 * 86_400, T0 - 2700, T0, T0 + 1, T0 + 86_400, T0 + 86_400 + 450}
                      | {rows[k].timestamp for k in (199, 200, 299, 300, 301)} | {T0 + 40 * 86_400}
                      | {T0 + random.Random(1).randrange(0, 4 * 86_400) for _ in range(40)})
        expected = {}
        for cut in cuts:
            for r in store.read("m", MIN_SECONDS, cut, limit=1, reverse=True) + store.read("m", cut, MAX_SECONDS,
                                                                                            limit=1):
                expected[r.position] = r
        want = [expected[k] for k in sorted(expected)]
        assert store.read_around("m", cuts) == want
        # exact: where a row lies at the cut, the row before may be left out; nothing else
        exact = {r.position for r in store.read_around("m", cuts, exact=True)}
        assert exact <= set(expected)
        for cut in cuts:
            at = store.read("m", cut, MAX_SECONDS, limit=1)
            before = store.read("m", MIN_SECONDS, cut, limit=1, reverse=True)
            assert not at or at[0].position in exact
            if before and not (at and at[0].timestamp == cut):
                assert before[0].position in exact
        # only some columns: those as stored, the others 0
        some = store.read_around("m", cuts, columns=(0, P_COL))
        assert [r.position for r in some] == [r.position for r in want]
        assert [r.status for r in some] == [r.status for r in want]
        assert [(r.raw[0], r.raw[P_COL]) for r in some] == [(r.raw[0], r.raw[P_COL]) for r in want]
        assert {v for r in some for k, v in enumerate(r.raw) if k not in (0, P_COL)} == {0}
        # the same for reads of a range, forward, reverse, with a limit and after a row
        every = store.read("m", MIN_SECONDS, MAX_SECONDS)
        for kwargs in ({}, {"reverse": True}, {"limit": 7, "after": every[150].position}):
            full = store.read("m", T0, T0 + 3 * 86_400, **kwargs)
            for columns in ((P_COL,), (0, P_COL)):
                part = store.read("m", T0, T0 + 3 * 86_400, columns=columns, **kwargs)
                assert [r.position for r in part] == [r.position for r in full] and part
                assert [r.status for r in part] == [r.status for r in full]
                assert [[r.raw[c] for c in columns] for r in part] == [[r.raw[c] for c in columns] for r in full]
                assert {v for r in part for k, v in enumerate(r.raw) if k not in columns} == {0}
        assert store.read_around("nobody", cuts) == []
        assert store.series_extents("m") == [(s1.id, rows[0].timestamp, max(r.timestamp for r in rows)),
                                             (s2.id, other[0].timestamp, other[-1].timestamp)]
    finally:
        store.close()


def test_a_series_change_or_a_reset_is_no_consumption():
    # old meter: 1000 Wh per quarter hour until day 2 12:00; the new one starts at 50,000,000 Wh
    # (a used meter) and one at 0 would be negative: neither is differenced
    old = [row(T0 + k * 900, k, 4000, 1000 * k) for k in range(96 * 2 + 48)]
    new = [row(T0 + (96 * 2 + 48) * 900 + k * 900, k, 4000, 50_000_000 + 1000 * k, series=2) for k in range(96 * 2)]
    rows = old + new
    gaps = pr.series_gaps([(1, old[0].timestamp, old[-1].timestamp), (2, new[0].timestamp, new[-1].timestamp)])
    assert gaps == [(old[-1].timestamp, new[0].timestamp)]
    source = ListRows(rows)
    for aggregate in ("DeltaBounds", "Delta"):
        request = pr.ProcessedRequest(aggregate, T0 * US, (T0 + 4 * 86_400) * US, DAY)
        got, _ = pr.read_processed(source, ENERGY, request, limit=100, counter=True, series_gaps=gaps)
        values = [v for _t, v, _s in got]
        statuses = [s for _t, _v, s in got]
        per_day = 96.0 if aggregate == "DeltaBounds" else 95.0  # kWh; Delta misses the last quarter hour
        assert values[0] == values[1] == values[3] == per_day
        assert values[2] is None and statuses[2] == pr.COUNTER_RESET  # the day of the replacement
        # without the series rule the used meter's counter would read as consumption
        plain, _ = pr.read_processed(source, ENERGY, request, limit=100, counter=True)
        assert plain[2][1] > 40_000
    # a reset within one series (counter from 0): negative, so Bad by the counter rule
    reset = old + [row(T0 + (96 * 2 + 48) * 900 + k * 900, 1000 + k, 4000, 1000 * k) for k in range(96 * 2)]
    request = pr.ProcessedRequest("DeltaBounds", T0 * US, (T0 + 4 * 86_400) * US, DAY)
    got, _ = pr.read_processed(ListRows(reset), ENERGY, request, limit=100, counter=True)
    assert got[2][1] is None and got[2][2] & 0xC0000000 == 0x80000000
    # power across the change is unaffected
    request = pr.ProcessedRequest("Average", T0 * US, (T0 + 4 * 86_400) * US, DAY)
    got, _ = pr.read_processed(source, POWER, request, limit=100, counter=False, series_gaps=gaps, stepped=True)
    assert [v for _t, v, _s in got] == [4.0, 4.0, 4.0, 4.0]


def test_interval_count_and_bad_requests():
    assert pr.ProcessedRequest("Average", 0, 366 * 86_400 * US, DAY).interval_count() == 366
    assert pr.ProcessedRequest("Average", 0, 366 * 86_400 * US, 0).interval_count() == 1
    assert pr.ProcessedRequest("Average", 365 * 86_400 * US, 0, 900_000).interval_count() == 35_040
    assert pr.ProcessedRequest("Average", 0, 10 * US, 3000).interval_count() == 4
    from emu_opcua.history.aggregates import AggregateInvalidInputs
    with pytest.raises(AggregateInvalidInputs):
        pr.ProcessedRequest("Average", 0, 10 * US, -1)
    with pytest.raises(AggregateInvalidInputs):
        pr.ProcessedRequest("Average", 5, 5, 1000)
