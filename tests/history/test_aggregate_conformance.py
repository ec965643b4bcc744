"""Every table of OPC 10000-13 Annex A (our fixture) through the aggregate engine.

The fixture is written by tools/convert_aggregate_examples.py from the OPC Foundation's
machine-readable Annex A. Every expected value must be reproduced, except the values in
DEVIATIONS: where the file contradicts Part 13's own text (or itself) the test states
what the engine returns instead, and why. Run this module as a script to print every
difference (diagnostics while changing the engine).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from emu_opcua.history.aggregates import AggregateConfiguration, process
from emu_opcua.history.aggregates import status as sc

FIXTURE = Path(__file__).parent / "data" / "aggregate_examples.json"
EXAMPLES = json.loads(FIXTURE.read_text(encoding="utf-8"))
TABLES = {table["id"]: table for table in EXAMPLES["tables"]}


def raw_pages(historian: str, page_size: int = 3):
    rows = [(t, v, s) for t, v, s, _notes in EXAMPLES["raw"][historian]["rows"]]
    return [rows[i:i + page_size] for i in range(0, len(rows), page_size)]


def annotations(historian: str) -> list[int]:
    """Annotation times from the raw data's Notes column ("ANNOTATION: ..." each)."""
    times = []
    for t, _v, _s, notes in EXAMPLES["raw"][historian]["rows"]:
        times.extend([t] * notes.count("ANNOTATION:"))
    return times


def run_table(table: dict, page_size: int = 3):
    config = table["config"]
    return list(process(
        table["aggregate"], raw_pages(table["historian"], page_size),
        table["start_ms"], table["end_ms"], table["processing_interval_ms"],
        stepped=config["stepped"],
        config=AggregateConfiguration(
            treat_uncertain_as_bad=config["treat_uncertain_as_bad"],
            percent_data_bad=config["percent_data_bad"],
            percent_data_good=config["percent_data_good"],
            use_sloped_extrapolation=config["use_sloped_extrapolation"]),
        annotations=annotations(table["historian"])))


# the file rounds to 3 or 4 decimals
ABS_TOL = 6e-4


def same_value(expected, actual, abs_tol: float = ABS_TOL) -> bool:
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    return math.isclose(float(expected), float(actual), rel_tol=1e-6, abs_tol=abs_tol)


def differences(table: dict, page_size: int = 3, deviations=None) -> list[str]:
    """One line per expected row that the engine does not reproduce (by index); rows in
    ``deviations`` are checked against the deviation's value instead of the file's."""
    got = run_table(table, page_size)
    lines = []
    rows = list(table["rows"])
    tolerance = [ABS_TOL] * len(rows)
    for (tid, i), deviation in (deviations or {}).items():
        if tid == table["id"]:
            rows[i] = deviation.expected
            tolerance[i] = deviation.abs_tol
    for i in range(max(len(got), len(rows))):
        exp = rows[i] if i < len(rows) else None
        act = got[i] if i < len(got) else None
        if exp is None or act is None:
            lines.append(f"row {i}: expected {exp}, got {act}")
            continue
        t, v, s = exp
        if act.timestamp != t or act.status != s or not same_value(v, act.value, tolerance[i]):
            lines.append(f"row {i}: expected ({t}, {v}, {s:#010x}), "
                         f"got ({act.timestamp}, {act.value}, {act.status:#010x})")
    return lines


class Deviation:
    """A value where we are convinced the file is wrong: what we return, and why."""

    def __init__(self, file_row, expected, reason: str, abs_tol: float = ABS_TOL):
        self.file_row = file_row
        self.expected = expected
        self.reason = reason
        self.abs_tol = abs_tol  # wider where the expected value scales a rounded one


def _file_row(tid: str, i: int):
    return TABLES[tid]["rows"][i]


TOTAL_H3 = (
    "Total-Historian3 holds the stepped areas of Part 13 before Mantis 5210 (fixed in "
    "v1.05): TimeAverage always uses sloped lines between points (5.4.3.6) and Total is "
    "TimeAverage over the interval's seconds (5.4.3.8), and the Total table of Historian3 "
    "was changed to match. The file's TimeAverage-Historian3 already is sloped (we pass "
    "it), so the expected row is that row's value times the seconds of data in the "
    "interval (3 s in the first, 5 s elsewhere), with its status.")
PERCENT_DATA_BAD = (
    "60 % of the interval is Bad (TreatUncertainAsBad: Uncertain regions count as Bad) and "
    "PercentDataBad is 50: Part 13 5.4.3.2.1 says the StatusCode is Bad when the Bad ratio "
    "is greater than or equal to PercentDataBad; the file gives Uncertain. The .NET stack's "
    "GetTimeBasedStatusCode also returns Bad.")
ANNOTATION_COUNT = (
    "The file counts the raw values of every quality (the .NET stack's "
    "ComputeAnnotationCount does the same), not annotations. Part 13 5.4.3.22: "
    "AnnotationCount is the number of annotations in the interval; the raw data's Notes "
    "hold annotations only in Historian1 (two at 12:00:40, one at 12:00:50 and 12:01:10).")


def _deviations() -> dict:
    out = {}
    time_average = TABLES["TimeAverage-Historian3"]["rows"]
    for i in range(18):
        t, value, status = time_average[i]
        seconds = 3 if i == 0 else 5
        out["Total-Historian3", i] = Deviation(
            _file_row("Total-Historian3", i), [t, value * seconds, status], TOTAL_H3,
            abs_tol=ABS_TOL * seconds)
    for tid in ("TimeAverage2-Historian3", "Total2-Historian3"):
        for i in (8, 9, 15, 16):
            t = _file_row(tid, i)[0]
            out[tid, i] = Deviation(_file_row(tid, i), [t, None, sc.with_bits(sc.BAD, sc.CALCULATED)],
                                    PERCENT_DATA_BAD)
    h1_annotations = {2: 2, 3: 1, 4: 1}  # intervals 12:00:32, 12:00:48, 12:01:04
    for h in range(1, 6):
        tid = f"AnnotationCount-Historian{h}"
        for i, (t, value, status) in enumerate(TABLES[tid]["rows"]):
            if value is None:
                continue
            count = h1_annotations.get(i, 0) if h == 1 else 0
            if count != value:
                out[tid, i] = Deviation([t, value, status], [t, count, status], ANNOTATION_COUNT)
    return out


DEVIATIONS = _deviations()


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_annex_a_table(table_id):
    assert differences(TABLES[table_id], deviations=DEVIATIONS) == []


@pytest.mark.parametrize("page_size", [1, 1000])
def test_page_size_does_not_change_results(page_size):
    for table in TABLES.values():
        assert differences(table, page_size, DEVIATIONS) == [], table["id"]


def test_fixture_is_complete():
    """159 tables, 1393 values, 37 aggregates: nothing was lost in conversion."""
    assert len(TABLES) == 159
    assert sum(len(t["rows"]) for t in TABLES.values()) == 1393
    assert len({t["aggregate"] for t in TABLES.values()}) == 37


def test_deviations_are_narrow():
    """Each deviation names a value the file really has, and differs from it."""
    assert len(DEVIATIONS) == 55  # 18 Total-H3, 8 TimeAverage2/Total2-H3, 29 AnnotationCount
    for (tid, i), deviation in DEVIATIONS.items():
        assert TABLES[tid]["rows"][i] == deviation.file_row
        assert deviation.expected != deviation.file_row, (tid, i)
        assert deviation.reason


if __name__ == "__main__":
    import sys
    failing = 0
    for tid, table in TABLES.items():
        names = [a for a in sys.argv[1:] if a != "-d"]
        if names and not any(a in tid for a in names):
            continue
        try:
            diff = differences(table, deviations=DEVIATIONS if "-d" in sys.argv else None)
        except Exception as exc:  # report and go on
            diff = [f"raised {type(exc).__name__}: {exc}"]
        if diff:
            failing += 1
            print(tid, table["config"], table["processing_interval_ms"])
            for line in diff:
                print("   ", line)
    print("failing tables:", failing, "of", len(TABLES))
