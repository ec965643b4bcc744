"""Processed history reads (OPC 10000-11 6.4.4, ReadProcessed) over store rows, sans-IO.

The aggregates are :mod:`emu_opcua.history.aggregates`'; this module feeds them one
meter's rows and pages the results:

- **Rows fed.** The engine gets the rows of ``[start, end)`` and, around them, what its
  bounding values look at: back from the start to the second row that is Good for the
  request's configuration, forward from the end to the first one. That is all any
  aggregate of the range uses, so the results are those over the whole archive (tested).
- **Only the bounds.** DeltaBounds, StartBound and EndBound use nothing but the simple
  bounding values (the row at each interval boundary, or the rows right before and after
  it): with a :class:`BoundingSource` only those rows are read, two per boundary instead
  of every row (a month of quarter hours is 2,880 rows, its bounds 4). Same results.
- **Pages.** At most ``limit`` intervals per call; the next page starts at interval
  ``offset`` (a continuation point carries it): intervals keep their alignment to the
  requested start, so a page computes exactly what the whole read would have there.
- **Energy counters across series** (``counter=True``). A counter that goes back (meter
  replaced, register reset) makes the engine's Delta / DeltaBounds Bad|Calculated without
  a value. A series change (new serial, index reset: :mod:`emu_opcua.history.store`) is
  treated the same way, whatever the two counters say: rows of different series are
  never differenced. An interval is across a series change when its DeltaBounds would
  use bounds of both series (``start < first row of the new series`` and ``last row of
  the old series < end``) and, for Delta, when it holds rows of both. The other
  aggregates are not touched (a power sample is a sample, whichever meter took it).

Times: requests in Unix microseconds (as :mod:`emu_opcua.history.raw`), the engine in
milliseconds (rows have whole seconds), results ``(time_us, value, status)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Protocol

from attrs import frozen

from emu_opcua.history.aggregates import AggregateConfiguration, AggregateInvalidInputs, process
from emu_opcua.history.aggregates import status as sc
from emu_opcua.history.raw import MAX_SECONDS, MIN_SECONDS, US, RowConverter, RowSource
from emu_opcua.history.store import RowPosition, StoredRow

#: Aggregates that difference a counter: a series change inside the interval makes them Bad.
COUNTER_AGGREGATES = frozenset({"Delta", "DeltaBounds"})
#: Aggregates computed from the simple bounding values alone (Part 13 5.4.3.34-36, 5.4.2.3).
BOUNDS_ONLY = frozenset({"DeltaBounds", "StartBound", "EndBound"})

_PAGE = 4096  # rows per store read while streaming
_SEEK = 16  # rows per store read while looking for Good rows around the range
#: A reset counter or a series change: Bad, Calculated, no value (the engine's counter rule).
COUNTER_RESET = sc.with_bits(sc.BAD, sc.CALCULATED)

Value = tuple[int, object, int]  # (time_us, value or None, status)


class BoundingSource(Protocol):
    """For each cut (unix seconds, ascending): the last row with ``timestamp < cut`` and
    the first with ``timestamp >= cut`` in RowPosition order; all of them once, ascending
    (``SqliteHistoryStore.read_around`` for one meter). ``exact``: the row before may be
    left out where a row lies exactly at the cut."""

    def __call__(self, cuts: Sequence[int], exact: bool = False) -> list[StoredRow]: ...


def bounding_rows(source: RowSource, cuts: Sequence[int], exact: bool = False) -> list[StoredRow]:
    """:class:`BoundingSource` from any :class:`RowSource` (two reads per cut)."""
    found = {}
    for cut in cuts:
        for rows in (source(MIN_SECONDS, cut, limit=1, reverse=True), source(cut, MAX_SECONDS, limit=1)):
            for r in rows:
                found[r.position] = r
    return [found[k] for k in sorted(found)]


@frozen
class ProcessedRequest:
    """ReadProcessedDetails for one node: times in microseconds, the interval in ms."""

    aggregate: str  # a name of SUPPORTED_AGGREGATES
    start: int
    end: int
    interval: float  # ProcessingInterval, ms; 0: one interval over the range
    config: AggregateConfiguration = AggregateConfiguration()

    def __attrs_post_init__(self) -> None:
        if not self.interval >= 0 or math.isinf(self.interval):
            raise AggregateInvalidInputs(f"processing interval {self.interval!r} is not >= 0")
        if self.start == self.end:
            raise AggregateInvalidInputs("start and end time are equal")

    @property
    def reverse(self) -> bool:
        return self.end < self.start

    def _ms(self, us: int) -> float | int:
        return us // 1000 if us % 1000 == 0 else us / 1000

    @property
    def interval_ms(self) -> float | int:
        iv = self.interval
        return int(iv) if float(iv).is_integer() else iv

    def interval_count(self) -> int:
        """How many intervals (values) the read has."""
        span = abs(self._ms(self.end) - self._ms(self.start))
        iv = self.interval_ms
        if iv == 0 or iv >= span:
            return 1
        return math.ceil(span / iv) if isinstance(span, float) or isinstance(iv, float) else -(-span // iv)

    def from_interval(self, offset: int) -> tuple[float | int, float | int]:
        """(start, end) in ms of the read from interval ``offset`` on (same alignment)."""
        start, end = self._ms(self.start), self._ms(self.end)
        if offset:
            step = offset * self.interval_ms
            start = start - step if self.reverse else start + step
        return start, end


def _points(rows: Sequence[StoredRow], convert: RowConverter) -> list[tuple]:
    value, statuses = convert.value, convert.statuses
    return [(r.timestamp * 1000, value(r.raw), statuses[r.status]) for r in rows]


def _ceil_s(ms: float | int) -> int:
    return math.ceil(ms / 1000) if isinstance(ms, float) else -(-ms // 1000)


def _good(config: AggregateConfiguration):
    def good(status: int) -> bool:
        severity = status & sc.SEVERITY_MASK
        return severity == sc.GOOD or (severity == sc.UNCERTAIN and not config.treat_uncertain_as_bad)
    return good


def stream_pages(source: RowSource, convert: RowConverter, low_ms, high_ms,
                 config: AggregateConfiguration, *, tuples: bool = False) -> Iterator[list[tuple]]:
    """Raw points for ``[low, high)`` and the rows around it the bounding values need.

    ``tuples``: ``source`` returns ``(timestamp, series id, index, status, raw)`` tuples
    (``SqliteHistoryStore.read_tuples``) instead of StoredRows."""
    good = _good(config)
    statuses, value = convert.statuses, convert.value
    if tuples:
        def points(rows):
            return [(r[0] * 1000, value(r[4]), statuses[r[3]]) for r in rows]

        def status(r):
            return statuses[r[3]]

        def position(r):
            return RowPosition(r[0], r[1], r[2])

        def ms(r):
            return r[0] * 1000
    else:
        def points(rows):
            return _points(rows, convert)

        def status(r):
            return statuses[r.status]

        def position(r):
            return r.position

        def ms(r):
            return r.timestamp * 1000
    lo_s, hi_s = _ceil_s(low_ms), _ceil_s(high_ms)
    before: list = []
    goods, after = 0, None
    while goods < 2:
        rows = source(MIN_SECONDS, lo_s, after=after, limit=_SEEK, reverse=True)
        for r in rows:
            before.append(r)
            if good(status(r)):
                goods += 1
                if goods == 2:
                    break
        if len(rows) < _SEEK:
            break
        after = position(rows[-1])
    if before:
        before.reverse()
        yield points(before)
    after = None
    while True:
        rows = source(lo_s, hi_s, after=after, limit=_PAGE)
        if rows:
            yield points(rows)
        if len(rows) < _PAGE:
            break
        after = position(rows[-1])
    after = None
    while True:  # up to the first Good row after the range (the late bound)
        rows = source(hi_s, MAX_SECONDS, after=after, limit=_SEEK)
        for i, r in enumerate(rows):
            if good(status(r)) and ms(r) > high_ms:
                yield points(rows[:i + 1])
                return
        if rows:
            yield points(rows)
        if len(rows) < _SEEK:
            return
        after = position(rows[-1])


def _boundaries(low, high, interval, count: int, reverse: bool) -> list:
    """The first ``count`` intervals' boundary times (ms), ascending, as the engine
    aligns them (forward from ``low``; reverse: back from ``high``)."""
    if interval == 0:
        return [low, high]
    if not reverse:
        times = [low]
        s = low
        for _ in range(count):
            s = s + interval
            if s >= high:
                times.append(high)
                break
            times.append(s)
        return times
    times = [high]
    t = high
    for _ in range(count):
        t = max(low, t - interval)
        times.append(t)
        if t <= low:
            break
    times.reverse()
    return times


def read_processed(source: RowSource, convert: RowConverter, request: ProcessedRequest, *,
                   limit: int, offset: int = 0, stepped: bool = False, counter: bool = False,
                   series_gaps: Sequence[tuple[int, int]] = (),
                   bounding: BoundingSource | None = None,
                   tuples: RowSource | None = None) -> tuple[list[Value], int | None]:
    """One page (at most ``limit`` intervals from interval ``offset``) of a processed read,
    and the offset of the next page (None: done).

    ``series_gaps``: for each series change of the meter, the (earlier, later) of the last
    row time of the old series and the first of the new one, unix seconds (see the
    module docstring). ``bounding``: reads only the bounding rows (the aggregates of
    :data:`BOUNDS_ONLY`). ``tuples``: streams rows from this source of plain tuples
    instead of ``source`` (see :func:`stream_pages`)."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    total = request.interval_count()
    if offset >= total:
        return [], None
    start, end = request.from_interval(offset)
    reverse = request.reverse
    low, high = (end, start) if reverse else (start, end)
    interval = request.interval_ms
    want = min(limit, total - offset)
    if bounding is not None and request.aggregate in BOUNDS_ONLY:
        times = _boundaries(low, high, interval, want, reverse)
        cuts = [_ceil_s(t) for t in times]
        # a row exactly at a boundary is its simple bound: the row before is not needed
        # (only where the boundaries are whole seconds, as rows are)
        exact = all(c * 1000 == t for c, t in zip(cuts, times))
        pages: Iterator[list[tuple]] = iter([_points(bounding(cuts, exact), convert)])
    elif tuples is not None:
        pages = stream_pages(tuples, convert, low, high, request.config, tuples=True)
    else:
        pages = stream_pages(source, convert, low, high, request.config)
    results = itertools.islice(
        process(request.aggregate, pages, start, end, interval, stepped=stepped, config=request.config,
                counter=counter), want)
    check_series = counter and series_gaps and request.aggregate in COUNTER_AGGREGATES
    delta = request.aggregate == "Delta"
    span = interval if interval else high - low
    out: list[Value] = []
    for pv in results:
        t, value, status = pv.timestamp, pv.value, pv.status
        if check_series:
            s, e = (max(low, t - span), t) if reverse else (t, min(high, t + span))
            for lo_s, hi_s in series_gaps:
                if (s <= hi_s * 1000 and lo_s * 1000 < e) if delta else (s < hi_s * 1000 and lo_s * 1000 < e):
                    value, status = None, COUNTER_RESET
                    break
        out.append((round(t * 1000) if isinstance(t, float) else t * 1000, value, status))
    following = offset + len(out)
    return out, (following if following < total else None)


def series_gaps(extents: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """The series changes of a meter from its series' (id, first, last) row times (unix
    seconds): for consecutive series (by first row), (earlier, later) of the old one's last
    row and the new one's first (they overlap when a clock went back)."""
    ordered = sorted(extents, key=lambda e: (e[1], e[0]))
    return [(min(a[2], b[1]), max(a[2], b[1])) for a, b in zip(ordered, ordered[1:])]


__all__ = ["BOUNDS_ONLY", "COUNTER_AGGREGATES", "COUNTER_RESET", "BoundingSource", "ProcessedRequest",
           "bounding_rows", "read_processed", "series_gaps", "stream_pages", "US"]
