"""Datalog sync planning, sans-IO: which rows to fetch next, and what an answer means.

One meter's sync is a loop the driver (:mod:`emu_opcua.history.syncer`) runs::

    request = next_request(state, policy)      # NewestRow() or IndexRange(a, b)
    answer  = <ask the meter>                  # rows as parsed, errors of bad lines
    step    = apply_answer(state, request, rows, errors, policy)
    <store step.rows with step.state (and first start step.new_series), in one transaction>

Pages go **ascending by index**, each from the newest stored index (``high``) up to
``high + page - 1``: the first row of every page is one we already hold, and its
fingerprint (timestamp, status, energy counters) must match the stored one. That one
overlapping row is what tells the cases apart:

- it matches: the rows after it are new (incremental sync, resume after any outage);
- it is missing but later rows are there: the meter's ring dropped it and the rows
  after it before we could fetch them (an outage longer than the meter's capacity): the
  indices in between are counted as ``lost``; nothing we could still fetch is skipped;
- it differs, or the meter's newest index is below ``high``: an **index reset** (factory
  reset): a new series for the same serial;
- another serial in the rows: a **replaced meter**: a new series, the old one is kept.

Rows are identified by (series, index), never by time: a clock set back or forward
(status 0x01) only changes the timestamps the meter writes.

First contact (no state) asks for the newest row (``last=1``) for the serial and the
newest index, and starts at ``newest - backfill_rows + 1`` (``backfill_rows=None``: the
oldest the meter holds: index 1, which a meter clips to its oldest held row; a meter
that does not clip answers an empty page, and the scan moves on a page).

A page with a bad row is not stored (:attr:`Step.retry`): a truncated page is retried
until it comes whole; a page whose bad rows stay bad over ``policy.attempts`` tries is
stored without them, the bad rows counted in ``unparseable`` and reported
(:attr:`Step.error`), never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from attrs import frozen

from emu_opcua.meter.datalog import DatalogRow

__all__ = [
    "IndexRange",
    "NewestRow",
    "Step",
    "SyncPolicy",
    "SyncState",
    "apply_answer",
    "fingerprint",
    "next_request",
    "progress",
]

#: Most rows the meter serves in one ``/data/`` request.
PAGE = 3000


@frozen
class SyncPolicy:
    """How one meter is synced (from the configuration)."""

    page: int = PAGE
    backfill_rows: int | None = None  # None: everything the meter holds
    attempts: int = 3  # tries of a page with bad rows before it is stored without them

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.page <= PAGE:
            raise ValueError(f"page must be 1..{PAGE}, got {self.page}")
        if self.backfill_rows is not None and self.backfill_rows < 0:
            raise ValueError(f"backfill_rows must be >= 0, got {self.backfill_rows}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")


@frozen
class SyncState:
    """What sync knows about one meter; committed with every batch of rows."""

    serial: str | None = None
    series_id: int | None = None  # None with a serial: the series is still to be created
    high: int | None = None  # newest index stored in the series
    fingerprint: tuple[int, ...] | None = None  # of row ``high``
    next_from: int | None = None  # the next page's first index
    start: int | None = None  # the series' first stored index (progress)
    newest: int | None = None  # the meter's newest index, as last seen
    lost: int = 0  # indices the meter no longer held when asked (series total)
    unparseable: int = 0  # rows that never parsed (series total)
    current: bool = False  # caught up: the last page was not full

    def to_json(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        if self.fingerprint is not None:
            d["fingerprint"] = list(self.fingerprint)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SyncState:
        if not data:
            return cls()
        names = {a.name for a in attrs.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("fingerprint") is not None:
            kwargs["fingerprint"] = tuple(kwargs["fingerprint"])
        return cls(**kwargs)


@frozen
class NewestRow:
    """Ask for the newest row (``/data/?last=1``)."""


@frozen
class IndexRange:
    """Ask for rows ``first..last`` ascending (``/data/?from=first&to=last``)."""

    first: int
    last: int


Request = NewestRow | IndexRange


@frozen
class Step:
    """What an answer means: the state after it, the rows to store with it."""

    state: SyncState
    rows: tuple[DatalogRow, ...] = ()
    new_series: str | None = None  # start a series for this serial (reason in `event`)
    more: bool = False  # ask again at once (False: wait for the next sync interval)
    retry: bool = False  # the page was not usable: nothing stored, ask again
    event: str | None = None  # first contact, replaced meter, index reset, rows lost
    error: str | None = None  # what was wrong with the answer (bad rows)


def fingerprint(row: DatalogRow) -> tuple[int, ...]:
    """What identifies a stored row when the meter sends it again."""
    return (int(row.timestamp.timestamp()), int(row.status), *row.raw[:8])


def next_request(state: SyncState, policy: SyncPolicy = SyncPolicy()) -> Request:
    if state.serial is None or state.newest is None or state.next_from is None:
        return NewestRow()
    return IndexRange(state.next_from, state.next_from + policy.page - 1)


def progress(state: SyncState) -> float:
    """Fraction of the meter's rows (from the series' start to its newest) stored."""
    if state.current:
        return 1.0
    if state.high is None or state.start is None or not state.newest:
        return 0.0
    span = state.newest - state.start
    return 1.0 if span <= 0 else max(0.0, min(1.0, (state.high - state.start) / span))


def _fresh(serial: str, newest: int, policy: SyncPolicy) -> SyncState:
    depth = policy.backfill_rows
    first = 1 if depth is None else max(1, newest - depth + 1)
    return SyncState(serial=serial, series_id=None, next_from=first, newest=newest)


def apply_answer(state: SyncState, request: Request, rows: Sequence[DatalogRow],
                 errors: Sequence[str] = (), policy: SyncPolicy = SyncPolicy(), *,
                 truncated: bool = False, attempt: int = 1) -> Step:
    """The meaning of the meter's answer ``rows`` (as parsed, in the order sent) to
    ``request``. ``errors``: one message per line that did not parse; ``truncated``:
    the answer was cut; ``attempt``: how many times this request was tried (1 first)."""
    if truncated or (errors and attempt < policy.attempts):
        what = "the page was cut off" if truncated else f"{len(errors)} bad row(s): {errors[0]}"
        return Step(state, retry=True, error=what)
    if isinstance(request, NewestRow):
        return _apply_newest(state, rows, errors, policy)
    return _apply_range(state, request, rows, errors, policy)


def _apply_newest(state: SyncState, rows: Sequence[DatalogRow], errors: Sequence[str],
                  policy: SyncPolicy) -> Step:
    error = f"{len(errors)} bad row(s): {errors[0]}" if errors else None
    if not rows:
        if errors:
            return Step(state, retry=True, error=error)
        # an empty datalog: nothing to do until it has a row
        return Step(attrs.evolve(state, newest=None, current=True), error=error)
    row = max(rows, key=lambda r: r.index)
    serial, newest = row.serial, row.index
    if state.serial is None:
        return Step(_fresh(serial, newest, policy), new_series=serial, more=True,
                    event="first contact", error=error)
    if serial != state.serial:
        return Step(_fresh(serial, newest, policy), new_series=serial, more=True,
                    event=f"meter replaced: serial {state.serial} -> {serial}", error=error)
    if state.high is not None and newest < state.high:
        return Step(_fresh(serial, newest, policy), new_series=serial, more=True,
                    event=f"index reset: the meter's newest index is {newest}, {state.high} was stored",
                    error=error)
    next_from = state.next_from
    if next_from is None:  # an empty datalog before: start like a first contact
        next_from = state.high if state.high is not None else _fresh(serial, newest, policy).next_from
    return Step(attrs.evolve(state, newest=newest, next_from=next_from, current=False), more=True, error=error)


def _apply_range(state: SyncState, request: IndexRange, rows: Sequence[DatalogRow],
                 errors: Sequence[str], policy: SyncPolicy) -> Step:
    error = f"{len(errors)} row(s) could not be parsed and were not stored: {'; '.join(errors)}" if errors else None
    rows = sorted((r for r in rows if request.first <= r.index <= request.last), key=lambda r: r.index)
    serial = state.serial
    if any(r.serial != serial for r in rows):
        other = next(r.serial for r in rows if r.serial != serial)
        newest = max(r.index for r in rows)
        return Step(_fresh(other, newest, policy), new_series=other, more=True,
                    event=f"meter replaced: serial {serial} -> {other}")
    high = state.high
    if not rows:
        if high is not None and request.first <= high:
            # not even the row we hold: the index was reset (the newest row tells), or
            # the ring overran it and this whole page (go on after it)
            return Step(attrs.evolve(state, newest=None, next_from=request.last + 1), more=True)
        if state.newest is not None and request.last < state.newest:
            # a meter that does not clip to its oldest row: move on a page
            return Step(attrs.evolve(state, next_from=request.last + 1), more=True)
        return Step(attrs.evolve(state, current=True), error=error)
    event = None
    lost = state.lost
    if high is not None and request.first <= high:
        if rows[0].index == high:
            if fingerprint(rows[0]) != state.fingerprint:
                newest = max(r.index for r in rows)
                return Step(_fresh(serial, newest, policy), new_series=serial, more=True,
                            event=f"index reset: row {high} is not the row stored")
            rows = rows[1:]
        else:
            gap = rows[0].index - high - 1
            lost += gap
            event = f"{gap} row(s) after index {high} were no longer held by the meter"
    elif high is not None:  # a page after rows the meter did not hold (see above)
        gap = rows[0].index - high - 1
        lost += gap
        event = f"{gap} row(s) after index {high} were no longer held by the meter"
    unparseable = state.unparseable + len(errors)
    if not rows:
        return Step(attrs.evolve(state, current=True, lost=lost, unparseable=unparseable),
                    event=event, error=error)
    top = rows[-1]
    full = len(rows) + (1 if request.first == high else 0) + len(errors) >= request.last - request.first + 1
    newest = max(state.newest or 0, top.index)
    new = attrs.evolve(
        state, high=top.index, fingerprint=fingerprint(top), next_from=top.index,
        start=state.start if state.start is not None else rows[0].index,
        newest=newest, lost=lost, unparseable=unparseable, current=not full and top.index >= newest)
    return Step(new, rows=tuple(rows), more=not new.current, event=event, error=error)
