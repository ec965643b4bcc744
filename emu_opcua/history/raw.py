"""Raw and at-time history reads of OPC 10000-11 over store rows, sans-IO.

The rules, in the order a HistoryRead applies them:

- **Time domain** (6.5.3.2): two of start, end and a value count are given. start < end
  reads forward over ``[start, end)``; start > end reads newest first over
  ``(end, start]``; start == end reads the values at that instant. Only a start and a
  count: forward from the start (included); only an end and a count: newest first from
  the end (included, it is the starting point).
- **Bounds** (4.6, Table 1): with ReturnBounds the value at or before the start (forward)
  / at or after it (reverse) comes first, and the one at or after the end (forward) / at
  or before it (reverse) last; a value exactly at the start is its own bound. Where none
  exists the bound is a null value with ``Bad_BoundNotFound``, stamped with the given
  time (or DateTime.MinValue, "not given", when that time was not given). Bounds count
  towards the value count. Nothing to return: ``Good_NoData``.
- **Pages**: a read returns at most ``page_size`` values and, only when something is
  left, a :class:`Cursor` to continue from; a cursor is a position in the total
  :class:`~emu_opcua.history.store.RowPosition` order (plus which bound is pending),
  never a timestamp, so values sharing a timestamp are neither skipped nor repeated.
  Continuation points are cursors as bytes (:func:`encode_cursor`).
- **At time** (6.5.5.2, and OPC 10000-13 3.1.8 / 3.1.9): a value at exactly the asked
  time is returned raw; otherwise it is interpolated between the rows around it, with
  simple bounding values (the nearest rows whatever their status) or interpolated
  bounding values (the nearest non-Bad rows), sloped or stepped as the variable is;
  after the last row the last value is held (stepped extrapolation) as
  ``Uncertain_DataSubNormal``; before the first row: ``Bad_NoData``.
- **Status** (:func:`row_status`): the datalog row's status bits as a StatusCode per
  quantity, see the table in the README ("Reading history").

Times are integer **microseconds** since the Unix epoch (what a Python datetime holds);
rows carry whole seconds. Values are ``(time_us, value or None, status code)`` tuples:
plain data for the OPC UA layer to encode. StatusCodes are their OPC 10000-6 numbers.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

from attrs import frozen

from emu_opcua.history.store import RowPosition, StoredRow
from emu_opcua.meter.catalogue import Quantity
from emu_opcua.meter.datalog import DatalogStatus, columns_value_reader, raw_columns, raw_value_reader

US = 1_000_000
#: Store range limits standing for "no limit" (unix seconds; far outside any row).
MIN_SECONDS = -(2**62)
MAX_SECONDS = 2**62


class StatusCodes:
    """The OPC 10000-6 numbers of the StatusCodes these rules produce."""

    GOOD = 0x00000000
    GOOD_NO_DATA = 0x00A50000
    UNCERTAIN_DATA_SUB_NORMAL = 0x40A40000
    UNCERTAIN_CONFIGURATION_ERROR = 0x420F0000
    BAD_NO_DATA = 0x809B0000
    BAD_BOUND_NOT_FOUND = 0x80D70000
    #: StatusCode bit: the semantics of the value changed (OPC 10000-4 7.39)
    SEMANTICS_CHANGED = 0x00004000
    #: InfoType DataValue + historian bits "Interpolated" (OPC 10000-4 7.39 / 10000-11)
    INTERPOLATED = 0x00000400 | 0x00000002


def severity(code: int) -> int:
    """0 Good, 1 Uncertain, 2 Bad."""
    return code >> 30


def is_bad(code: int) -> bool:
    return code >> 30 >= 2


Value = tuple[int, "float | None", int]  # (time_us, value, status code)


# --- the datalog status byte as StatusCodes ----------------------------------------------------
def row_status(status: int, quantity: Quantity) -> int:
    """The StatusCode of ``quantity``'s value in a row with datalog status byte ``status``.

    - clock not synchronised (0x40): the value is right, its time may not be: Uncertain;
      OPC UA has no code for an unreliable timestamp, ConfigurationError ("a problem with
      the configuration that affects the usefulness of the value": the meter's time
      source) comes closest;
    - power outage in the interval (0x20): energy registers are exact readings, Good;
      the other quantities describe an interval with a gap in supply:
      Uncertain_DataSubNormal;
    - CT or VT ratio changed (0x02, 0x04): Good with the SemanticsChanged bit (values
      from here on are scaled by the new ratio);
    - clock changed (0x01), pulse length / value changed (0x08, 0x10), logbook full
      (0x80): nothing about the value: Good.
    """
    return _status_table(quantity.group == "energy")[status & 0xFF]


def _status_of(status: int, energy: bool) -> int:
    flags = DatalogStatus(status & 0xFF)
    code = StatusCodes.GOOD
    if DatalogStatus.CLOCK_NOT_SYNCHRONISED in flags:
        code = StatusCodes.UNCERTAIN_CONFIGURATION_ERROR
    elif DatalogStatus.POWER_OUTAGE in flags and not energy:
        code = StatusCodes.UNCERTAIN_DATA_SUB_NORMAL
    if flags & (DatalogStatus.CT_RATIO_CHANGED | DatalogStatus.VT_RATIO_CHANGED):
        code |= StatusCodes.SEMANTICS_CHANGED
    return code


_STATUS_TABLES = {energy: tuple(_status_of(s, energy) for s in range(256)) for energy in (False, True)}


def _status_table(energy: bool) -> tuple[int, ...]:
    return _STATUS_TABLES[energy]


def stepped(quantity: Quantity) -> bool:
    """Whether ``quantity``'s history is Stepped (HA Configuration, interpolation).

    Energy counters are sloped: a register read every 15 minutes grows in between, and a
    straight line is the best estimate of it. Power, current, voltage, power factor and
    frequency are load-profile samples: a sample stands for its interval, nothing is
    known of what happened between two, so they are held (stepped)."""
    return quantity.group != "energy"


class RowConverter:
    """A stored row -> (value, status code) for one quantity, compiled once."""

    __slots__ = ("quantity", "value", "statuses", "columns", "tuple_value")

    def __init__(self, quantity: Quantity) -> None:
        self.quantity = quantity
        self.value: Callable[[tuple[int, ...]], float] = raw_value_reader(quantity)
        self.statuses = _status_table(quantity.group == "energy")
        #: the datalog columns the value is read from (what ``RowSource.tuples`` decodes)
        self.columns = raw_columns(quantity)
        self.tuple_value = columns_value_reader(quantity, 4)

    def __call__(self, row: StoredRow) -> Value:
        return (row.timestamp * US, self.value(row.raw), self.statuses[row.status])

    def status(self, row: StoredRow) -> int:
        return self.statuses[row.status]

    def many(self, rows: Sequence[StoredRow]) -> list[Value]:
        value, statuses = self.value, self.statuses
        return [(r.timestamp * US, value(r.raw), statuses[r.status]) for r in rows]

    def many_tuples(self, rows: Sequence[tuple[int, ...]]) -> list[Value]:
        """:meth:`many` of ``RowSource.tuples`` rows (read with :attr:`columns`)."""
        value, statuses = self.tuple_value, self.statuses
        return [(r[0] * US, value(r), statuses[r[3]]) for r in rows]


# --- where rows come from ------------------------------------------------------------------------
class RowSource(Protocol):
    """One meter's rows in :class:`RowPosition` order (``HistoryStore.read`` for one meter)."""

    def __call__(self, start: int, end: int, *, after: RowPosition | None = None,
                 limit: int | None = None, reverse: bool = False) -> list[StoredRow]: ...

    def tuples(self, start: int, end: int, columns: Sequence[int], *, after: RowPosition | None = None,
               limit: int | None = None, reverse: bool = False) -> list[tuple[int, ...]]:
        """The same rows as plain tuples of only ``columns`` (``HistoryStore.read_columns``):
        what a page of values is read from."""
        ...


class StoreRows:
    """A :class:`RowSource`: one meter of a ``HistoryStore``."""

    __slots__ = ("store", "meter")

    def __init__(self, store, meter: str) -> None:
        self.store = store
        self.meter = meter

    def __call__(self, start: int, end: int, *, after: RowPosition | None = None,
                 limit: int | None = None, reverse: bool = False) -> list[StoredRow]:
        return self.store.read(self.meter, start, end, after=after, limit=limit, reverse=reverse)

    def tuples(self, start: int, end: int, columns: Sequence[int], *, after: RowPosition | None = None,
               limit: int | None = None, reverse: bool = False) -> list[tuple[int, ...]]:
        return self.store.read_columns(self.meter, start, end, columns, after=after, limit=limit, reverse=reverse)


class ListRows:
    """A :class:`RowSource` over rows held in memory (tests, small data sets)."""

    def __init__(self, rows: Sequence[StoredRow]) -> None:
        self.rows = sorted(rows, key=lambda r: r.position)
        self._keys = [r.position for r in self.rows]

    def __call__(self, start: int, end: int, *, after: RowPosition | None = None,
                 limit: int | None = None, reverse: bool = False) -> list[StoredRow]:
        keys = self._keys
        lo = bisect.bisect_left(keys, RowPosition(start, MIN_SECONDS, MIN_SECONDS))
        hi = bisect.bisect_left(keys, RowPosition(end, MIN_SECONDS, MIN_SECONDS))
        if after is not None:
            if reverse:
                hi = min(hi, bisect.bisect_left(keys, after))
            else:
                lo = max(lo, bisect.bisect_right(keys, after))
        if lo >= hi:
            return []
        if limit is not None:
            if reverse:
                lo = max(lo, hi - limit)
            else:
                hi = min(hi, lo + limit)
        found = self.rows[lo:hi]
        if reverse:
            found.reverse()
        return found

    def tuples(self, start: int, end: int, columns: Sequence[int], *, after: RowPosition | None = None,
               limit: int | None = None, reverse: bool = False) -> list[tuple[int, ...]]:
        rows = self(start, end, after=after, limit=limit, reverse=reverse)
        return [(r.timestamp, r.series_id, r.index, r.status, *[r.raw[c] for c in columns]) for r in rows]


# --- raw reads ---------------------------------------------------------------------------------
class RequestError(ValueError):
    """A request these rules cannot serve; ``code`` names the OPC UA StatusCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@frozen
class RawRequest:
    """ReadRawModifiedDetails (read raw) in microseconds; None: not given."""

    start: int | None
    end: int | None
    max_values: int = 0  # NumValuesPerNode; 0: no limit
    bounds: bool = False

    def __attrs_post_init__(self) -> None:
        given = (self.start is not None) + (self.end is not None) + (self.max_values > 0)
        if given < 2:
            raise RequestError("BadHistoryOperationInvalid",
                               "two of start time, end time and NumValuesPerNode must be given")
        if self.max_values < 0:
            raise RequestError("BadHistoryOperationInvalid", "NumValuesPerNode must be >= 0")

    @property
    def reverse(self) -> bool:
        if self.start is None:
            return True
        return self.end is not None and self.end < self.start


#: Cursor phases: which part of a read's stream comes next.
START_BOUND, ROWS, END_BOUND, DONE = 0, 1, 2, 3


@frozen
class Cursor:
    """Where a read continues: the phase and the last row returned (None: none yet)."""

    phase: int
    last: RowPosition | None = None


@frozen
class Page:
    values: list[Value]
    cursor: Cursor | None  # None: nothing is left

    @property
    def no_data(self) -> bool:
        return not self.values and self.cursor is None


def _floor_s(us: int) -> int:
    return us // US


def _ceil_s(us: int) -> int:
    return -(-us // US)


class _Plan:
    """A raw request as store ranges (whole seconds)."""

    __slots__ = ("reverse", "lo", "hi", "start_at", "end_at", "start_us", "end_us")

    def __init__(self, request: RawRequest) -> None:
        start, end = request.start, request.end
        self.reverse = request.reverse
        self.start_us = start  # the times a missing bound is stamped with (None: not given)
        self.end_us = end
        if not self.reverse:
            assert start is not None
            self.lo = _ceil_s(start)
            if end is None:
                self.hi = MAX_SECONDS
            elif end > start:
                self.hi = _ceil_s(end)  # the end excluded
            else:  # start == end: the values at that instant
                self.hi = _floor_s(start) + 1
        else:
            s = end if start is None else start  # the (later) starting point, included
            e = None if start is None else end
            self.start_us, self.end_us = s, e
            self.hi = _floor_s(s) + 1
            self.lo = MIN_SECONDS if e is None else _floor_s(e) + 1  # the end excluded


def read_raw(source: RowSource, convert: RowConverter, request: RawRequest, *,
             page_size: int, cursor: Cursor | None = None) -> Page:
    """One page (at most ``page_size`` values, and at most NumValuesPerNode) of a raw read.

    ``cursor`` continues a read from the page that returned it; the request must be the
    same as that read's (the OPC UA layer checks)."""
    if page_size < 1:
        raise ValueError("page_size must be >= 1")
    limit = min(page_size, request.max_values) if request.max_values else page_size
    plan = _Plan(request)
    phase = START_BOUND if cursor is None else cursor.phase
    last = None if cursor is None else cursor.last
    if not request.bounds and phase in (START_BOUND, END_BOUND):
        phase = ROWS if phase == START_BOUND else DONE
    out: list[Value] = []
    if phase == START_BOUND:
        bound = _start_bound(source, plan)
        if bound is not None:
            out.append(convert(bound) if isinstance(bound, StoredRow)
                       else (bound, None, StatusCodes.BAD_BOUND_NOT_FOUND))
        phase = ROWS
    if phase == ROWS and len(out) < limit:
        want = limit - len(out)
        rows = source.tuples(plan.lo, plan.hi, convert.columns, after=last, limit=want + 1, reverse=plan.reverse)
        more = len(rows) > want
        if more:
            del rows[want:]
        out.extend(convert.many_tuples(rows))
        if rows:
            last = RowPosition(*rows[-1][:3])
        if more:
            return Page(out, Cursor(ROWS, last))
        phase = END_BOUND if request.bounds else DONE
    if phase == END_BOUND and len(out) < limit:
        bound = _end_bound(source, plan)
        out.append(convert(bound) if isinstance(bound, StoredRow)
                   else (_missing_time(plan.end_us), None, StatusCodes.BAD_BOUND_NOT_FOUND))
        phase = DONE
    if phase == DONE:
        return Page(out, None)
    # the page is full and a bound or rows are left: rows only if any remain
    if phase == ROWS:
        rows = source(plan.lo, plan.hi, after=last, limit=1, reverse=plan.reverse)
        if not rows and not request.bounds:
            return Page(out, None)
        if not rows:
            phase = END_BOUND
    return Page(out, Cursor(phase, last))


def _missing_time(us: int | None) -> int:
    """The time of a bound that does not exist: the given time, or "not given"."""
    return MIN_TIME_US if us is None else us


#: DateTime.MinValue (1601-01-01, OPC UA's "not given") in Unix microseconds.
MIN_TIME_US = -11_644_473_600 * US


def _start_bound(source: RowSource, plan: _Plan) -> StoredRow | int | None:
    """The start bound as a row outside the range, None when a row at the start time is
    its own bound (it is in the range), or the time of a missing bound."""
    s = plan.start_us
    assert s is not None  # a forward read has a start; a reverse one its starting point
    if not plan.reverse:
        rows = source(MIN_SECONDS, _floor_s(s) + 1, limit=1, reverse=True)  # last at or before
        if not rows:
            return s
        row = rows[0]
        return None if row.timestamp * US == s else row
    rows = source(_ceil_s(s), MAX_SECONDS, limit=1)  # first at or after
    if not rows:
        return s
    row = rows[0]
    return None if row.timestamp * US == s else row


def _end_bound(source: RowSource, plan: _Plan) -> StoredRow | None:
    if not plan.reverse:
        # the first row after the range (at or after the end time; after the instant
        # when start == end)
        rows = source(plan.hi, MAX_SECONDS, limit=1)
    else:
        if plan.end_us is None:
            return None
        rows = source(MIN_SECONDS, _floor_s(plan.end_us) + 1, limit=1, reverse=True)  # last at or before
    return rows[0] if rows else None


# --- at-time reads -------------------------------------------------------------------------------
def read_at_time(source: RowSource, convert: RowConverter, times_us: Sequence[int], *,
                 simple_bounds: bool = True, stepped_values: bool | None = None) -> list[Value]:
    """The value at each time (same order, same count): raw where a row has exactly that
    time, else interpolated (see the module docstring). ``stepped_values`` defaults to
    :func:`stepped` of the converter's quantity."""
    step = stepped(convert.quantity) if stepped_values is None else stepped_values
    return [_at(source, convert, t, simple_bounds, step) for t in times_us]


_SEARCH = 16  # rows fetched at a time while skipping Bad ones (interpolated bounds)


def _nearest(source: RowSource, convert: RowConverter, t: int, *, before: bool,
             skip_bad: bool) -> tuple[StoredRow | None, bool]:
    """The nearest row strictly before (or after) ``t``; with ``skip_bad`` the nearest
    non-Bad one. Returns (row or None, whether Bad rows were skipped)."""
    if before:
        lo, hi, reverse = MIN_SECONDS, _ceil_s(t), True
    else:
        lo, hi, reverse = _floor_s(t) + 1, MAX_SECONDS, False
    skipped = False
    after = None
    while True:
        rows = source(lo, hi, after=after, limit=_SEARCH if skip_bad else 1, reverse=reverse)
        if not rows:
            return None, skipped
        for row in rows:
            if not skip_bad or not is_bad(convert.status(row)):
                return row, skipped
            skipped = True
        after = rows[-1].position


def _at(source: RowSource, convert: RowConverter, t: int, simple: bool, step: bool) -> Value:
    bad_at_t = False
    if t % US == 0:
        exact = source(t // US, t // US + 1, limit=1, reverse=True)  # the last row at t
        if exact:
            _ts, value, status = convert(exact[0])
            if not is_bad(status):
                return (t, value, status)
            if simple:  # a Bad row at the time is the (simple) bound
                return (t, None, StatusCodes.BAD_NO_DATA)
            bad_at_t = True  # interpolated bounds look past it to the nearest non-Bad rows
    before, skipped = _nearest(source, convert, t, before=True, skip_bad=not simple)
    if before is None:
        return (t, None, StatusCodes.BAD_NO_DATA)
    _tb, vb, sb = convert(before)
    if is_bad(sb):  # only with simple bounds: the row before is Bad
        return (t, None, StatusCodes.BAD_NO_DATA)
    uncertain = skipped or bad_at_t or severity(sb) == 1
    after, skipped_after = _nearest(source, convert, t, before=False, skip_bad=not simple)
    if after is None:
        # after the end of the data: the last value held (stepped extrapolation)
        return (t, vb, StatusCodes.UNCERTAIN_DATA_SUB_NORMAL | StatusCodes.INTERPOLATED)
    if step:
        value = vb
    else:
        _ta, va, sa = convert(after)
        if is_bad(sa):  # only with simple bounds: hold the value before
            value, uncertain = vb, True
        else:
            tb, ta = before.timestamp * US, after.timestamp * US
            value = vb + (va - vb) * (t - tb) / (ta - tb)
            uncertain = uncertain or skipped_after or severity(sa) == 1
    code = StatusCodes.UNCERTAIN_DATA_SUB_NORMAL if uncertain else StatusCodes.GOOD
    return (t, value, code | StatusCodes.INTERPOLATED)


# --- continuation points as bytes --------------------------------------------------------------
#: magic, version, kind (1 raw, 2 at-time, 3 processed), phase, has-position, position (timestamp,
#: series, index) or at-time offset, request fingerprint, nonce
_CURSOR = struct.Struct(">2sBBBBqqq8s8s")
_MAGIC = b"EH"
_VERSION = 1
KIND_RAW, KIND_AT_TIME, KIND_PROCESSED = 1, 2, 3


@frozen
class ContinuationState:
    """What a continuation point carries."""

    kind: int
    cursor: Cursor | None  # raw reads
    offset: int  # at-time reads: the index of the next requested time; processed: of the next interval
    fingerprint: bytes  # 8 bytes identifying the request (node and details)
    nonce: bytes  # 8 bytes making every point unique (single use)


def encode_continuation(state: ContinuationState) -> bytes:
    cursor = state.cursor
    last = cursor.last if cursor is not None else None
    phase = cursor.phase if cursor is not None else 0
    if last is None:
        a, b, c = state.offset, 0, 0
    else:
        a, b, c = last.timestamp, last.series_id, last.index
    if len(state.fingerprint) != 8 or len(state.nonce) != 8:
        raise ValueError("fingerprint and nonce must be 8 bytes")
    return _CURSOR.pack(_MAGIC, _VERSION, state.kind, phase, last is not None, a, b, c,
                        state.fingerprint, state.nonce)


def decode_continuation(data: bytes) -> ContinuationState:
    """The state in a continuation point; ``ValueError`` for anything we did not make."""
    if len(data) != _CURSOR.size:
        raise ValueError(f"continuation point of {len(data)} bytes, expected {_CURSOR.size}")
    magic, version, kind, phase, has_last, a, b, c, fingerprint, nonce = _CURSOR.unpack(data)
    if magic != _MAGIC or version != _VERSION or kind not in (KIND_RAW, KIND_AT_TIME, KIND_PROCESSED) \
            or phase > DONE or has_last > 1:
        raise ValueError("not a continuation point of this server")
    if kind in (KIND_AT_TIME, KIND_PROCESSED):
        return ContinuationState(kind, None, a, fingerprint, nonce)
    last = RowPosition(a, b, c) if has_last else None
    return ContinuationState(kind, Cursor(phase, last), 0, fingerprint, nonce)
