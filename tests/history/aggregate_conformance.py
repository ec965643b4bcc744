"""Run the Part 13 Annex A examples (our fixture) through the engine."""

from __future__ import annotations

import json
import math
from pathlib import Path

from emu_opcua.history.aggregates import AggregateConfiguration, process

FIXTURE = Path(__file__).parent / "data" / "aggregate_examples.json"
EXAMPLES = json.loads(FIXTURE.read_text(encoding="utf-8"))
TABLES = {table["id"]: table for table in EXAMPLES["tables"]}


def raw_pages(historian: str, page_size: int = 3):
    rows = [(t, v, s) for t, v, s, _notes in EXAMPLES["raw"][historian]["rows"]]
    return [rows[i:i + page_size] for i in range(0, len(rows), page_size)]


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
            use_sloped_extrapolation=config["use_sloped_extrapolation"])))


def same_value(expected, actual) -> bool:
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    return math.isclose(float(expected), float(actual), rel_tol=1e-6, abs_tol=6e-4)


def differences(table: dict, page_size: int = 3) -> list[str]:
    """One line per expected row that the engine does not reproduce (by index)."""
    got = run_table(table, page_size)
    lines = []
    for i in range(max(len(got), len(table["rows"]))):
        exp = table["rows"][i] if i < len(table["rows"]) else None
        act = got[i] if i < len(got) else None
        if exp is None or act is None:
            lines.append(f"row {i}: expected {exp}, got {act}")
            continue
        t, v, s = exp
        if act.timestamp != t or act.status != s or not same_value(v, act.value):
            lines.append(f"row {i}: expected ({t}, {v}, {s:#010x}), "
                         f"got ({act.timestamp}, {act.value}, {act.status:#010x})")
    return lines


if __name__ == "__main__":
    import sys
    failing = 0
    for tid, table in TABLES.items():
        if len(sys.argv) > 1 and not any(a in tid for a in sys.argv[1:]):
            continue
        try:
            diff = differences(table)
        except Exception as exc:  # report and go on
            diff = [f"raised {type(exc).__name__}: {exc}"]
        if diff:
            failing += 1
            print(tid, table["config"], table["processing_interval_ms"])
            for line in diff:
                print("   ", line)
    print("failing tables:", failing, "of", len(TABLES))
