"""Datalog (load profile) CSV <-> :class:`DatalogRow`.

A row has 28 columns (manual, "Aufbau der CSV-Datei des Datenloggers"): timestamp (UTC,
ISO 8601 with ``Z``), index, status (bit field, :class:`DatalogStatus`), meter serial and
24 integers. What each integer column means, its scale and unit, comes from the
catalogue (:attr:`Quantity.datalog`); :meth:`DatalogRow.value` converts a column (or the
sum of several, e.g. T1 + T2) to the quantity's served unit, and one named property per
catalogue quantity gives the value in the datalog's physical unit
(``active_energy_import_t1_wh``, ``current_l1_a``, ``voltage_l1_v``, ``frequency_hz``...).

Parsing is optimistic: each line goes through a fast path (no per-field checks beyond
what ``int()``/``fromisoformat`` do) and only a line that fails is examined column by
column to produce an error naming line, column and value. :func:`parse_datalog` raises on
the first bad line; :func:`parse_datalog_lenient` keeps every good row and returns one
error per bad line, so one malformed row does not lose a 3000-row page. Integer fields
are read with ``int()`` (so ``+5`` and surrounding spaces are accepted); a timestamp must
end in ``Z`` and be ISO 8601 as ``datetime.fromisoformat`` reads it.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Callable, Iterable

from attrs import field, frozen

from emu_opcua.errors import ParseError, TruncatedDataError
from emu_opcua.meter import _csv
from emu_opcua.meter.catalogue import CATALOGUE, DATALOG_COLUMNS, Quantity
from emu_opcua.meter.units import ONE

DOCUMENT = "datalog"
#: First column of :attr:`DatalogRow.raw` (1-based): columns 1-4 are timestamp, index,
#: status and serial.
FIRST_RAW_COLUMN = 5
RAW_COLUMNS = DATALOG_COLUMNS - FIRST_RAW_COLUMN + 1

_fromisoformat = datetime.fromisoformat


class DatalogStatus(enum.IntFlag):
    """Status bits of a datalog row; 0 means no event."""

    CLOCK_CHANGED = 0x01
    CT_RATIO_CHANGED = 0x02
    VT_RATIO_CHANGED = 0x04
    PULSE_LENGTH_CHANGED = 0x08
    PULSE_VALUE_CHANGED = 0x10
    POWER_OUTAGE = 0x20
    CLOCK_NOT_SYNCHRONISED = 0x40
    LOGBOOK_FULL = 0x80


#: IntFlag construction is slow; every possible status byte, built once.
_STATUS: dict[int, DatalogStatus] = {i: DatalogStatus(i) for i in range(256)}


# --- validators (run when a row is built by hand; the parser has checked already) ----
_ZERO = timedelta(0)


def _check_timestamp(_inst, attribute, value) -> None:
    if not isinstance(value, datetime) or value.utcoffset() != _ZERO:
        raise ValueError(f"{attribute.name} must be a tz-aware UTC datetime, got {value!r}")


def _check_index(_inst, attribute, value) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _check_raw(_inst, attribute, value) -> None:
    if type(value) is not tuple or len(value) != RAW_COLUMNS:
        raise ValueError(f"{attribute.name} must be a tuple of {RAW_COLUMNS} ints, got {value!r}")


def _to_status(value) -> DatalogStatus:
    if type(value) is DatalogStatus:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"status must be an int 0..255, got {value!r}")
    return _STATUS[value]


@frozen
class DatalogRow:
    """One datalog row as sent; :attr:`raw` holds columns 5..28 unconverted."""

    timestamp: datetime = field(validator=_check_timestamp)
    index: int = field(validator=_check_index)
    status: DatalogStatus = field(converter=_to_status)
    serial: str = field()
    raw: tuple[int, ...] = field(validator=_check_raw)

    def value(self, quantity: Quantity) -> float:
        """``quantity`` from this row, in ``quantity.unit`` (Wh -> kWh, mA -> A, ...)."""
        return raw_value(quantity, self.raw)

    def column(self, number: int) -> int:
        """Raw integer of 1-based CSV column ``number`` (5..28)."""
        if not FIRST_RAW_COLUMN <= number <= DATALOG_COLUMNS:
            raise IndexError(f"datalog column {number} is not an integer column")
        return self.raw[number - FIRST_RAW_COLUMN]


def scale_divisor(factor: float) -> int:
    """``n`` when ``factor`` is ``1/n`` for an integer n > 1 (exact decimal results), else 0."""
    if 0 < factor < 1:
        n = round(1 / factor)
        if abs(1 / factor - n) < 1e-9:
            return n
    return 0


def _value_getter(quantity: Quantity):
    src = quantity.datalog
    if src is None:
        raise ValueError(f"{quantity.code} is not in the datalog")
    if min(src.columns) < FIRST_RAW_COLUMN:
        raise ValueError(f"{quantity.code} is datalog column {src.columns}, not a value column")
    factor = src.scale
    if quantity.unit is not None:
        factor *= src.unit.convert_to(quantity.unit)
    indices = tuple(c - FIRST_RAW_COLUMN for c in src.columns)
    return (src, indices, scale_divisor(factor), factor)


_VALUE_GETTERS = {
    q.code: _value_getter(q)
    for q in CATALOGUE
    if q.datalog is not None and min(q.datalog.columns) >= FIRST_RAW_COLUMN
}


def raw_value(quantity: Quantity, raw: tuple[int, ...]) -> float:
    """``quantity`` from a row's integer columns 5..28 (:attr:`DatalogRow.raw`, or a stored
    row's), in ``quantity.unit``: the datalog column(s) summed, then scaled."""
    getter = _VALUE_GETTERS.get(quantity.code)
    if getter is None or getter[0] is not quantity.datalog:
        getter = _value_getter(quantity)
    _src, indices, divisor, factor = getter
    total = raw[indices[0]] if len(indices) == 1 else sum(raw[i] for i in indices)
    return total / divisor if divisor else total * factor


def raw_value_reader(quantity: Quantity) -> Callable[[tuple[int, ...]], float]:
    """:func:`raw_value` for one quantity, compiled: ``reader(raw)`` is the value. For
    reading many rows of one quantity (history reads)."""
    _src, indices, divisor, factor = _value_getter(quantity)
    if len(indices) == 1:
        (i,) = indices
        if divisor:
            return lambda raw: raw[i] / divisor
        return lambda raw: raw[i] * factor
    if divisor:
        return lambda raw: sum([raw[j] for j in indices]) / divisor
    return lambda raw: sum([raw[j] for j in indices]) * factor


def raw_columns(quantity: Quantity) -> tuple[int, ...]:
    """The indices into :attr:`DatalogRow.raw` that ``quantity`` is read from (summed)."""
    return _value_getter(quantity)[1]


def columns_value_reader(quantity: Quantity, first: int) -> Callable[[tuple[int, ...]], float]:
    """:func:`raw_value_reader` for a row holding only ``quantity``'s columns
    (:func:`raw_columns`, in that order) from position ``first`` on (a store's
    ``read_columns`` rows)."""
    _src, indices, divisor, factor = _value_getter(quantity)
    if len(indices) == 1:
        if divisor:
            return lambda row: row[first] / divisor
        return lambda row: row[first] * factor
    positions = range(first, first + len(indices))
    if divisor:
        return lambda row: sum([row[j] for j in positions]) / divisor
    return lambda row: sum([row[j] for j in positions]) * factor


#: Catalogue quantities carried by the datalog's value columns, in catalogue order.
DATALOG_QUANTITIES: tuple[Quantity, ...] = tuple(q for q in CATALOGUE if q.code in _VALUE_GETTERS)


def _unit_suffix(symbol: str) -> str:
    return f"_{symbol.lower()}" if symbol else ""


def _make_property(indices: tuple[int, ...], scale: float, doc: str) -> property:
    divisor = scale_divisor(scale)
    if len(indices) == 1:
        (i,) = indices
        if scale == 1.0:
            return property(lambda self: self.raw[i], doc=doc)
        if divisor:
            return property(lambda self: self.raw[i] / divisor, doc=doc)
        return property(lambda self: self.raw[i] * scale, doc=doc)

    def get(self):
        total = sum(self.raw[j] for j in indices)
        if scale == 1.0:
            return total
        return total / divisor if divisor else total * scale

    return property(get, doc=doc)


def _install_properties() -> dict[str, Quantity]:
    """One property per datalog quantity, in the datalog's physical unit: the code plus
    the unit (``current_l1_a``, ``voltage_l1_v``, ``active_energy_import_total_wh``)."""
    names: dict[str, Quantity] = {}
    for q in DATALOG_QUANTITIES:
        src = q.datalog
        unit = src.unit
        name = q.code + ("" if unit is ONE else _unit_suffix(unit.symbol))
        label = f"{q.display_en} in {unit.symbol or 'units of one'}, from datalog column(s) {src.columns}"
        setattr(DatalogRow, name, _make_property(_value_getter(q)[1], src.scale, label))
        names[name] = q
    return names


#: Named physical-unit properties of :class:`DatalogRow` -> the quantity they read.
PROPERTIES: dict[str, Quantity] = _install_properties()


def _header_name(q: Quantity) -> str:
    src = q.datalog
    sym = src.unit.symbol
    if src.scale == 1.0:
        unit = sym
    elif src.scale == 0.001 and sym:
        unit = "m" + sym
    else:
        unit = f"1/{round(1 / src.scale)} {sym}".strip()
    return f"{q.display_en} [{unit}]"


def _build_header() -> tuple[str, ...]:
    by_column = {q.datalog.columns[0]: q for q in DATALOG_QUANTITIES if len(q.datalog.columns) == 1}
    missing = [c for c in range(FIRST_RAW_COLUMN, DATALOG_COLUMNS + 1) if c not in by_column]
    if missing:  # the catalogue must describe every column once
        raise RuntimeError(f"catalogue has no quantity for datalog column(s) {missing}")
    return ("Timestamp", "Index", "Status", "Serial") + tuple(
        _header_name(by_column[c]) for c in range(FIRST_RAW_COLUMN, DATALOG_COLUMNS + 1)
    )


#: Column names from the catalogue's English display names (what this project wrote
#: before it had the field evidence below; the parser accepts any names).
CATALOGUE_HEADER: tuple[str, ...] = _build_header()

#: The header line real meters send (field evidence from public projects reading real
#: meters: ``Active Energy Import L123 T1 [Wh]``, ``Current N [mA]``, ``Voltage L1-N
#: [1/10 V]``, ``Powerfactor L1 [1/100]``, ``Frequency [1/10 Hz]``; the columns between
#: those follow their pattern). :func:`format_datalog` writes it; the parser reads by
#: position and does not check names (firmware versions may word them differently).
HEADER: tuple[str, ...] = (
    "Timestamp", "Index", "Status", "Serial",
    *(f"{kind} Energy {way} L123 {t} [{unit}]" for kind, unit in (("Active", "Wh"), ("Reactive", "varh"))
      for way in ("Import", "Export") for t in ("T1", "T2")),
    *(f"Active Power {p} [W]" for p in ("L123", "L1", "L2", "L3")),
    *(f"Current {p} [mA]" for p in ("L123", "L1", "L2", "L3", "N")),
    *(f"Voltage {p}-N [1/10 V]" for p in ("L1", "L2", "L3")),
    *(f"Powerfactor {p} [1/100]" for p in ("L1", "L2", "L3")),
    "Frequency [1/10 Hz]",
)
assert len(HEADER) == len(CATALOGUE_HEADER) == DATALOG_COLUMNS


# --- parsing ----------------------------------------------------------------------------
_new_object = object.__new__
_set = object.__setattr__


def _checked_row(timestamp: datetime, index: int, status: DatalogStatus, serial: str,
                 raw: tuple[int, ...]) -> DatalogRow:
    """A :class:`DatalogRow` of fields the parser has checked already (a UTC timestamp
    from ``fromisoformat`` of a ``...Z`` text, an int index >= 0, a status from
    ``_STATUS``, a non-empty serial, a tuple of ``RAW_COLUMNS`` ints): built without
    running the validators again, which cost a third of a page's parse."""
    row = _new_object(DatalogRow)
    _set(row, "timestamp", timestamp)
    _set(row, "index", index)
    _set(row, "status", status)
    _set(row, "serial", serial)
    _set(row, "raw", raw)
    return row


@frozen
class DatalogParseResult:
    """What :func:`parse_datalog_lenient` returns: every good row, one error per bad line."""

    rows: tuple[DatalogRow, ...]
    errors: tuple[ParseError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def _diagnose(number: int, fields: list[str], *, truncated: bool) -> ParseError:
    """Why ``fields`` (line ``number``) did not parse: an error naming the column."""
    cls = TruncatedDataError if truncated else ParseError
    suffix = " (last line, document not terminated by a newline)" if truncated else ""
    if len(fields) != DATALOG_COLUMNS:
        err = _csv.column_count_error(DOCUMENT, number, len(fields), DATALOG_COLUMNS)
        return cls(str(err) + suffix) if truncated else err
    for col, text in enumerate(fields, 1):
        where = f"{DOCUMENT} line {number}, column {col} ({HEADER[col - 1]})"
        try:
            if col == 1:
                _csv.parse_timestamp(text)
            elif col == 2:
                if int(text) < 0:
                    raise ValueError("negative")
            elif col == 3:
                if not 0 <= int(text) <= 0xFF:
                    raise ValueError("not 0..255")
            elif col == 4:
                if not text.strip():
                    raise ValueError("empty")
            else:
                int(text)
        except ValueError as exc:
            return cls(f"bad value {text!r} ({exc}){suffix}", where=where)
    return cls(f"row could not be parsed{suffix}", where=f"{DOCUMENT} line {number}")


def _parse(data: bytes | str, *, strict: bool) -> DatalogParseResult:
    doc = _csv.split_document(data, document=DOCUMENT, columns=DATALOG_COLUMNS)
    rows: list[DatalogRow] = []
    errors: list[ParseError] = []
    # a complete-looking but unparsable last line of an unterminated document was cut
    cut_line = doc.records[-1][0] if doc.unterminated and doc.records else -1
    append = rows.append
    new = _checked_row
    status = _STATUS
    ts = _fromisoformat
    n_cols = DATALOG_COLUMNS
    for number, fields in doc.records:
        try:
            if len(fields) != n_cols:
                raise ValueError
            t = fields[0].strip()
            if len(t) < 20 or t[-1] != "Z" or t[10] != "T":
                raise ValueError
            index = int(fields[1])
            if index < 0:
                raise ValueError
            serial = fields[3].strip()
            if not serial:
                raise ValueError
            # fromisoformat reads "...Z" as UTC and refuses an offset before the "Z"
            append(new(ts(t), index, status[int(fields[2])], serial, tuple(map(int, fields[4:]))))
        except (ValueError, KeyError, IndexError, TypeError):
            err = _diagnose(number, fields, truncated=number == cut_line)
            if strict:
                raise err from None
            errors.append(err)
    if doc.truncated is not None:
        if strict:
            raise doc.truncated
        errors.append(doc.truncated)
    return DatalogParseResult(tuple(rows), tuple(errors))


def parse_datalog(text: bytes | str) -> tuple[DatalogRow, ...]:
    """Every row of a datalog CSV, in the order sent; the first bad line raises
    :class:`ParseError` (line and column named), a cut last line :class:`TruncatedDataError`."""
    return _parse(text, strict=True).rows


def parse_datalog_lenient(text: bytes | str) -> DatalogParseResult:
    """Like :func:`parse_datalog` but a bad line (or a cut last line) becomes an entry in
    ``errors`` and every good row is kept. A document-level problem (undecodable bytes,
    a header with the wrong column count) still raises."""
    return _parse(text, strict=False)


# --- formatting ---------------------------------------------------------------------------
def format_datalog(rows: Iterable[DatalogRow], *, header: bool = True, sep: str = ";") -> str:
    """The CSV a meter sends for ``rows`` (in the order given), LF line ends."""
    return _csv.format_rows(
        (
            (_csv.format_timestamp(r.timestamp), str(r.index), str(int(r.status)), r.serial, *map(str, r.raw))
            for r in rows
        ),
        header=HEADER if header else None,
        sep=sep,
    )
