"""Streaming intervals over raw pages, and the bounding values of OPC 10000-13 5.4.

A raw point is a tuple ``(time_ms, value, status)``; pages are iterables of them in
ascending time. The window keeps only the rows one interval needs (from the second last
good row before the interval to the first good row after it), so memory stays flat over
any query length.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

from attrs import field, frozen

from . import status as sc


class AggregateConfigurationRejected(ValueError):
    """An AggregateConfiguration outside its ranges (-> BadAggregateConfigurationRejected)."""

    status_code = sc.BAD_AGGREGATE_CONFIGURATION_REJECTED


def _percent(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise AggregateConfigurationRejected(
            f"{attribute.name} must be a whole percentage 0..100, got {value!r}")


@frozen
class AggregateConfiguration:
    """OPC 10000-13 AggregateConfiguration (the server defaults of Part 13 4.2.1.2)."""

    treat_uncertain_as_bad: bool = True
    percent_data_bad: int = field(default=100, validator=_percent)
    percent_data_good: int = field(default=100, validator=_percent)
    use_sloped_extrapolation: bool = False


class Window:
    """The raw points around one interval, fed from pages (ascending time)."""

    __slots__ = ("times", "values", "statuses", "_pages", "_exhausted", "start_of_data",
                 "end_of_data", "tuab")

    def __init__(self, pages: Iterable[Iterable[tuple]], config: AggregateConfiguration):
        self.times: list = []
        self.values: list = []
        self.statuses: list[int] = []
        self._pages: Iterator[Iterable[tuple]] = iter(pages)
        self._exhausted = False
        self.start_of_data = None  # time of the first raw point (BadNoData placeholders aside)
        self.end_of_data = None  # time of the last raw point, once the input is exhausted
        self.tuab = config.treat_uncertain_as_bad

    # --- quality per configuration ------------------------------------------------------
    def good(self, status: int) -> bool:
        """Good for calculations: not Bad, and not Uncertain when TreatUncertainAsBad."""
        severity = status & sc.SEVERITY_MASK
        if severity == sc.GOOD:
            return True
        return severity == sc.UNCERTAIN and not self.tuab

    # --- feeding ------------------------------------------------------------------------
    def fill_to(self, end) -> None:
        """Read pages until one Good row lies after ``end`` (the late bound), or no more.

        Pages are taken whole (columns extended at C speed): the window runs at most one
        page ahead of what the interval needs."""
        if self._exhausted:
            return
        times, values, statuses = self.times, self.values, self.statuses
        while not (times and times[-1] > end and self._good_after(end)):
            page = next(self._pages, None)
            if page is None:
                self._exhausted = True
                self.end_of_data = times[-1] if times else None
                return
            if not page:
                continue
            ss = [row[2] for row in page]  # (zip(*page) is five times slower)
            if max(ss) >= sc.BAD and any(  # only Bad rows can be BadNoData placeholders
                    s & sc.CODE_MASK == sc.BAD_NO_DATA for s in ss if s >= sc.BAD):
                page = [row for row in page if row[2] & sc.CODE_MASK != sc.BAD_NO_DATA]
                if not page:
                    continue
                ss = [row[2] for row in page]
            ts = [row[0] for row in page]
            vs = [row[1] for row in page]
            if times and ts[0] < times[-1]:
                raise ValueError(f"raw points out of order: {ts[0]} after {times[-1]}")
            if self.start_of_data is None:
                self.start_of_data = ts[0]
            times.extend(ts)
            values.extend(vs)
            statuses.extend(ss)

    def _good_after(self, end) -> bool:
        """A Good row lies after ``end``."""
        statuses, good = self.statuses, self.good
        for i in range(bisect_right(self.times, end), len(statuses)):
            if good(statuses[i]):
                return True
        return False

    def trim_before(self, start) -> None:
        """Drop rows no interval starting at ``start`` or later needs: keep the second
        last good row before ``start`` (sloped extrapolation) and everything after it."""
        times, statuses, good = self.times, self.statuses, self.good
        last_before = bisect_left(times, start) - 1
        keep = last_before  # no Good row before: only the simple bound's raw point
        goods = 0
        i = last_before
        while i >= 0:
            if good(statuses[i]):
                keep = i
                goods += 1
                if goods == 2:
                    break
            i -= 1
        if keep > 0:
            del self.times[:keep], self.values[:keep], self.statuses[:keep]

    # --- lookups ------------------------------------------------------------------------
    def span(self, start, end) -> tuple[int, int]:
        """Index range of the raw points with ``start <= t < end``."""
        return bisect_left(self.times, start), bisect_left(self.times, end)

    def early(self, i: int) -> int:
        """Index of the last good point before index ``i``, or -1."""
        statuses, good = self.statuses, self.good
        i -= 1
        while i >= 0 and not good(statuses[i]):
            i -= 1
        return i

    def late(self, i: int) -> int:
        """Index of the first good point at or after index ``i``, or -1."""
        statuses, good = self.statuses, self.good
        n = len(statuses)
        while i < n and not good(statuses[i]):
            i += 1
        return i if i < n else -1

    # --- bounding values (OPC 10000-13 5.4) ---------------------------------------------
    def interpolated_bound(self, t, stepped: bool, sloped_extrapolation: bool):
        """Interpolated bounding value at ``t``: (value, status); bad data around ``t`` is
        skipped (the value becomes UncertainDataSubNormal), and so is extrapolation."""
        times, values, statuses = self.times, self.values, self.statuses
        i = bisect_left(times, t)
        n = len(times)
        if i < n and times[i] == t and self.good(statuses[i]):
            return values[i], statuses[i]
        e = self.early(i)
        if e < 0:
            return None, sc.BAD_NO_DATA
        j = bisect_right(times, t)
        late = self.late(j)
        if not stepped:
            if late >= 0:
                value = _slope(t, times[e], values[e], times[late], values[late])
                status = sc.GOOD
                if not sc.is_good(statuses[e]) or not sc.is_good(statuses[late]) or late != e + 1:
                    status = sc.UNCERTAIN_DATA_SUB_NORMAL
                return value, sc.with_bits(status, sc.INTERPOLATED)
            if sloped_extrapolation:
                e2 = self.early(e)
                if e2 >= 0:
                    value = _slope(t, times[e2], values[e2], times[e], values[e])
                    return value, sc.with_bits(sc.UNCERTAIN_DATA_SUB_NORMAL, sc.INTERPOLATED)
        status = sc.GOOD if sc.is_good(statuses[e]) else sc.UNCERTAIN_DATA_SUB_NORMAL
        if e + 1 >= n or t > times[e + 1]:  # extrapolated, or Bad data skipped
            status = sc.UNCERTAIN_DATA_SUB_NORMAL
        return values[e], sc.with_bits(status, sc.INTERPOLATED)

    def simple_bound(self, t, stepped: bool):
        """Simple bounding value at ``t`` (the raw points next to ``t``, bad or not):
        (value, status)."""
        times, values, statuses = self.times, self.values, self.statuses
        i = bisect_left(times, t)
        n = len(times)
        if i < n and times[i] == t:
            return values[i], statuses[i]
        b = i - 1
        if b < 0 or sc.is_bad(statuses[b]):
            return None, sc.BAD_NO_DATA
        if stepped and i < n:
            # stepped: the value before holds until the next raw value, with its quality
            status = sc.GOOD if sc.is_good(statuses[b]) else sc.UNCERTAIN_DATA_SUB_NORMAL
            return values[b], sc.with_bits(status, sc.INTERPOLATED)
        if not self.good(statuses[b]):
            return None, sc.BAD_NO_DATA
        revert_to_stepped = False
        if not stepped:
            if i < n and self.good(statuses[i]):
                value = _slope(t, times[b], values[b], times[i], values[i])
                status = sc.GOOD
                if not sc.is_good(statuses[b]) or not sc.is_good(statuses[i]):
                    status = sc.UNCERTAIN_DATA_SUB_NORMAL
                return value, sc.with_bits(status, sc.INTERPOLATED)
            revert_to_stepped = True
        if i >= n:
            return None, sc.BAD_NO_DATA  # after the end of data: no simple bound
        status = sc.GOOD if sc.is_good(statuses[b]) and not revert_to_stepped else sc.UNCERTAIN_DATA_SUB_NORMAL
        return values[b], sc.with_bits(status, sc.INTERPOLATED)


def _slope(t, t0, v0, t1, v1):
    v0 = float(v0)
    return v0 + (float(v1) - v0) * (t - t0) / (t1 - t0)
