"""Logbook sync planning, sans-IO: like the datalog's (:mod:`emu_opcua.history.sync`).

Pages go ascending by index from the newest stored entry (``high``) up to
``high + page - 1``: the first entry of every page is one already stored and must match
its fingerprint (timestamp, serial, datalog index); the entries after it are new. The
logbook is small (the meter keeps at most a few thousand entries, appended by hand-made
changes), so anything unexpected is answered by a **rescan from entry 1**: the stored
entry is missing or differs (the logbook was cleared, the meter replaced), or an entry
of another serial shows up. A rescan stores nothing twice: logbook events are keyed by
(serial, index, timestamp) (:func:`emu_opcua.history.events.logbook_events`), so only
entries never seen before are new. A meter without a logbook answers 404: the driver
stops asking (``absent``).

The state is committed with the events of each page, in one transaction
(:meth:`emu_opcua.history.sqlite.SqliteHistoryStore.append_logbook`): after a restart
sync goes on where it stopped, without gaps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from attrs import frozen

from emu_opcua.meter.logbook import LogbookEntry

__all__ = ["LOGBOOK_PAGE", "LogbookRequest", "LogbookState", "LogbookStep", "apply_logbook", "next_logbook_request"]

#: Most entries the meter serves in one ``/logbook/`` request.
LOGBOOK_PAGE = 2048


@frozen
class LogbookState:
    serial: str | None = None  # of the newest stored entry
    high: int | None = None  # its index
    fingerprint: tuple[Any, ...] | None = None  # its (timestamp, serial, datalog index)
    current: bool = False  # caught up: the last page was not full
    rescans: int = 0  # times the logbook was read again from entry 1

    def to_json(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        if self.fingerprint is not None:
            d["fingerprint"] = list(self.fingerprint)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> LogbookState:
        if not data:
            return cls()
        names = {a.name for a in attrs.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("fingerprint") is not None:
            kwargs["fingerprint"] = tuple(kwargs["fingerprint"])
        return cls(**kwargs)


@frozen
class LogbookRequest:
    """Ask for entries ``first..last`` ascending (``/logbook/?from=first&to=last``)."""

    first: int
    last: int


@frozen
class LogbookStep:
    state: LogbookState
    entries: tuple[LogbookEntry, ...] = ()  # to store (new, or possibly new after a rescan)
    more: bool = False  # ask again at once
    event: str | None = None  # why a rescan started


def fingerprint(entry: LogbookEntry) -> tuple[Any, ...]:
    return (int(entry.timestamp.timestamp()), entry.serial, entry.datalog_index)


def next_logbook_request(state: LogbookState, page: int = LOGBOOK_PAGE) -> LogbookRequest:
    first = state.high if state.high is not None else 1
    return LogbookRequest(first, first + page - 1)


def rescan(state: LogbookState) -> LogbookState:
    """Read the logbook again from entry 1 (a new series of the datalog: replaced or reset)."""
    return LogbookState(rescans=state.rescans + 1)


def apply_logbook(state: LogbookState, request: LogbookRequest, entries: Sequence[LogbookEntry]) -> LogbookStep:
    """The meaning of the meter's answer ``entries`` (as parsed) to ``request``."""
    entries = sorted((e for e in entries if request.first <= e.index <= request.last), key=lambda e: e.index)
    high = state.high
    if high is not None:
        first = entries[0] if entries else None
        if first is None:
            # nothing, not even the entry we hold: the logbook shrank (cleared, another
            # meter); an empty logbook rescans at no cost
            if request.first == high:
                return LogbookStep(rescan(state), more=True, event=f"logbook entry {high} is gone: reading it again")
            return LogbookStep(attrs.evolve(state, current=True))
        if first.index != high or fingerprint(first) != state.fingerprint:
            return LogbookStep(rescan(state), more=True,
                               event=f"logbook entry {high} is not the one stored: reading it again")
        if any(e.serial != first.serial for e in entries):
            return LogbookStep(rescan(state), more=True, event="logbook entries of another serial: reading it again")
        entries = entries[1:]
    if not entries:
        return LogbookStep(attrs.evolve(state, current=True))
    top = entries[-1]
    full = len(entries) + (1 if high is not None else 0) >= request.last - request.first + 1
    new = attrs.evolve(state, serial=top.serial, high=top.index, fingerprint=fingerprint(top), current=not full)
    return LogbookStep(new, entries=tuple(entries), more=full)
