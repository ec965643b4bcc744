"""Logbook CSV (LP variant of the meter) <-> :class:`LogbookEntry`.

A row has 21 columns (manual, "Aufbau der CSV-Datei des Logbuchs"): timestamp and
timestamp after the change (UTC), index, serial, the four active energy registers
import T1, T2, export T1, T2 [Wh] (laid out as datalog columns 5-8, so
:meth:`LogbookEntry.value` reads them through the catalogue's datalog sources), the index
of the matching datalog row, then CT, VT and S0 settings now/before the change.

CSV handling (separator, header, truncation) is shared with the datalog (``_csv``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from attrs import frozen

from emu_opcua.errors import ParseError, TruncatedDataError
from emu_opcua.meter import _csv
from emu_opcua.meter.catalogue import LOGBOOK_COLUMNS, Quantity
from emu_opcua.meter.datalog import FIRST_RAW_COLUMN, scale_divisor

DOCUMENT = "logbook"

#: Integer columns after the energies (10..21), in order: attribute names.
_SETTINGS = (
    "ct_primary", "ct_primary_before", "ct_secondary", "ct_secondary_before",
    "vt_primary", "vt_primary_before", "vt_secondary", "vt_secondary_before",
    "pulse_value", "pulse_value_before", "pulse_length_ms", "pulse_length_ms_before",
)
_ENERGY_COLUMNS = 4  # columns 5..8

#: The English header line :func:`format_logbook` writes (names are not checked on parse).
HEADER: tuple[str, ...] = (
    "Timestamp", "Timestamp After Change", "Index", "Serial",
    "Active Energy Import L123 T1 [Wh]", "Active Energy Import L123 T2 [Wh]",
    "Active Energy Export L123 T1 [Wh]", "Active Energy Export L123 T2 [Wh]",
    "Datalog Index",
    "CT Primary", "CT Primary Before", "CT Secondary", "CT Secondary Before",
    "VT Primary", "VT Primary Before", "VT Secondary", "VT Secondary Before",
    "S0 Pulse Value [P/kWh]", "S0 Pulse Value Before [P/kWh]",
    "S0 Pulse Length [ms]", "S0 Pulse Length Before [ms]",
)
assert len(HEADER) == LOGBOOK_COLUMNS == 9 + len(_SETTINGS)


@frozen
class LogbookEntry:
    timestamp: datetime
    timestamp_after: datetime
    index: int
    serial: str
    energies: tuple[int, int, int, int]  # Wh: import T1, import T2, export T1, export T2
    datalog_index: int
    ct_primary: int
    ct_primary_before: int
    ct_secondary: int
    ct_secondary_before: int
    vt_primary: int
    vt_primary_before: int
    vt_secondary: int
    vt_secondary_before: int
    pulse_value: int  # S0 pulses per kWh
    pulse_value_before: int
    pulse_length_ms: int
    pulse_length_ms_before: int

    def value(self, quantity: Quantity) -> float:
        """An active energy ``quantity`` at the change, in ``quantity.unit`` (kWh)."""
        src = quantity.datalog
        last = FIRST_RAW_COLUMN + _ENERGY_COLUMNS - 1
        if src is None or not all(FIRST_RAW_COLUMN <= c <= last for c in src.columns):
            raise ValueError(f"{quantity.code} is not in the logbook")
        total = sum(self.energies[c - FIRST_RAW_COLUMN] for c in src.columns)
        factor = src.scale * (src.unit.convert_to(quantity.unit) if quantity.unit else 1.0)
        divisor = scale_divisor(factor)
        return total / divisor if divisor else total * factor


def _convert(number: int, fields: list[str], *, truncated: bool) -> LogbookEntry:
    cls = TruncatedDataError if truncated else ParseError
    suffix = " (last line, document not terminated by a newline)" if truncated else ""
    if len(fields) != LOGBOOK_COLUMNS:
        err = _csv.column_count_error(DOCUMENT, number, len(fields), LOGBOOK_COLUMNS)
        raise (cls(str(err) + suffix) if truncated else err)
    values: list[object] = []
    for col, text in enumerate(fields, 1):
        try:
            if col <= 2:
                values.append(_csv.parse_timestamp(text))
            elif col == 4:
                serial = text.strip()
                if not serial:
                    raise ValueError("empty")
                values.append(serial)
            else:
                n = int(text)
                if col in (3, 9) and n < 0:
                    raise ValueError("negative")
                values.append(n)
        except ValueError as exc:
            raise cls(
                f"bad value {text!r} ({exc}){suffix}",
                where=f"{DOCUMENT} line {number}, column {col} ({HEADER[col - 1]})",
            ) from None
    t, t_after, index, serial = values[:4]
    energies = tuple(values[4:8])
    return LogbookEntry(t, t_after, index, serial, energies, *values[8:])


def _parse(text: bytes | str, *, strict: bool):
    doc = _csv.split_document(text, document=DOCUMENT, columns=LOGBOOK_COLUMNS)
    cut_line = doc.records[-1][0] if doc.unterminated and doc.records else -1
    entries: list[LogbookEntry] = []
    errors: list[ParseError] = []
    for number, fields in doc.records:
        try:
            entries.append(_convert(number, fields, truncated=number == cut_line))
        except ParseError as err:
            if strict:
                raise
            errors.append(err)
    if doc.truncated is not None:
        if strict:
            raise doc.truncated
        errors.append(doc.truncated)
    return tuple(entries), tuple(errors)


def parse_logbook(text: bytes | str) -> tuple[LogbookEntry, ...]:
    """Every logbook row, in the order sent; the first bad line raises (line and column
    named), a cut last line raises :class:`TruncatedDataError`."""
    return _parse(text, strict=True)[0]


def parse_logbook_lenient(text: bytes | str) -> tuple[tuple[LogbookEntry, ...], tuple[ParseError, ...]]:
    """Every good logbook row plus one error per bad (or cut) line."""
    return _parse(text, strict=False)


def format_logbook(entries: Iterable[LogbookEntry], *, header: bool = True, sep: str = ";") -> str:
    def fields(e: LogbookEntry):
        yield _csv.format_timestamp(e.timestamp)
        yield _csv.format_timestamp(e.timestamp_after)
        yield str(e.index)
        yield e.serial
        yield from map(str, e.energies)
        yield str(e.datalog_index)
        for name in _SETTINGS:
            yield str(getattr(e, name))

    return _csv.format_rows((tuple(fields(e)) for e in entries), header=HEADER if header else None, sep=sep)
