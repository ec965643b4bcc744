"""The aggregate engine's contract beyond Annex A: catalogue, errors, streaming, order,
counters. (Annex A conformance: test_aggregate_conformance.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
from asyncua import ua

from emu_opcua.history.aggregates import (
    NODE_IDS, SUPPORTED_AGGREGATES, AggregateConfiguration, AggregateInvalidInputs,
    AggregateNotSupported, aggregate_name, process)
from emu_opcua.history.aggregates import status as sc

DAY = 86_400_000
HOUR = 3_600_000
GOOD_CONFIG = AggregateConfiguration(treat_uncertain_as_bad=True)


def test_every_aggregate_of_part_13_with_its_standard_node_id():
    # asyncua's ObjectIds as the fact source for the numbers
    assert len(SUPPORTED_AGGREGATES) == 37
    for name in SUPPORTED_AGGREGATES:
        assert NODE_IDS[name] == getattr(ua.ObjectIds, f"AggregateFunction_{name}"), name
        assert aggregate_name(NODE_IDS[name]) == name


def test_status_constants_are_the_opc_ua_values():
    for constant, name in [(sc.GOOD, "Good"), (sc.UNCERTAIN, "Uncertain"), (sc.BAD, "Bad"),
                           (sc.BAD_NO_DATA, "BadNoData"),
                           (sc.UNCERTAIN_DATA_SUB_NORMAL, "UncertainDataSubNormal"),
                           (sc.GOOD_NO_DATA, "GoodNoData"),
                           (sc.BAD_AGGREGATE_NOT_SUPPORTED, "BadAggregateNotSupported"),
                           (sc.BAD_AGGREGATE_INVALID_INPUTS, "BadAggregateInvalidInputs"),
                           (sc.BAD_AGGREGATE_CONFIGURATION_REJECTED,
                            "BadAggregateConfigurationRejected"),
                           (sc.BAD_TYPE_MISMATCH, "BadTypeMismatch")]:
        assert constant == getattr(ua.StatusCodes, name), name
    # historian bits, OPC 10000-11 6.3 / asyncua's StatusCode layout
    assert (sc.INFO_TYPE_DATA_VALUE, sc.CALCULATED, sc.INTERPOLATED, sc.PARTIAL,
            sc.EXTRA_DATA, sc.MULTI_VALUE) == (0x400, 0x1, 0x2, 0x4, 0x8, 0x10)


def test_the_engine_imports_no_asyncua():
    code = ("import sys, emu_opcua.history.aggregates; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('asyncua', 'asyncio')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("aggregate", ["Median", "average", 2345, 0, True])
def test_unknown_aggregate_is_refused_at_once(aggregate):
    with pytest.raises(AggregateNotSupported):
        process(aggregate, [], 0, 1000, 100)


def test_invalid_inputs_are_refused_at_once():
    with pytest.raises(AggregateInvalidInputs):
        process("Average", [], 0, 1000, -1)
    with pytest.raises(AggregateInvalidInputs):
        process("Average", [], 0, 1000, float("nan"))
    with pytest.raises(AggregateInvalidInputs):
        process("Average", [], 1000, 1000, 10)


@pytest.mark.parametrize("field", ["percent_data_bad", "percent_data_good"])
@pytest.mark.parametrize("value", [-1, 101, 50.5, True])
def test_a_configuration_out_of_range_is_rejected(field, value):
    from emu_opcua.history.aggregates import AggregateConfigurationRejected
    with pytest.raises(AggregateConfigurationRejected, match=field):
        AggregateConfiguration(**{field: value})


def test_each_error_names_its_opc_ua_status_code():
    from emu_opcua.history.aggregates import AggregateConfigurationRejected
    assert AggregateNotSupported.status_code == ua.StatusCodes.BadAggregateNotSupported
    assert AggregateInvalidInputs.status_code == ua.StatusCodes.BadAggregateInvalidInputs
    assert AggregateConfigurationRejected.status_code == \
        ua.StatusCodes.BadAggregateConfigurationRejected


def hourly(days: int, pulled: list[int], value=lambda i: float(i % 24)):
    """Pages of one day of hourly Good points each, counting the pages pulled."""
    for day in range(days):
        pulled[0] += 1
        yield [(day * DAY + h * HOUR, value(day * 24 + h), sc.GOOD) for h in range(24)]


def test_a_ten_year_daily_query_streams_page_by_page():
    days = 3653
    pulled = [0]
    results = process("Average", hourly(days, pulled), 0, days * DAY, DAY, config=GOOD_CONFIG)
    first = next(results)
    assert pulled[0] <= 2  # the first day needs its page and the start of the next
    assert first.value == pytest.approx(11.5)
    for k, r in enumerate(results, start=2):
        assert pulled[0] <= k + 1  # never more than one page ahead of the results
    assert k == days


def test_processing_interval_zero_is_one_interval_over_the_range():
    pulled = [0]
    out = list(process("Count", hourly(10, pulled), 0, 10 * DAY, 0, config=GOOD_CONFIG))
    assert [(r.timestamp, r.value) for r in out] == [(0, 240)]


def test_a_year_long_interval_and_fifteen_minutes():
    pulled = [0]
    out = list(process("Count", hourly(400, pulled), 0, 400 * DAY, 365 * DAY, config=GOOD_CONFIG))
    assert [r.value for r in out] == [365 * 24, 35 * 24]
    assert out[1].status & sc.PARTIAL  # the data ends inside the shortened interval
    out = list(process("Count", hourly(1, [0]), 0, 2 * HOUR, 15 * 60_000, config=GOOD_CONFIG))
    assert [r.value for r in out] == [1, 0, 0, 0, 1, 0, 0, 0]


def test_end_before_start_returns_the_intervals_latest_first():
    rows = [[(t * 1000, float(t), sc.GOOD) for t in range(0, 101)]]
    forward = list(process("TimeAverage", rows, 0, 100_000, 20_000, config=GOOD_CONFIG))
    backward = list(process("TimeAverage", rows, 100_000, 0, 20_000, config=GOOD_CONFIG))
    assert [r.value for r in backward] == [r.value for r in reversed(forward)]
    assert [r.timestamp for r in backward] == [100_000, 80_000, 60_000, 40_000, 20_000]


def test_end_before_start_shortens_the_last_interval_at_end():
    rows = [[(t * 1000, 1.0, sc.GOOD) for t in range(0, 101)]]
    backward = list(process("Total", rows, 100_000, 10_000, 40_000, config=GOOD_CONFIG))
    assert [r.timestamp for r in backward] == [100_000, 60_000, 20_000]
    assert [r.value for r in backward] == pytest.approx([40.0, 40.0, 10.0])


def counter_rows():
    # kWh every 15 min, 1 kWh per reading; a meter swap at 01:30 restarts at 3
    rows, value = [], 100.0
    for k in range(16):
        t = k * 15 * 60_000
        if k == 6:
            value = 3.0
        rows.append((t, value, sc.GOOD))
        value += 1.0
    return [rows]


def test_delta_bounds_is_the_consumption_and_adds_up():
    rows = [[(k * 15 * 60_000, 100.0 + k, sc.GOOD) for k in range(9)]]
    out = list(process("DeltaBounds", rows, 0, 2 * HOUR, HOUR, config=GOOD_CONFIG))
    assert [r.value for r in out] == [4.0, 4.0]  # 100 -> 104 -> 108
    delta = list(process("Delta", rows, 0, 2 * HOUR, HOUR, config=GOOD_CONFIG))
    assert [r.value for r in delta] == [3.0, 3.0]  # first to last reading inside


def test_a_counter_reset_is_bad_never_a_huge_negative():
    out = list(process("DeltaBounds", counter_rows(), 0, 4 * HOUR, HOUR,
                       config=GOOD_CONFIG, counter=True))
    assert [r.value for r in out] == [4.0, None, 4.0, None]  # last: no end bound
    assert out[1].status == sc.with_bits(sc.BAD, sc.CALCULATED)
    plain = list(process("DeltaBounds", counter_rows(), 0, 4 * HOUR, HOUR, config=GOOD_CONFIG))
    assert plain[1].value < 0  # without counter semantics: the raw difference
    delta = list(process("Delta", counter_rows(), 0, 4 * HOUR, HOUR,
                         config=GOOD_CONFIG, counter=True))
    assert [r.value for r in delta] == [3.0, None, 3.0, 3.0]  # 2nd: 104, 105, 3, 4
    assert delta[1].status == sc.with_bits(sc.BAD, sc.CALCULATED)


def random_pages(seed: int, rows: int = 400):
    import random
    rng = random.Random(seed)
    statuses = [sc.GOOD] * 30 + [sc.BAD, sc.UNCERTAIN, sc.UNCERTAIN_DATA_SUB_NORMAL]
    t, points = 0, []
    for _ in range(rows):
        t += rng.choice([500, 1000, 3000, 7000])
        # a few repeated values: MultiValue cases for the minimum and maximum
        points.append((t, float(rng.randint(-8, 8)), rng.choice(statuses)))
    return [points[i:i + 37] for i in range(0, rows, 37)], t


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("aggregate", ["TimeAverage", "Total", "Average", "Minimum",
                                       "MaximumActualTime", "Range"])
def test_fast_paths_agree_with_the_general_rules(monkeypatch, seed, aggregate):
    """The C-speed paths for Good data must give what the region rules give."""
    from emu_opcua.history.aggregates import _engine

    pages, last = random_pages(seed)
    for stepped in (False, True):
        for tuab in (False, True):
            config = AggregateConfiguration(treat_uncertain_as_bad=tuab)
            args = (aggregate, pages, 0, last + 20_000, 10_000)
            fast = list(process(*args, stepped=stepped, config=config))
            with monkeypatch.context() as m:
                m.setattr(_engine, "_time_average_all_good", lambda iv, total_only: None)
                m.setattr(_engine, "_all_good_average", lambda iv: None)
                m.setattr(_engine, "_all_good_min_max", lambda iv, kind, actual_time: None)
                general = list(process(*args, stepped=stepped, config=config))
            assert [(r.timestamp, r.status) for r in fast] == \
                [(r.timestamp, r.status) for r in general]
            assert [r.value for r in fast] == pytest.approx([r.value for r in general])
