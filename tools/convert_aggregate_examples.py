"""Convert the OPC Foundation's machine-readable Annex A of OPC 10000-13 into our fixture.

Usage::

    python tools/convert_aggregate_examples.py AggregateExamples.csv \
        tests/history/data/aggregate_examples.json

The CSV holds five raw data sets ("Historian1".."Historian5", each with its
AggregateConfiguration) and one processed table per (aggregate, historian): its processing
interval, configuration and expected rows (timestamp, value, status text). Every example
queries 12:00:00 to 12:01:40 of one day; times are written here as milliseconds after
12:00:00, status texts as OPC UA StatusCode integers (code bits | InfoType DataValue |
historian bits), so the tests need no parsing of the spec's notation.

The tests read only the JSON this script writes (never the CSV).
"""

from __future__ import annotations

import csv
import json
import sys

# the StatusCode names and historian bit names used by the CSV (values: OPC 10000-4/-6
# and OPC 10000-11 6.3; the same constants as emu_opcua.history.aggregates.status)
CODES = {
    "Good": 0x00000000,
    "Uncertain": 0x40000000,
    "Bad": 0x80000000,
    "BadNoData": 0x809B0000,
    "Bad_NoData": 0x809B0000,
    "UncertainDataSubNormal": 0x40A40000,
}
BITS = {"Calculated": 0x1, "Interpolated": 0x2, "Partial": 0x4, "ExtraData": 0x8,
        "MultipleValues": 0x10}
INFO_TYPE_DATA_VALUE = 0x400
QUERY_START_MS = 0
QUERY_END_MS = 100_000  # 12:01:40: the last row of every 5 s table is 12:01:35

CONFIG_KEYS = {
    "Processing Interval": "processing_interval_ms",
    "Stepped": "stepped",
    "Treat Uncertain as Bad": "treat_uncertain_as_bad",
    "Percent Bad": "percent_data_bad",
    "Percent Good": "percent_data_good",
    "Use Sloped Extrapolation": "use_sloped_extrapolation",
}


def parse_time(text: str) -> int:
    """'12:00:35' or '12:00:35.000' -> milliseconds after 12:00:00."""
    hh, mm, ss = text.split(":")
    return round(((int(hh) - 12) * 3600 + int(mm) * 60 + float(ss)) * 1000)


def parse_status(text: str) -> int:
    names = [part.strip() for part in text.split(",")]
    code = CODES[names[0]]
    bits = 0
    for name in names[1:]:
        bits |= BITS[name]
    return code | (INFO_TYPE_DATA_VALUE | bits if bits else 0)


def parse_value(text: str):
    if text in ("", "undefined"):
        return None
    if text in ("true", "false"):
        return text == "true"
    if text in CODES:  # WorstQuality's value is a StatusCode
        return CODES[text]
    number = float(text)
    return int(number) if number.is_integer() and "." not in text else number


def parse_config_value(key: str, text: str):
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    return int(text)


def convert(lines: list[str]) -> dict:
    rows = list(csv.reader(lines))
    raw: dict[str, dict] = {}
    tables: list[dict] = []
    section = None  # "raw" | "processed"
    current: dict | None = None
    aggregate = None
    in_rows = False
    for row in rows:
        first = row[0].strip() if row else ""
        if not row or not any(cell.strip() for cell in row):
            in_rows = False
            continue
        if first == "Start of Raw Data Tables":
            section = "raw"
            continue
        if first == "Start of Processed Data Tables":
            section = "processed"
            continue
        if first.startswith("End of") or first.startswith("Generate") or first.startswith("Test Aggregates"):
            in_rows = False
            continue
        if first == "Aggregate":
            aggregate = row[1].strip()
            continue
        if first.startswith("Historian") and len(row) == 1:
            current = {"historian": first, "config": {}, "rows": []}
            if section == "raw":
                raw[first] = current
            else:
                current["aggregate"] = aggregate
                current["start_ms"] = QUERY_START_MS
                current["end_ms"] = QUERY_END_MS
                tables.append(current)
            continue
        if first in CONFIG_KEYS:
            assert current is not None
            current["config"][CONFIG_KEYS[first]] = parse_config_value(first, row[1])
            continue
        if first == "Timestamp":
            in_rows = True
            continue
        if in_rows:
            assert current is not None
            timestamp, value, status, notes = (row + ["", "", "", ""])[:4]
            if section == "raw":
                if not timestamp:  # the "No more entries" marker row
                    continue
                current["rows"].append([parse_time(timestamp), parse_value(value),
                                        parse_status(status), notes])
            else:
                current["rows"].append([parse_time(timestamp), parse_value(value),
                                        parse_status(status)])
            continue
        raise ValueError(f"unexpected line in the examples file: {row!r}")
    for table in tables:
        table["processing_interval_ms"] = table["config"].pop("processing_interval_ms")
        table["id"] = f"{table['aggregate']}-{table['historian']}"
    return {
        "source": "OPC 10000-13 Annex A, machine-readable (AggregateExamples.csv), converted by "
                  "tools/convert_aggregate_examples.py",
        "time_unit": "milliseconds after 12:00:00",
        "raw": raw,
        "tables": tables,
    }


def main(argv: list[str]) -> int:
    source, target = argv[1], argv[2]
    with open(source, newline="", encoding="utf-8") as f:
        data = convert(f.read().splitlines())
    with open(target, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    values = sum(len(t["rows"]) for t in data["tables"])
    print(f"{len(data['raw'])} raw data sets, {len(data['tables'])} tables, {values} values -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
