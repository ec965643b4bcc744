from datetime import datetime, timedelta, timezone

import pytest

from emu_opcua.errors import ParseError, TruncatedDataError
from emu_opcua.meter.catalogue import BY_CODE, CATALOGUE
from emu_opcua.meter.datalog import (
    HEADER, PROPERTIES, DatalogRow, DatalogStatus, format_datalog, parse_datalog, parse_datalog_lenient,
)

from .manual_examples import DATALOG_ROW

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def make_rows(n: int, start: int = 1) -> tuple[DatalogRow, ...]:
    return tuple(
        DatalogRow(T0 + timedelta(minutes=15 * i), start + i, DatalogStatus(0x20 if i % 7 == 3 else 0),
                   "22350000", tuple((i * 31 + c * 7) - (50 if c in (8, 9) else 0) for c in range(24)))
        for i in range(n)
    )


def doc(*lines: str, end: str = "\n") -> str:
    return end.join(lines) + end


MANUAL_LINE = ";".join(DATALOG_ROW)


# --- the manual's example row -------------------------------------------------------------
def test_manual_example_row():
    (row,) = parse_datalog(MANUAL_LINE + "\n")
    assert row.timestamp == datetime(2022, 9, 28, 10, 30, tzinfo=timezone.utc)
    assert row.index == 2
    assert row.status is DatalogStatus.CT_RATIO_CHANGED
    assert row.serial == "22350000"
    assert row.raw == tuple(int(v) for v in DATALOG_ROW[4:])
    assert row.active_power_total_w == 4252
    assert row.active_power_l3_w == 1250
    assert row.current_total_a == 15.68
    assert row.current_l1_a == 8.682
    assert row.current_neutral_a == 0
    assert row.voltage_l1_v == 232.6
    assert row.voltage_l3_v == 230.4
    assert row.power_factor_l2 == 0.99
    assert row.frequency_hz == 50.0


def test_columns_match_manual_table():
    """Independent of the catalogue: the manual's column table, spot-checked by position."""
    raw = tuple(range(1000, 1024))  # column c holds 1000 + c - 5
    row = DatalogRow(T0, 1, 0, "1", raw)
    col = lambda c: 1000 + c - 5  # noqa: E731
    assert row.active_energy_import_t1_wh == col(5)
    assert row.active_energy_export_t2_wh == col(8)
    assert row.reactive_energy_import_t1_varh == col(9)
    assert row.reactive_energy_export_t2_varh == col(12)
    assert row.active_power_total_w == col(13)
    assert row.current_total_a == col(17) / 1000
    assert row.current_neutral_a == col(21) / 1000
    assert row.voltage_l1_v == col(22) / 10
    assert row.power_factor_l1 == col(25) / 100
    assert row.frequency_hz == col(28) / 10
    assert row.column(13) == col(13)


def test_value_converts_to_served_unit_and_sums_tariffs():
    row = DatalogRow(T0, 1, 0, "1", (306722, 1278, 5, 7, 100, 200, 0, 0, 4252) + (0,) * 15)
    assert row.value(BY_CODE["active_energy_import_t1"]) == 306.722  # Wh -> kWh, exact
    assert row.value(BY_CODE["active_energy_import_total"]) == 308.0  # T1 + T2
    assert row.active_energy_import_total_wh == 308000
    assert row.value(BY_CODE["active_energy_export_total"]) == 0.012
    assert row.value(BY_CODE["reactive_energy_import_total"]) == 0.3  # varh -> kvarh
    assert row.value(BY_CODE["active_power_total"]) == 4.252  # W -> kW


def test_value_of_every_datalog_quantity_matches_its_property():
    row = make_rows(5)[4]
    for name, q in PROPERTIES.items():
        physical = getattr(row, name)
        assert row.value(q) == pytest.approx(physical * q.datalog.unit.convert_to(q.unit)), name
    assert len(PROPERTIES) == sum(1 for q in CATALOGUE if q.datalog and min(q.datalog.columns) >= 5)


def test_value_of_quantity_not_in_datalog():
    with pytest.raises(ValueError, match="power_fail_count"):
        make_rows(1)[0].value(BY_CODE["power_fail_count"])
    with pytest.raises(IndexError):
        make_rows(1)[0].column(4)


def test_status_flags():
    line = MANUAL_LINE.replace(";2;2;", ";2;97;", 1)
    (row,) = parse_datalog(line)
    assert row.status == DatalogStatus.CLOCK_CHANGED | DatalogStatus.POWER_OUTAGE | DatalogStatus.CLOCK_NOT_SYNCHRONISED
    assert DatalogStatus.POWER_OUTAGE in row.status
    assert DatalogStatus.LOGBOOK_FULL not in row.status


# --- robustness ----------------------------------------------------------------------------
@pytest.mark.parametrize("sep", [";", ","])
@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_separator_header_line_ends(sep, header, newline):
    rows = make_rows(20)
    text = format_datalog(rows, header=header, sep=sep).replace("\n", newline)
    assert text.startswith("Timestamp") == header
    assert parse_datalog(text) == rows
    assert parse_datalog(text.encode()) == rows


def test_blank_lines_trailing_separator_and_whitespace():
    rows = make_rows(3)
    lines = format_datalog(rows).splitlines()
    messy = "\n\n" + lines[0] + ";\r\n" + "\n".join(
        " " + " ; ".join(line.split(";")) + " ;  " for line in lines[1:]
    ) + "\n\n   \n"
    assert parse_datalog(messy) == rows


def test_header_quoted_and_bom():
    rows = make_rows(2)
    lines = format_datalog(rows).splitlines()
    quoted = ";".join(f'"{h}"' for h in lines[0].split(";"))
    text = "\ufeff" + "\n".join([quoted] + lines[1:]) + "\n"
    assert parse_datalog(text.encode("utf-8")) == rows


def test_empty_and_header_only():
    assert parse_datalog("") == ()
    assert parse_datalog("\n\n") == ()
    assert parse_datalog(";".join(HEADER) + "\n") == ()
    assert parse_datalog(";".join(HEADER)) == ()


def test_order_as_sent_descending():
    rows = make_rows(5)[::-1]
    assert [r.index for r in parse_datalog(format_datalog(rows))] == [5, 4, 3, 2, 1]


def test_complete_last_line_without_newline_accepted():
    rows = make_rows(3)
    assert parse_datalog(format_datalog(rows).rstrip("\n")) == rows


# --- errors ---------------------------------------------------------------------------------
def replace_field(line: str, column: int, value: str) -> str:
    fields = line.split(";")
    fields[column - 1] = value
    return ";".join(fields)


@pytest.mark.parametrize(
    "column, value",
    [(1, "2022-09-28 10:30:00"), (1, "2022-09-28T10:30:00"), (1, "garbage"), (1, ""),
     (2, "x"), (2, "-1"), (3, "256"), (3, "-1"), (3, "0x2"), (4, ""), (5, "1.5"), (13, "abc"),
     (28, ""), (22, "23 26")],
)
def test_bad_field_names_line_and_column(column, value):
    rows = make_rows(3)
    lines = format_datalog(rows).splitlines()  # line 1 is the header
    lines[2] = replace_field(lines[2], column, value)
    with pytest.raises(ParseError) as info:
        parse_datalog("\n".join(lines) + "\n")
    assert not isinstance(info.value, TruncatedDataError)
    assert f"line 3, column {column} ({HEADER[column - 1]})" in info.value.where
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("count", [27, 29, 1])
def test_wrong_column_count(count):
    lines = format_datalog(make_rows(3)).splitlines()
    fields = lines[3].split(";")
    lines[3] = ";".join((fields + ["7", "8"])[:count])
    with pytest.raises(ParseError, match=f"line 4.*{count} columns, expected 28") as info:
        parse_datalog("\n".join(lines) + "\n")
    assert not isinstance(info.value, TruncatedDataError)


def test_header_with_wrong_column_count():
    text = ";".join(HEADER[:-1]) + "\n" + MANUAL_LINE + "\n"
    with pytest.raises(ParseError, match="line 1.*header has 27 columns"):
        parse_datalog(text)


@pytest.mark.parametrize("cut", [1, 10, len(MANUAL_LINE) - 6])
def test_truncated_last_line(cut):
    text = format_datalog(make_rows(4)) + MANUAL_LINE[:cut]
    with pytest.raises(TruncatedDataError, match="line 6"):
        parse_datalog(text)


def test_short_last_line_with_newline_is_column_error_not_truncation():
    text = format_datalog(make_rows(2)) + MANUAL_LINE[:40] + "\n"
    with pytest.raises(ParseError, match="line 4.*columns") as info:
        parse_datalog(text)
    assert not isinstance(info.value, TruncatedDataError)


def test_truncation_detected_by_missing_trailing_separator():
    rows = make_rows(3)
    lines = [line + ";" for line in format_datalog(rows, header=False).splitlines()]
    assert parse_datalog("\n".join(lines) + "\n") == rows
    cut = "\n".join(lines)[:-2]  # "...;4xx;" -> "...;4x": 28 fields, but no trailing ';'
    with pytest.raises(TruncatedDataError, match="line 3"):
        parse_datalog(cut)


def test_unparsable_last_line_without_newline_is_truncation():
    text = format_datalog(make_rows(2)) + replace_field(MANUAL_LINE, 28, "5-")
    with pytest.raises(TruncatedDataError, match="line 4, column 28"):
        parse_datalog(text)


# --- lenient --------------------------------------------------------------------------------
def test_lenient_keeps_good_rows_and_reports_each_bad_line():
    rows = make_rows(3000)
    lines = format_datalog(rows).splitlines()
    lines[101] = replace_field(lines[101], 17, "n/a")  # row index 100 -> line 102
    lines[2001] = lines[2001][:50]
    result = parse_datalog_lenient("\n".join(lines) + "\n")
    assert not result.ok
    assert len(result.rows) == 2998
    assert result.rows == rows[:100] + rows[101:2000] + rows[2001:]
    assert [e.where for e in result.errors] == ["datalog line 102, column 17 (Current L123 [mA])", "datalog line 2002"]
    with pytest.raises(ParseError, match="line 102"):
        parse_datalog("\n".join(lines) + "\n")


def test_lenient_reports_truncated_last_line():
    rows = make_rows(3)
    result = parse_datalog_lenient(format_datalog(rows) + MANUAL_LINE[:30])
    assert result.rows == rows
    assert len(result.errors) == 1 and isinstance(result.errors[0], TruncatedDataError)


def test_lenient_all_good():
    rows = make_rows(3)
    result = parse_datalog_lenient(format_datalog(rows))
    assert result.ok and result.rows == rows and result.errors == ()


def test_lenient_still_rejects_bad_header():
    with pytest.raises(ParseError, match="header"):
        parse_datalog_lenient("Timestamp;Index\n" + MANUAL_LINE)


# --- the row class --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"timestamp": datetime(2024, 1, 1)},  # naive
        {"timestamp": datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=1)))},  # not UTC
        {"timestamp": "2024-01-01T00:00:00Z"},
        {"index": -1},
        {"index": 1.0},
        {"status": 256},
        {"status": True},
        {"raw": (0,) * 23},
        {"raw": [0] * 24},
    ],
)
def test_row_validation(kwargs):
    good = {"timestamp": T0, "index": 1, "status": 0, "serial": "1", "raw": (0,) * 24}
    DatalogRow(**good)
    with pytest.raises(ValueError):
        DatalogRow(**(good | kwargs))


def test_row_is_frozen():
    row = make_rows(1)[0]
    with pytest.raises(AttributeError):
        row.index = 5  # type: ignore[misc]


def test_format_row_and_reject_bad_separator():
    row = DatalogRow(datetime(2024, 3, 1, 10, 15, 7, 900000, tzinfo=timezone.utc), 1, 0x80, "1", (-3,) + (0,) * 23)
    assert format_datalog([row], header=False) == "2024-03-01T10:15:07Z;1;128;1;-3" + ";0" * 23 + "\n"
    with pytest.raises(ValueError):
        format_datalog([row], sep="\t")


def test_parsed_rows_are_the_rows_the_validating_constructor_builds_and_stay_frozen():
    import attrs

    rows = [DatalogRow(datetime(2024, 3, 1, 0, 15 * k, tzinfo=timezone.utc), k, k * 37 % 256, "22000001",
                       tuple(range(k, k + 24))) for k in range(4)]
    parsed = parse_datalog(format_datalog(rows))
    assert parsed == tuple(rows)
    for got, want in zip(parsed, rows):
        assert type(got) is DatalogRow and type(got.status) is DatalogStatus
        assert attrs.astuple(got, recurse=False) == attrs.astuple(want, recurse=False)
        assert hash(got) == hash(want)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            got.index = 99


def _page_with(field: str) -> tuple[list[DatalogRow], str]:
    rows = [DatalogRow(datetime(2024, 3, 1, 1, 15 * k, tzinfo=timezone.utc), 10 + k, 0, "22000001",
                       tuple(range(-k, 24 - k))) for k in range(3)]
    lines = format_datalog(rows).splitlines()
    fields = lines[2].split(";")
    fields[9] = field  # row index 11, column 10 (raw[5])
    lines[2] = ";".join(fields)
    return rows, "\n".join(lines) + "\n"


@pytest.mark.parametrize("field, value", [("+5", 5), (" 7 ", 7), ("007", 7), ("-0", 0), ("1_000", 1000),
                                          ("-98765432109876543210", -98765432109876543210)])
def test_integer_columns_are_read_as_int_reads_them_whatever_else_is_on_the_page(field, value):
    rows, text = _page_with(field)
    parsed = parse_datalog(text)
    assert parsed[1].raw[5] == value
    assert [r.raw for r in parsed[::2]] == [r.raw for r in rows[::2]]
    assert parsed[1].raw[:5] == rows[1].raw[:5] and parsed[1].raw[6:] == rows[1].raw[6:]


@pytest.mark.parametrize("field", ["1,2", "1.5", "1e3", "", "]", "[1]", "],[", "true", "null", "-", "1-2", '"1"'])
def test_a_field_that_is_no_integer_is_an_error_of_its_row_alone(field):
    rows, text = _page_with(field)
    result = parse_datalog_lenient(text)
    assert result.rows == (rows[0], rows[2])
    (error,) = result.errors
    assert "column 10" in str(error)
