"""The interval loop and every aggregate of OPC 10000-13 (sans-IO)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from operator import add, mul, sub

from attrs import frozen

from . import status as sc
from ._window import AggregateConfiguration, Window


@frozen
class ProcessedValue:
    """One interval's result: the value is None when the status is Bad."""

    timestamp: float  # milliseconds, like the raw points
    value: object
    status: int


class AggregateNotSupported(ValueError):
    """The aggregate is not one this engine computes (-> BadAggregateNotSupported)."""

    status_code = sc.BAD_AGGREGATE_NOT_SUPPORTED


class AggregateInvalidInputs(ValueError):
    """The request cannot be processed as given (-> BadAggregateInvalidInputs)."""

    status_code = sc.BAD_AGGREGATE_INVALID_INPUTS


class _Interval:
    """What an aggregate function sees of one interval."""

    __slots__ = ("w", "start", "end", "i0", "i1", "stepped", "config", "partial",
                 "reverse", "annotations")

    def __init__(self, w: Window, start, end, stepped: bool, config: AggregateConfiguration,
                 partial: bool, reverse: bool):
        self.w = w
        self.start = start
        self.end = end
        self.i0, self.i1 = w.span(start, end)
        self.stepped = stepped
        self.config = config
        self.partial = partial
        self.reverse = reverse
        self.annotations: list = []

    @property
    def timestamp(self):
        return self.end if self.reverse else self.start

    def no_data(self) -> tuple:
        return self.timestamp, None, sc.BAD_NO_DATA

    def interpolated(self, t):
        return self.w.interpolated_bound(t, self.stepped, self.config.use_sloped_extrapolation)

    def raw_points(self) -> list[tuple]:
        w = self.w
        return list(zip(w.times[self.i0:self.i1], w.values[self.i0:self.i1],
                        w.statuses[self.i0:self.i1]))

    def with_simple_bounds(self) -> list[tuple] | None:
        """(t, value, status) of the simple start bound, the raw points strictly inside and
        the simple end bound (bounds that are missing are left out); None when the
        interval lies outside the data."""
        w = self.w
        if not w.times or self.start > w.times[-1] or self.end < w.times[0]:
            return None
        points = []
        value, status = w.simple_bound(self.start, self.stepped)
        points.append((self.start, value, status))
        i0 = self.i0
        if i0 < self.i1 and w.times[i0] == self.start:
            i0 += 1
        points.extend(zip(w.times[i0:self.i1], w.values[i0:self.i1], w.statuses[i0:self.i1]))
        value, status = w.simple_bound(self.end, self.stepped)
        points.append((self.end, value, status))
        return points

    def with_interpolated_bounds(self) -> list[tuple] | None:
        w = self.w
        if not w.times or self.end < w.times[0]:
            return None
        if w.end_of_data is not None and self.start > w.end_of_data:
            return None  # no extrapolation of a whole interval after the end of data
        value, status = self.interpolated(self.start)
        points = [(self.start, value, status)]
        points.extend(self.raw_points())
        value, status = self.interpolated(self.end)
        points.append((self.end, value, status))
        return points


# --- status helpers -------------------------------------------------------------------
def _value_based_status(statuses, config: AggregateConfiguration) -> int:
    """Good / Uncertain / Bad from the share of Good and Bad raw values (Part 13 5.4.3)."""
    total = len(statuses)
    if total == 0 or not any(statuses):
        return sc.GOOD
    bad = sum(1 for s in statuses if sc.is_bad(s))
    good = sum(1 for s in statuses if sc.is_good(s))
    if good / total * 100 >= config.percent_data_good:
        return sc.GOOD
    if bad / total * 100 >= config.percent_data_bad:
        return sc.BAD
    return sc.UNCERTAIN_DATA_SUB_NORMAL


class _Region:
    __slots__ = ("start_value", "end_value", "start_time", "duration", "status", "point_status")

    def __init__(self, value, t, status, point_status):
        self.start_value = value
        self.end_value = value
        self.start_time = t
        self.duration = 0.0
        self.status = status
        self.point_status = point_status


def _regions(points, w: Window, ignore_bad: bool, stepped: bool) -> list[_Region]:
    """Split the points into regions between neighbouring points (Part 13 5.4.3.4), each
    with the status the time-weighted aggregates and the duration-based status use."""
    good = w.good
    regions: list[_Region] = []
    current: _Region | None = None
    last = len(points) - 1
    for i, (t, v, s) in enumerate(points):
        status = s
        if not sc.is_bad(s):
            value = float(v)
        else:
            value = current.start_value if current is not None else 0.0
        if ignore_bad and current is not None:
            if not good(s):
                if not sc.is_bad(current.status):
                    current.status = sc.UNCERTAIN_DATA_SUB_NORMAL
                if i < last:
                    continue
            elif not stepped and not sc.is_good(s):
                current.status = sc.UNCERTAIN_DATA_SUB_NORMAL
        if current is not None:
            if stepped:
                current.end_value = current.start_value
            elif good(s):
                if not sc.is_good(s) and not sc.is_bad(current.status):
                    current.status = sc.UNCERTAIN_DATA_SUB_NORMAL
                current.end_value = value
            else:
                if not sc.is_bad(current.status):
                    current.status = sc.UNCERTAIN_DATA_SUB_NORMAL
                if ignore_bad and not sc.is_bad(s):
                    current.end_value = value
            if (not ignore_bad and good(current.point_status) and sc.code(s) == sc.BAD_NO_DATA
                    and i == last):
                current.duration = 1.0  # at the end of data: a region of one tick
            else:
                if sc.is_uncertain(s) and not good(s):
                    status = sc.BAD_NO_DATA
                current.duration = t - current.start_time
            regions.append(current)
        current = _Region(value, t, status, s)
    return regions


def _time_based_status(regions: list[_Region], config: AggregateConfiguration) -> int:
    if not regions:
        return sc.BAD_NO_DATA
    bad = good = total = 0.0
    for r in regions:
        total += r.duration
        if sc.is_bad(r.status) or (config.treat_uncertain_as_bad and sc.is_uncertain(r.status)):
            bad += r.duration
        else:
            good += r.duration
    if total == 0 or good / total * 100 >= config.percent_data_good:
        return sc.GOOD
    if bad / total * 100 >= config.percent_data_bad:
        return sc.BAD
    return sc.UNCERTAIN_DATA_SUB_NORMAL


# --- the aggregates -------------------------------------------------------------------
def _interpolative(iv: _Interval):
    value, status = iv.interpolated(iv.timestamp)
    return iv.timestamp, value, status


def _all_good_average(iv: _Interval):
    """Average when every raw value is exactly Good (0): the common case, at C speed."""
    w = iv.w
    statuses = w.statuses[iv.i0:iv.i1]
    if any(statuses):
        return None
    return iv.timestamp, math.fsum(w.values[iv.i0:iv.i1]) / len(statuses), \
        sc.with_bits(sc.GOOD, sc.CALCULATED)


def _average(iv: _Interval):
    w = iv.w
    statuses = w.statuses[iv.i0:iv.i1]
    if not statuses:
        return iv.no_data()
    fast = _all_good_average(iv)
    if fast is not None:
        return fast
    total = 0.0
    count = 0
    for v, s in zip(w.values[iv.i0:iv.i1], statuses):
        if s & sc.SEVERITY_MASK == sc.GOOD:
            total += v
            count += 1
    if not count:
        return iv.no_data()
    status = _value_based_status(statuses, iv.config)
    return iv.timestamp, total / count, sc.with_bits(status, sc.CALCULATED)


def _time_average(simple: bool, total_only: bool):
    def compute(iv: _Interval):
        if not simple:
            # Part 13 v1.05 5.4.3.6: TimeAverage (and Total, TimeAverage x interval) always
            # uses sloped lines, whatever the variable's Stepped (Mantis 5210)
            iv.stepped = False
            fast = _time_average_all_good(iv, total_only)
            if fast is not None:
                return fast
        points = iv.with_simple_bounds() if simple else iv.with_interpolated_bounds()
        if not points:
            return iv.no_data()
        regions = _regions(points, iv.w, not simple, iv.stepped)
        total = duration = 0.0
        non_good = False
        for r in regions:
            seconds = r.duration / 1000.0
            if not sc.is_bad(r.status):
                total += (r.start_value + r.end_value) * seconds / 2
                duration += seconds
            if not sc.is_good(r.status):
                non_good = True
        if duration == 0:
            # data that is there but not good enough (Uncertain treated as Bad) is Bad;
            # only Bad raw values are no data
            if (simple and any(not sc.is_bad(r.point_status) for r in regions)
                    and _time_based_status(regions, iv.config) == sc.BAD):
                return iv.timestamp, None, sc.with_bits(sc.BAD, sc.CALCULATED)
            return iv.no_data()
        value = total if total_only else total / duration
        if simple:
            status = _time_based_status(regions, iv.config)
            if status == sc.BAD:
                return iv.timestamp, None, sc.with_bits(sc.BAD, sc.CALCULATED)
        else:
            status = sc.UNCERTAIN_DATA_SUB_NORMAL if non_good else sc.GOOD
        return iv.timestamp, value, sc.with_bits(status, sc.CALCULATED)
    return compute


def _time_average_all_good(iv: _Interval, total_only: bool):
    """TimeAverage/Total when both interpolated bounds are Good: the trapezoids
    between the points Good for calculation, summed at C speed; points not Good for
    calculation are skipped (the result is then UncertainDataSubNormal, as the regions of
    Part 13 5.4.3.4 give). None when a bound is not Good (the general path decides)."""
    w = iv.w
    i0, i1 = iv.i0, iv.i1
    if not w.times or iv.end < w.times[0]:
        return None
    if w.end_of_data is not None and iv.start > w.end_of_data:
        return None
    v0, s0 = iv.interpolated(iv.start)
    v1, s1 = iv.interpolated(iv.end)
    if s0 & sc.SEVERITY_MASK or s1 & sc.SEVERITY_MASK:
        return None
    status = sc.GOOD
    ts = w.times[i0:i1]
    vs = w.values[i0:i1]
    statuses = w.statuses[i0:i1]
    if any(statuses) and any(s & sc.SEVERITY_MASK for s in statuses):
        status = sc.UNCERTAIN_DATA_SUB_NORMAL
        good = w.good
        keep = [i for i, s in enumerate(statuses) if good(s)]
        ts = [ts[i] for i in keep]
        vs = [vs[i] for i in keep]
    n = len(ts)
    # sloped lines only (TimeAverage and Total, see _time_average)
    if n == 0:  # no raw point inside: one segment between the bounds
        total = (v0 + v1) * (iv.end - iv.start) / 2
    else:
        head = ts[0] - iv.start
        tail = iv.end - ts[-1]
        dts = map(sub, ts[1:], ts)
        total = ((v0 + vs[0]) * head + math.fsum(map(mul, map(add, vs, vs[1:]), dts))
                 + (vs[-1] + v1) * tail) / 2
    total /= 1000.0  # value x seconds
    value = total if total_only else total / ((iv.end - iv.start) / 1000.0)
    return iv.timestamp, value, sc.with_bits(status, sc.CALCULATED)


def _min_max(kind: str, actual_time: bool):
    """Minimum / Maximum / Range (kind 'min', 'max', 'range') over the raw values."""
    def compute(iv: _Interval):
        w = iv.w
        if iv.i0 == iv.i1:
            return iv.no_data()
        fast = _all_good_min_max(iv, kind, actual_time)
        if fast is not None:
            return fast
        good = w.good
        best = None
        best_t = None
        duplicates = False
        lo = hi = None
        non_good = False
        for t, v, s in zip(w.times[iv.i0:iv.i1], w.values[iv.i0:iv.i1], w.statuses[iv.i0:iv.i1]):
            if not good(s):
                non_good = True
                continue
            if not sc.is_good(s):  # Uncertain (not treated as Bad): does not compete
                continue
            v = float(v)
            if lo is None:
                lo = hi = v
            lo = min(lo, v)
            hi = max(hi, v)
            if kind == "range":
                continue
            if best is None or (v < best if kind == "min" else v > best):
                best, best_t, duplicates = v, t, False
            elif v == best:
                duplicates = True
        if lo is None:
            return iv.no_data()
        status = sc.UNCERTAIN_DATA_SUB_NORMAL if non_good else sc.GOOD
        bits = 0
        if kind == "range":
            value, best_t = hi - lo, None
        else:
            value = best
        if not actual_time and best_t != iv.start:
            bits |= sc.CALCULATED
        if duplicates:
            bits |= sc.MULTI_VALUE
        timestamp = best_t if actual_time else iv.timestamp
        return timestamp, value, sc.with_bits(status, bits)
    return compute


def _all_good_min_max(iv: _Interval, kind: str, actual_time: bool):
    """Minimum/Maximum/Range when every raw value is exactly Good (0), at C speed."""
    w = iv.w
    if any(w.statuses[iv.i0:iv.i1]):
        return None
    vs = [float(v) for v in w.values[iv.i0:iv.i1]]
    if kind == "range":
        return iv.timestamp, max(vs) - min(vs), sc.with_bits(sc.GOOD, sc.CALCULATED)
    best = min(vs) if kind == "min" else max(vs)
    first = vs.index(best)
    t = w.times[iv.i0 + first]
    bits = 0
    if not actual_time and t != iv.start:
        bits |= sc.CALCULATED
    if vs.count(best) > 1:
        bits |= sc.MULTI_VALUE
    return (t if actual_time else iv.timestamp), best, sc.with_bits(sc.GOOD, bits)


def _min_max2(kind: str, actual_time: bool):
    """Minimum2 / Maximum2 / Range2 over the raw values and the simple bounds."""
    def compute(iv: _Interval):
        points = iv.with_simple_bounds()
        if not points:
            return iv.no_data()
        w = iv.w
        good = w.good
        best = best_t = best_s = None
        duplicates = False
        lo = hi = None
        for t, v, s in points:
            if not good(s):
                continue
            if t == iv.end and iv.stepped:
                break
            v = float(v)
            if lo is None:
                lo = hi = v
            lo = min(lo, v)
            hi = max(hi, v)
            if kind == "range":
                continue
            if best is None or (v < best if kind == "min" else v > best):
                best, best_t, best_s, duplicates = v, t, s, False
            elif v == best:
                duplicates = True
        if lo is None:
            status = sc.BAD_NO_DATA
            if iv.partial:
                status = sc.with_bits(status, sc.PARTIAL)
            return iv.timestamp, None, status
        if kind == "range":
            value, best_t, best_s = hi - lo, None, sc.GOOD
        else:
            value = best
        status = best_s
        bits = status & sc.HISTORIAN_BITS_MASK if status & sc.INFO_TYPE_DATA_VALUE else 0
        if not actual_time and best_t != iv.start and not bits & sc.INTERPOLATED:
            bits |= sc.CALCULATED
        if duplicates:
            bits |= sc.MULTI_VALUE
        regions = _regions(points, w, False, iv.stepped)
        code = _time_based_status(regions, iv.config)
        status = sc.with_bits(code, bits)
        timestamp = iv.timestamp
        if actual_time:
            timestamp = best_t
            if best_t == iv.end:  # the end bound belongs to the next interval
                timestamp = best_t - 1
                status = sc.with_bits(status, sc.INTERPOLATED)
        return timestamp, value, status
    return compute


def _start_end(end: bool):
    def compute(iv: _Interval):
        w = iv.w
        if iv.i0 == iv.i1:
            return iv.no_data()
        i = iv.i1 - 1 if end else iv.i0
        return w.times[i], w.values[i], w.statuses[i]
    return compute


def _delta(iv: _Interval):
    """Last minus first Good raw value (Uncertain values are skipped like Bad ones)."""
    w = iv.w
    if iv.i0 == iv.i1:
        return iv.no_data()
    statuses = w.statuses
    goods = [i for i in range(iv.i0, iv.i1) if sc.is_good(statuses[i])]
    if not goods:
        return iv.no_data()
    first, last = goods[0], goods[-1]
    skipped = first != iv.i0 or last != iv.i1 - 1
    status = sc.UNCERTAIN_DATA_SUB_NORMAL if skipped else sc.GOOD
    return iv.timestamp, float(w.values[last]) - float(w.values[first]), sc.with_bits(status, sc.CALCULATED)


def _bound(end: bool):
    def compute(iv: _Interval):
        points = iv.with_simple_bounds()
        if not points:
            return iv.no_data()
        t, value, status = points[-1] if end else points[0]
        if not iv.w.good(status):
            return iv.timestamp, None, sc.BAD_NO_DATA
        if end:  # stamped with the interval, so calculated (not interpolated)
            t = iv.timestamp
            status = sc.with_bits(sc.code(status), sc.CALCULATED)
        return t, value, status
    return compute


def _delta_bounds(iv: _Interval):
    points = iv.with_simple_bounds()
    if not points:
        return iv.no_data()
    (_, v0, s0), (_, v1, s1) = points[0], points[-1]
    good = iv.w.good
    if not good(s0) or not good(s1):
        return iv.no_data()
    status = sc.GOOD if sc.is_good(s0) and sc.is_good(s1) else sc.UNCERTAIN_DATA_SUB_NORMAL
    return iv.timestamp, float(v1) - float(v0), sc.with_bits(status, sc.CALCULATED)


def _count(iv: _Interval):
    w = iv.w
    if not w.times or iv.start > w.times[-1] or iv.end < w.times[0]:
        return iv.no_data()
    statuses = w.statuses[iv.i0:iv.i1]
    count = sum(1 for s in statuses if sc.is_good(s))  # Good only, whatever TUAB says
    status = _value_based_status(statuses, iv.config)
    if not sc.is_bad(status):
        status = sc.with_bits(status, sc.CALCULATED)
    return iv.timestamp, count, status


def _annotation_count(iv: _Interval):
    """Annotations (given apart from the raw values) in the interval."""
    w = iv.w
    if not w.times or iv.start > w.times[-1] or iv.end < w.times[0]:
        return iv.no_data()
    times = iv.annotations
    count = bisect_left(times, iv.end) - bisect_left(times, iv.start)
    return iv.timestamp, count, sc.with_bits(sc.GOOD, sc.CALCULATED)


def _duration_in_state(non_zero: bool):
    def compute(iv: _Interval):
        points = iv.with_simple_bounds()
        if points is None:
            return iv.no_data()
        regions = _regions(points, iv.w, False, True)
        duration = 0.0
        for r in regions:
            if not sc.is_good(r.status):
                continue
            if (r.start_value != 0) == non_zero:
                duration += r.duration
        status = _time_based_status(regions, iv.config)
        return iv.timestamp, duration, sc.with_bits(status, sc.CALCULATED)
    return compute


def _number_of_transitions(iv: _Interval):
    w = iv.w
    if not w.times or iv.start > w.times[-1] or iv.end < w.times[0]:
        return iv.no_data()
    e = w.early(iv.i0)
    # before the first value there is no state: the first value is a transition
    last = float(w.values[e]) if e >= 0 else math.nan
    count = 0
    for v, s in zip(w.values[iv.i0:iv.i1], w.statuses[iv.i0:iv.i1]):
        if not w.good(s):
            continue
        v = float(v)
        if v != last:
            count += 1
        last = v
    status = _value_based_status(w.statuses[iv.i0:iv.i1], iv.config)
    if not sc.is_bad(status):
        status = sc.with_bits(status, sc.CALCULATED)
    return iv.timestamp, count, status


def _duration_good_bad(bad: bool, percent: bool):
    def compute(iv: _Interval):
        points = iv.with_simple_bounds()
        if not points:
            return iv.no_data()
        regions = _regions(points, iv.w, False, True)
        duration = total = 0.0
        for r in regions:
            total += r.duration
            if (sc.is_bad(r.status) if bad else sc.is_good(r.status)):
                duration += r.duration
        if percent:
            duration = duration / total * 100 if total else 0.0
        return iv.timestamp, duration, sc.with_bits(sc.GOOD, sc.CALCULATED)
    return compute


def _worst_quality(with_bounds: bool):
    def compute(iv: _Interval):
        if with_bounds:
            points = iv.with_simple_bounds()
            statuses = [s for _, _, s in points] if points else []
        else:
            statuses = iv.w.statuses[iv.i0:iv.i1]
        if not statuses:
            return iv.no_data()
        worst = sc.GOOD
        bad = uncertain = 0
        for s in statuses:
            if sc.is_bad(s):
                bad += 1
                if not sc.is_bad(worst):
                    worst = sc.code(s)
            elif sc.is_uncertain(s):
                uncertain += 1
                if sc.is_good(worst):
                    worst = sc.code(s)
        bits = sc.CALCULATED
        if (sc.is_bad(worst) and bad > 1) or (sc.is_uncertain(worst) and uncertain > 1):
            bits |= sc.MULTI_VALUE
        return iv.timestamp, worst, sc.with_bits(sc.GOOD, bits)
    return compute


def _statistics(sample: bool, root: bool):
    def compute(iv: _Interval):
        w = iv.w
        statuses = w.statuses[iv.i0:iv.i1]
        if not any(statuses):  # all exactly Good: no filtering
            xs = [float(v) for v in w.values[iv.i0:iv.i1]]
        else:
            xs = [float(v) for v, s in zip(w.values[iv.i0:iv.i1], statuses) if sc.is_good(s)]
        n = len(xs)
        if n == 0:
            return iv.no_data()
        status = sc.GOOD if n == len(statuses) else sc.UNCERTAIN_DATA_SUB_NORMAL
        if n == 1:  # one value has no spread (also for the sample statistics)
            return iv.timestamp, 0.0, sc.with_bits(status, sc.CALCULATED)
        mean = math.fsum(xs) / n
        deviations = [x - mean for x in xs]
        variance = math.fsum(map(mul, deviations, deviations)) / (n - 1 if sample else n)
        value = math.sqrt(variance) if root else variance
        return iv.timestamp, value, sc.with_bits(status, sc.CALCULATED)
    return compute


AggregateFunction = Callable[[_Interval], tuple]

# aggregate name -> (function, sets the Partial bit)
FUNCTIONS: dict[str, tuple[AggregateFunction, bool]] = {
    "Interpolative": (_interpolative, False),
    "Average": (_average, False),
    "TimeAverage": (_time_average(False, False), True),
    "Total": (_time_average(False, True), True),
    "TimeAverage2": (_time_average(True, False), True),
    "Total2": (_time_average(True, True), True),
    "Minimum": (_min_max("min", False), True),
    "Maximum": (_min_max("max", False), True),
    "MinimumActualTime": (_min_max("min", True), True),
    "MaximumActualTime": (_min_max("max", True), True),
    "Range": (_min_max("range", False), True),
    "Minimum2": (_min_max2("min", False), True),
    "Maximum2": (_min_max2("max", False), True),
    "MinimumActualTime2": (_min_max2("min", True), True),
    "MaximumActualTime2": (_min_max2("max", True), True),
    "Range2": (_min_max2("range", False), True),
    "AnnotationCount": (_annotation_count, True),
    "Count": (_count, True),
    "DurationInStateZero": (_duration_in_state(False), True),
    "DurationInStateNonZero": (_duration_in_state(True), True),
    "NumberOfTransitions": (_number_of_transitions, True),
    "Start": (_start_end(False), True),
    "End": (_start_end(True), True),
    "Delta": (_delta, True),
    "StartBound": (_bound(False), True),
    "EndBound": (_bound(True), True),
    "DeltaBounds": (_delta_bounds, True),
    "DurationGood": (_duration_good_bad(False, False), True),
    "DurationBad": (_duration_good_bad(True, False), True),
    "PercentGood": (_duration_good_bad(False, True), True),
    "PercentBad": (_duration_good_bad(True, True), True),
    "WorstQuality": (_worst_quality(False), True),
    "WorstQuality2": (_worst_quality(True), True),
    "StandardDeviationSample": (_statistics(True, True), True),
    "StandardDeviationPopulation": (_statistics(False, True), True),
    "VarianceSample": (_statistics(True, False), True),
    "VariancePopulation": (_statistics(False, False), True),
}


# --- the interval loop ----------------------------------------------------------------
def process(aggregate: str | int, pages: Iterable[Iterable[tuple]], start, end, interval,
            *, stepped: bool = False,
            config: AggregateConfiguration = AggregateConfiguration(),
            annotations: Iterable = (), counter: bool = False) -> Iterator[ProcessedValue]:
    """The processed values of ``aggregate`` over ``[start, end)``, interval by interval.

    ``aggregate`` is a name of :data:`~.catalogue.SUPPORTED_AGGREGATES` or its ns=0
    numeric NodeId. ``pages`` yields pages of raw points ``(time_ms, value, status)`` in
    ascending time (store pages as they come); they are consumed lazily, as the intervals
    need them. ``interval`` 0 means one interval over the whole range. ``end < start``
    returns the intervals latest first (OPC 10000-11 6.4: intervals aligned at ``start``
    going back, the last one shortened at ``end``, each stamped with its later bound).

    ``counter``: the variable is a counter (energy register): a Delta or DeltaBounds that
    goes negative (reset, replaced meter) is Bad|Calculated without a value.
    ``annotations``: annotation times, for AnnotationCount.

    Bad requests raise at once: :class:`AggregateNotSupported`,
    :class:`AggregateInvalidInputs`.
    """
    from .catalogue import aggregate_name  # the catalogue is built on this module

    function, sets_partial = FUNCTIONS[aggregate_name(aggregate)]
    if not interval >= 0:  # negative or NaN
        raise AggregateInvalidInputs(f"processing interval {interval!r} is not >= 0")
    if start == end:
        raise AggregateInvalidInputs("start and end time are equal")
    if counter and function in (_delta, _delta_bounds):
        function = _counter(function)
    return _process(function, sets_partial, pages, start, end, interval, stepped, config,
                    sorted(annotations))


def _counter(function):
    """A counter that went back is not consumption: report it as Bad."""
    def compute(iv: _Interval):
        timestamp, value, status = function(iv)
        if value is not None and not sc.is_bad(status) and value < 0:
            return timestamp, None, sc.with_bits(sc.BAD, sc.CALCULATED)
        return timestamp, value, status
    return compute


def _process(function, sets_partial, pages, start, end, interval, stepped, config,
             annotation_times):
    reverse = end < start
    low, high = (end, start) if reverse else (start, end)
    if interval == 0:
        interval = high - low
    w = Window(pages, config)
    if reverse:
        bounds = []
        t = high
        while t > low:
            s = max(low, t - interval)
            bounds.append((s, t, t - s < interval))
            t = s
        bounds.reverse()  # computed forward over the data, returned latest first: the
        # results (one per interval) are held, the raw points still stream
        results = list(_run(function, sets_partial, w, bounds, stepped, config, True,
                            annotation_times))
        yield from reversed(results)
        return
    yield from _run(function, sets_partial, w, _forward_bounds(low, high, interval), stepped,
                    config, False, annotation_times)


def _forward_bounds(low, high, interval):
    s = low
    while s < high:
        e = s + interval
        if e >= high:
            yield s, high, e > high
            return
        yield s, e, False
        s = e


def _run(function, sets_partial, w: Window, bounds, stepped, config, reverse, annotations):
    for s, e, partial in bounds:
        w.fill_to(e)
        iv = _Interval(w, s, e, stepped, config, partial, reverse)
        iv.annotations = annotations
        timestamp, value, status = function(iv)
        if sets_partial:  # the interval holds the start or the end of the data
            if w.start_of_data is not None and s < w.start_of_data < e:
                status = sc.with_bits(status, sc.PARTIAL)
            if (not reverse and w.end_of_data is not None
                    and s <= w.end_of_data < e):
                status = sc.with_bits(status, sc.PARTIAL)
        if sc.is_bad(status):
            value = None
        yield ProcessedValue(timestamp, value, status)
        w.trim_before(e)
