from datetime import datetime, timezone

import pytest

from emu_opcua.errors import ParseError, TruncatedDataError
from emu_opcua.meter.catalogue import BY_CODE
from emu_opcua.meter.logbook import HEADER, LogbookEntry, format_logbook, parse_logbook, parse_logbook_lenient

from .manual_examples import LOGBOOK_ROW

LINE = ";".join(LOGBOOK_ROW)
EXPECTED = LogbookEntry(
    timestamp=datetime(2022, 9, 28, 10, 35, tzinfo=timezone.utc),
    timestamp_after=datetime(2022, 9, 28, 10, 37, 30, tzinfo=timezone.utc),
    index=3, serial="22350000", energies=(2568, 120, 487, 3615), datalog_index=35,
    ct_primary=500, ct_primary_before=5, ct_secondary=5, ct_secondary_before=5,
    vt_primary=200, vt_primary_before=100, vt_secondary=100, vt_secondary_before=100,
    pulse_value=1000, pulse_value_before=10, pulse_length_ms=2, pulse_length_ms_before=40,
)


def test_manual_example():
    assert parse_logbook(LINE + "\n") == (EXPECTED,)


def test_energy_values_through_catalogue():
    assert EXPECTED.value(BY_CODE["active_energy_import_t1"]) == 2.568
    assert EXPECTED.value(BY_CODE["active_energy_import_total"]) == 2.688
    assert EXPECTED.value(BY_CODE["active_energy_export_t2"]) == 3.615
    with pytest.raises(ValueError):
        EXPECTED.value(BY_CODE["active_power_total"])


@pytest.mark.parametrize("sep", [";", ","])
@pytest.mark.parametrize("header", [True, False])
def test_round_trip(sep, header):
    text = format_logbook([EXPECTED, EXPECTED], header=header, sep=sep)
    assert text.startswith("Timestamp") == header
    assert parse_logbook(text.replace("\n", "\r\n")) == (EXPECTED, EXPECTED)


def test_blank_lines_whitespace_trailing_separator():
    text = "\n" + ";".join(HEADER) + ";\r\n\r\n " + " ; ".join(LOGBOOK_ROW) + " ;\r\n\n"
    assert parse_logbook(text) == (EXPECTED,)


@pytest.mark.parametrize("column, value", [(2, "2022-09-28T10:37:30"), (3, "-3"), (9, "x"), (4, " "), (21, "4.0")])
def test_bad_field(column, value):
    fields = list(LOGBOOK_ROW)
    fields[column - 1] = value
    with pytest.raises(ParseError) as info:
        parse_logbook(LINE + "\n" + ";".join(fields) + "\n")
    assert info.value.where == f"logbook line 2, column {column} ({HEADER[column - 1]})"


def test_wrong_column_count():
    with pytest.raises(ParseError, match="line 1: row has 20 columns, expected 21"):
        parse_logbook(";".join(LOGBOOK_ROW[:-1]) + "\n")


def test_truncated_last_line():
    with pytest.raises(TruncatedDataError, match="line 2"):
        parse_logbook(LINE + "\n" + LINE[:25])


def test_lenient():
    entries, errors = parse_logbook_lenient(LINE + "\n" + LINE.replace(";35;", ";x;") + "\n" + LINE + "\n" + LINE[:9])
    assert entries == (EXPECTED, EXPECTED)
    assert [e.where for e in errors] == ["logbook line 2, column 9 (Datalog Index)", "logbook line 4"]
    assert isinstance(errors[1], TruncatedDataError)
