"""The raw / at-time read rules of OPC 10000-11 (emu_opcua.history.raw), pure."""

from __future__ import annotations

import pytest

from emu_opcua.history.raw import (
    END_BOUND,
    KIND_AT_TIME,
    KIND_RAW,
    MIN_TIME_US,
    US,
    ContinuationState,
    Cursor,
    ListRows,
    RawRequest,
    RequestError,
    RowConverter,
    StatusCodes,
    decode_continuation,
    encode_continuation,
    read_at_time,
    read_raw,
    row_status,
    stepped,
)
from emu_opcua.history.store import RowPosition, StoredRow
from emu_opcua.meter.catalogue import BY_CODE
from emu_opcua.meter.datalog import RAW_COLUMNS, DatalogStatus

POWER = BY_CODE["active_power_total"]  # column 13, W -> kW
ENERGY = BY_CODE["active_energy_import_total"]  # columns 5 + 6, Wh -> kWh
P_COL = 13 - 5


def row(ts: int, watts: int = 0, *, index: int | None = None, series: int = 1, status: int = 0,
        wh: int = 0) -> StoredRow:
    raw = [0] * RAW_COLUMNS
    raw[P_COL] = watts
    raw[0] = wh
    return StoredRow(ts, series, ts if index is None else index, status, tuple(raw))


# OPC 10000-11 4.6 Table 1 works on a historian holding values at 5:00, 5:02, 5:03, 5:05
# and 5:06; minutes stand for seconds here (5:00 -> 500 s). FIRST / LAST: a missing bound.
FIRST, LAST, NODATA = "FIRST", "LAST", "NODATA"
TABLE_ROWS = ListRows([row(t, watts=t) for t in (503, 500, 502, 506, 505)])


def _us(t):
    return None if t is None else t * US


# (start, end, NumValuesPerNode, ReturnBounds, expected, continuation point expected)
TABLE_1 = [
    (500, 505, 0, True, [500, 502, 503, 505], False),
    (500, 505, 0, False, [500, 502, 503], False),
    (501, 504, 0, True, [500, 502, 503, 505], False),
    (501, 504, 0, False, [502, 503], False),
    (505, 500, 0, True, [505, 503, 502, 500], False),
    (505, 500, 0, False, [505, 503, 502], False),
    (504, 501, 0, True, [505, 503, 502, 500], False),
    (504, 501, 0, False, [503, 502], False),
    (459, 505, 0, True, [FIRST, 500, 502, 503, 505], False),
    (459, 505, 0, False, [500, 502, 503], False),
    (501, 507, 0, True, [500, 502, 503, 505, 506, LAST], False),
    (501, 507, 0, False, [502, 503, 505, 506], False),
    (500, 505, 3, True, [500, 502, 503], True),
    (500, 505, 3, False, [500, 502, 503], False),
    (501, 504, 3, True, [500, 502, 503], True),
    (501, 504, 3, False, [502, 503], False),
    (505, 500, 3, True, [505, 503, 502], True),
    (505, 500, 3, False, [505, 503, 502], False),
    (504, 501, 3, True, [505, 503, 502], True),
    (504, 501, 3, False, [503, 502], False),
    (459, 505, 3, True, [FIRST, 500, 502], True),
    (459, 505, 3, False, [500, 502, 503], False),
    (501, 507, 3, True, [500, 502, 503], True),
    (501, 507, 3, False, [502, 503, 505], True),
    (500, None, 3, True, [500, 502, 503], True),
    (500, None, 3, False, [500, 502, 503], True),
    (500, None, 6, True, [500, 502, 503, 505, 506, LAST], False),
    (500, None, 6, False, [500, 502, 503, 505, 506], False),
    (507, None, 6, True, [506, LAST], False),
    (507, None, 6, False, NODATA, False),
    (None, 506, 3, True, [506, 505, 503], True),
    (None, 506, 3, False, [506, 505, 503], True),
    (None, 506, 6, True, [506, 505, 503, 502, 500, FIRST], False),
    (None, 506, 6, False, [506, 505, 503, 502, 500], False),
    (None, 448, 6, True, [500, FIRST], False),
    (None, 448, 6, False, NODATA, False),
    (448, 448, 0, True, [FIRST, 500], False),
    (448, 448, 0, False, NODATA, False),
    (448, 448, 1, True, [FIRST], True),
    (448, 448, 1, False, NODATA, False),
    (448, 448, 2, True, [FIRST, 500], False),
    (500, 500, 0, True, [500, 502], False),
    (500, 500, 0, False, [500], False),
    (500, 500, 1, True, [500], True),
    (500, 500, 1, False, [500], False),
    (501, 501, 0, True, [500, 502], False),
    (501, 501, 0, False, NODATA, False),
    (501, 501, 1, True, [500], True),
    (501, 501, 1, False, NODATA, False),
]


def _missing_bound_time(label, request: RawRequest) -> int:
    """Table 1: FIRST is stamped with the start time, LAST with the end time; a time not
    given is DateTime.MinValue."""
    t = request.start if label == FIRST else request.end
    return MIN_TIME_US if t is None else t


@pytest.mark.parametrize("start,end,count,bounds,expected,more", TABLE_1,
                         ids=[f"{s}-{e}-n{n}-{'b' if b else 'nb'}" for s, e, n, b, *_ in TABLE_1])
def test_read_raw_follows_part_11_table_1(start, end, count, bounds, expected, more):
    request = RawRequest(_us(start), _us(end), count, bounds)
    page = read_raw(TABLE_ROWS, RowConverter(POWER), request, page_size=1000)
    if expected == NODATA:
        assert page.no_data
        return
    got = []
    for t, value, status in page.values:
        if status == StatusCodes.BAD_BOUND_NOT_FOUND:
            assert value is None
            got.append(("missing", t))
        else:
            assert status == StatusCodes.GOOD and value == t // US / 1000
            got.append(t // US)
    want = [("missing", _missing_bound_time(x, request)) if x in (FIRST, LAST) else x for x in expected]
    assert got == want
    assert (page.cursor is not None) == more


@pytest.mark.parametrize("start,end,count,bounds,expected,more", TABLE_1,
                         ids=[f"{s}-{e}-n{n}-{'b' if b else 'nb'}" for s, e, n, b, *_ in TABLE_1])
@pytest.mark.parametrize("page_size", [1, 2])
def test_pages_of_any_size_add_up_to_the_whole_read(start, end, count, bounds, expected, more, page_size):
    request = RawRequest(_us(start), _us(end), count, bounds)
    convert = RowConverter(POWER)
    whole = read_raw(TABLE_ROWS, convert, request, page_size=1000)
    pages, cursor = [], None
    for _ in range(20):
        page = read_raw(TABLE_ROWS, convert, request, page_size=page_size, cursor=cursor)
        assert page.values or page.cursor is None, "an empty page with a continuation point"
        assert len(page.values) <= page_size
        pages.extend(page.values)
        cursor = page.cursor
        if cursor is None:
            break
    else:
        pytest.fail("no end of pages")
    if count:
        # NumValuesPerNode bounds the whole read; smaller pages continue it
        assert pages[:len(whole.values)] == whole.values
    else:
        assert pages == whole.values


def test_values_sharing_a_timestamp_are_neither_skipped_nor_repeated_across_pages():
    # a clock set back, and a second series: 7 rows at 600 s
    rows = [row(600, watts=i, index=100 + i) for i in range(5)]
    rows += [row(600, watts=10 + i, index=i, series=2) for i in range(2)]
    rows += [row(599, watts=-1), row(601, watts=-2)]
    source = ListRows(rows)
    convert = RowConverter(POWER)
    for reverse in (False, True):
        request = RawRequest(605 * US, 590 * US) if reverse else RawRequest(590 * US, 605 * US)
        got, cursor = [], None
        while True:
            page = read_raw(source, convert, request, page_size=2, cursor=cursor)
            got.extend(v for _, v, _ in page.values)
            cursor = page.cursor
            if cursor is None:
                break
        want = [-0.001] + [i / 1000 for i in range(5)] + [0.010, 0.011] + [-0.002]
        assert got == (want[::-1] if reverse else want)


def test_sub_second_times_keep_the_end_excluded_and_the_start_included():
    source = ListRows([row(t, watts=t) for t in (10, 11, 12)])
    convert = RowConverter(POWER)
    page = read_raw(source, convert, RawRequest(10 * US + 1, 12 * US + 1), page_size=10)
    assert [t // US for t, _, _ in page.values] == [11, 12]
    page = read_raw(source, convert, RawRequest(12 * US - 1, 10 * US - 1), page_size=10)
    assert [t // US for t, _, _ in page.values] == [11, 10]


def test_two_of_start_end_and_count_are_required():
    with pytest.raises(RequestError) as err:
        RawRequest(10 * US, None, 0)
    assert err.value.code == "BadHistoryOperationInvalid"
    with pytest.raises(RequestError):
        RawRequest(None, 10 * US, 0)
    with pytest.raises(RequestError):
        RawRequest(None, None, 5)


def test_datalog_status_bits_become_status_codes():
    assert row_status(0, POWER) == StatusCodes.GOOD
    assert row_status(DatalogStatus.CLOCK_NOT_SYNCHRONISED, POWER) == StatusCodes.UNCERTAIN_CONFIGURATION_ERROR
    assert row_status(DatalogStatus.CLOCK_NOT_SYNCHRONISED, ENERGY) == StatusCodes.UNCERTAIN_CONFIGURATION_ERROR
    assert row_status(DatalogStatus.POWER_OUTAGE, POWER) == StatusCodes.UNCERTAIN_DATA_SUB_NORMAL
    assert row_status(DatalogStatus.POWER_OUTAGE, ENERGY) == StatusCodes.GOOD
    assert row_status(DatalogStatus.CT_RATIO_CHANGED, ENERGY) == StatusCodes.SEMANTICS_CHANGED
    assert row_status(DatalogStatus.VT_RATIO_CHANGED | DatalogStatus.POWER_OUTAGE, POWER) == (
        StatusCodes.UNCERTAIN_DATA_SUB_NORMAL | StatusCodes.SEMANTICS_CHANGED)
    for harmless in (DatalogStatus.CLOCK_CHANGED, DatalogStatus.PULSE_LENGTH_CHANGED,
                     DatalogStatus.PULSE_VALUE_CHANGED, DatalogStatus.LOGBOOK_FULL):
        assert row_status(harmless, POWER) == StatusCodes.GOOD
    # the status of read values is the mapped one
    page = read_raw(ListRows([row(5, 1000, status=DatalogStatus.POWER_OUTAGE)]), RowConverter(POWER),
                    RawRequest(0, 10 * US), page_size=10)
    assert page.values == [(5 * US, 1.0, StatusCodes.UNCERTAIN_DATA_SUB_NORMAL)]


def test_energy_is_sloped_the_rest_stepped():
    assert not stepped(ENERGY)
    assert stepped(POWER) and stepped(BY_CODE["voltage_l1"]) and stepped(BY_CODE["frequency"])


# --- at time ----------------------------------------------------------------------------------
INTERPOLATED = StatusCodes.INTERPOLATED
SUBNORMAL = StatusCodes.UNCERTAIN_DATA_SUB_NORMAL


def test_at_time_raw_where_a_row_is_interpolated_between_stepped_held():
    # energy 10, 20, 30 kWh at 100, 200, 300 s (Wh in column 5)
    source = ListRows([row(100, wh=10_000), row(200, wh=20_000), row(300, wh=30_000)])
    energy = RowConverter(ENERGY)
    got = read_at_time(source, energy, [200 * US, 150 * US, 250 * US + US // 2, 50 * US, 350 * US])
    assert got[0] == (200 * US, 20.0, StatusCodes.GOOD)  # raw
    assert got[1] == (150 * US, 15.0, StatusCodes.GOOD | INTERPOLATED)
    assert got[2][1] == pytest.approx(25.05) and got[2][2] == INTERPOLATED
    assert got[3] == (50 * US, None, StatusCodes.BAD_NO_DATA)  # before the first row
    assert got[4] == (350 * US, 30.0, SUBNORMAL | INTERPOLATED)  # after the last: held
    # the same rows read as a stepped variable
    got = read_at_time(source, energy, [150 * US, 299 * US], stepped_values=True)
    assert [v for _, v, _ in got] == [10.0, 20.0]


@pytest.mark.parametrize("simple", [True, False])
def test_at_time_with_an_uncertain_neighbour_is_uncertain(simple):
    source = ListRows([row(100, wh=10_000), row(200, wh=20_000, status=DatalogStatus.CLOCK_NOT_SYNCHRONISED)])
    (got,) = read_at_time(source, RowConverter(ENERGY), [150 * US], simple_bounds=simple)
    assert got == (150 * US, 15.0, SUBNORMAL | INTERPOLATED)


class _BadWhenNegative(RowConverter):
    """Rows with negative power are Bad (our datalog has no Bad rows; the rules do)."""

    def __init__(self):
        super().__init__(POWER)
        self.statuses = None

    def status(self, r):
        return 0x80000000 if r.raw[P_COL] < 0 else StatusCodes.GOOD

    def __call__(self, r):
        return (r.timestamp * US, r.raw[P_COL] / 1000, self.status(r))


def test_simple_bounds_use_the_nearest_rows_interpolated_bounds_skip_bad_ones():
    source = ListRows([row(100, 1000), row(200, -1), row(300, 3000)])
    bad = _BadWhenNegative()
    # sloped, between a Good row and a Bad one
    (simple,) = read_at_time(source, bad, [150 * US], simple_bounds=True, stepped_values=False)
    (interpolated,) = read_at_time(source, bad, [150 * US], simple_bounds=False, stepped_values=False)
    assert simple == (150 * US, 1.0, SUBNORMAL | INTERPOLATED)  # the value before, held
    assert interpolated == (150 * US, 1.5, SUBNORMAL | INTERPOLATED)  # 100..300, Bad skipped
    # after the Bad row: simple bounds have a Bad row before -> no data
    (simple,) = read_at_time(source, bad, [250 * US], simple_bounds=True, stepped_values=False)
    (interpolated,) = read_at_time(source, bad, [250 * US], simple_bounds=False, stepped_values=False)
    assert simple == (250 * US, None, StatusCodes.BAD_NO_DATA)
    assert interpolated == (250 * US, 2.5, SUBNORMAL | INTERPOLATED)
    # exactly at the Bad row
    (simple,) = read_at_time(source, bad, [200 * US], simple_bounds=True, stepped_values=True)
    (interpolated,) = read_at_time(source, bad, [200 * US], simple_bounds=False, stepped_values=True)
    assert simple == (200 * US, None, StatusCodes.BAD_NO_DATA)
    assert interpolated == (200 * US, 1.0, SUBNORMAL | INTERPOLATED)  # stepped from 100 s


# --- continuation points ----------------------------------------------------------------------
def test_continuation_points_round_trip_and_refuse_garbage():
    state = ContinuationState(KIND_RAW, Cursor(END_BOUND, RowPosition(1_700_000_000, 3, 42)), 0,
                              b"f" * 8, b"n" * 8)
    data = encode_continuation(state)
    assert decode_continuation(data) == state
    at = ContinuationState(KIND_AT_TIME, None, 17, b"f" * 8, b"m" * 8)
    assert decode_continuation(encode_continuation(at)) == at
    for garbage in (b"", b"x" * len(data), data[:-1], b"EH\x09" + data[3:]):
        with pytest.raises(ValueError):
            decode_continuation(garbage)


@pytest.mark.parametrize("quantity", [POWER, ENERGY, BY_CODE["voltage_l1"]])
def test_values_from_tuples_of_the_quantitys_columns_equal_values_from_rows(quantity):
    rows = [StoredRow(100 + k, 1, k, k % 256, tuple(k * 7 + c * 1000 - 500 for c in range(RAW_COLUMNS)))
            for k in range(300)]
    convert = RowConverter(quantity)
    tuples = ListRows(rows).tuples(0, 10**6, convert.columns)
    assert len(convert.columns) == (2 if quantity is ENERGY else 1)
    assert convert.many_tuples(tuples) == convert.many(rows)


def test_a_raw_read_over_the_sqlite_store_equals_one_over_the_same_rows_in_memory(tmp_path):
    from emu_opcua.history.raw import StoreRows
    from emu_opcua.history.sqlite import SqliteHistoryStore

    store = SqliteHistoryStore(tmp_path / "h.sqlite")
    try:
        a = store.new_series("m", "A", 0)
        b = store.new_series("m", "B", 0)
        rows_a = [(1000 + 900 * k - (9000 if k >= 200 else 0), k, k % 256, *range(k, k + RAW_COLUMNS))
                  for k in range(400)]  # the clock set back at 200: repeated timestamps
        rows_b = [(1000 + 900 * k + 450, k, 0, *range(-k, -k + RAW_COLUMNS)) for k in range(150)]
        store.append_tuples(a, rows_a, None)
        store.append_tuples(b, rows_b, None)
        memory = ListRows([StoredRow(t, sid, i, s, tuple(raw)) for sid, rows in ((a.id, rows_a), (b.id, rows_b))
                           for t, i, s, *raw in rows])
        for request in (RawRequest(0, 10**9 * US, bounds=True), RawRequest(100_000 * US, 5_000 * US, bounds=True),
                        RawRequest(50_000 * US, None, max_values=333)):
            for convert in (RowConverter(POWER), RowConverter(ENERGY)):
                pages = []
                for source in (StoreRows(store, "m"), memory):
                    got, cursor = [], None
                    while True:
                        page = read_raw(source, convert, request, page_size=97, cursor=cursor)
                        got.append(page.values)
                        cursor = page.cursor
                        if cursor is None:
                            break
                    pages.append(got)
                assert pages[0] == pages[1] and len(pages[0]) > 2
    finally:
        store.close()
