"""The converter of Part 13 Annex A into our fixture, on a small CSV of our own."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "convert_aggregate_examples", ROOT / "tools" / "convert_aggregate_examples.py")
convert_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(convert_module)

SAMPLE = """Generate Test Data for Part 13 Spec
Start of Raw Data Tables

HistorianX

Stepped ,true
Treat Uncertain as Bad ,false
Percent Bad ,100
Percent Good ,100
Use Sloped Extrapolation ,false

Timestamp,Value,StatusCode,Notes
12:00:00,,"Bad_NoData","created"
12:00:10,true,"Good",""
12:00:20,undefined,"Bad","ANNOTATION: one ANNOTATION: two"
,,"No Data","No more entries"
End of Raw Data Tables
Start of Processed Data Tables

Aggregate,WorstQuality

HistorianX

Processing Interval ,16000
Stepped ,true
Treat Uncertain as Bad ,false
Percent Bad ,100
Percent Good ,100
Use Sloped Extrapolation ,false

Timestamp,Value,StatusCode,Notes
12:00:00.000,Good,"Good, Calculated, Partial",""
12:00:16.000,Bad,"UncertainDataSubNormal, Calculated, MultipleValues",""
12:01:36.000,,"BadNoData",""
End of Processed Data Tables
Test Aggregates Complete
"""


def test_convert_reads_raw_sets_and_processed_tables():
    data = convert_module.convert(SAMPLE.splitlines())
    raw = data["raw"]["HistorianX"]
    assert raw["config"] == {"stepped": True, "treat_uncertain_as_bad": False,
                             "percent_data_bad": 100, "percent_data_good": 100,
                             "use_sloped_extrapolation": False}
    assert raw["rows"] == [[0, None, 0x809B0000, "created"], [10_000, True, 0, ""],
                           [20_000, None, 0x80000000, "ANNOTATION: one ANNOTATION: two"]]
    (table,) = data["tables"]
    assert table["id"] == "WorstQuality-HistorianX"
    assert table["processing_interval_ms"] == 16000
    assert (table["start_ms"], table["end_ms"]) == (0, 100_000)
    assert table["rows"] == [[0, 0, 0x405], [16_000, 0x80000000, 0x40A40411],
                             [96_000, None, 0x809B0000]]


def test_the_committed_fixture_has_the_converter_shape():
    """The committed fixture names its converter and has its table layout."""
    fixture = json.loads((ROOT / "tests/history/data/aggregate_examples.json").read_text())
    assert fixture["source"].endswith("tools/convert_aggregate_examples.py")
    for table in fixture["tables"]:
        assert set(table) == {"aggregate", "historian", "config", "rows", "start_ms",
                              "end_ms", "processing_interval_ms", "id"}
