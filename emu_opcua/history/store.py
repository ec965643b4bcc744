"""The history store interface: one protocol, every backend behind it.

A **series** is one meter identity's datalog: the rows of one configured meter while it
has one serial number and one unbroken index sequence. A replaced meter (new serial) or
an index reset (factory reset) starts a new series; rows of two series are never mixed
or overwritten. Inside a series a row is identified by its datalog index, never by its
timestamp (a clock set back repeats timestamps).

Rows are stored compactly and as the meter sent them: integer unix seconds (the datalog
has whole seconds), the index, the status byte and the 24 integer columns
(:attr:`emu_opcua.meter.datalog.DatalogRow.raw`). Conversion to physical units happens
on the read path from the catalogue, never in the store.

The order of rows for reading is :class:`RowPosition` order: (timestamp, series id,
index). It is total, so a continuation point made from a position never skips or repeats
rows that share a timestamp.

**Events** (:class:`~emu_opcua.history.events.MeterEvent`) are stored beside the rows,
one per (meter, kind, key): those derived from datalog rows in the transaction of the
rows, logbook events with the logbook's own sync state, the gateway's as they happen.
They are read in :class:`EventPosition` order (time, then the order they were stored).

Backends are synchronous (plain DB code, testable without an event loop); the server
calls them from worker threads (writes from one writer thread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from attrs import frozen

from emu_opcua.history.events import MeterEvent
from emu_opcua.meter.datalog import DatalogRow


@frozen
class Series:
    """One meter identity's datalog (see the module docstring)."""

    id: int
    meter: str  # the configured meter name
    serial: str
    first_index: int  # datalog index of the first row this series was given


@frozen(order=True)
class RowPosition:
    """A row's place in read order: (timestamp, series id, index)."""

    timestamp: int  # unix seconds
    series_id: int
    index: int


@frozen
class StoredRow:
    """A stored datalog row: what the meter sent, in compact form."""

    timestamp: int  # unix seconds, as the meter stamped the row
    series_id: int
    index: int
    status: int  # the datalog status byte
    raw: tuple[int, ...]  # columns 5..28 as sent

    @property
    def position(self) -> RowPosition:
        return RowPosition(self.timestamp, self.series_id, self.index)


@frozen(order=True)
class EventPosition:
    """An event's place in read order: (time, then the order events were stored)."""

    time: int  # unix seconds
    seq: int


@frozen
class StoredEvent:
    position: EventPosition
    event: MeterEvent


class HistoryStore(Protocol):
    """What every backend provides. Times are unix seconds; ranges are half-open."""

    # --- series and sync state ----------------------------------------------------------
    def series(self, meter: str) -> tuple[Series, ...]:
        """Every series of ``meter``, oldest first."""

    def new_series(self, meter: str, serial: str, first_index: int) -> Series:
        """Start a new series for ``meter`` (first contact, replacement, index reset)."""

    def sync_state(self, meter: str) -> Mapping[str, Any] | None:
        """The sync state last committed with :meth:`append` (JSON-able), or None."""

    def append(self, series: Series, rows: Sequence[DatalogRow], sync_state: Mapping[str, Any],
               events: Sequence[MeterEvent] = ()) -> int:
        """Store ``rows`` of ``series``, ``sync_state`` of its meter and the ``events``
        derived from the rows in one transaction.

        Rows already stored (same series and index) are left as they are, never
        duplicated, and so are events (same meter, kind and key); returns the number of
        rows newly stored."""

    # --- events ----------------------------------------------------------------------------
    def add_events(self, events: Sequence[MeterEvent]) -> list[MeterEvent]:
        """Store ``events`` (one transaction); returns those not stored before."""

    def logbook_state(self, meter: str) -> Mapping[str, Any] | None:
        """The logbook sync state last committed with :meth:`append_logbook`, or None."""

    def append_logbook(self, meter: str, events: Sequence[MeterEvent],
                       logbook_state: Mapping[str, Any]) -> list[MeterEvent]:
        """Store logbook ``events`` and ``logbook_state`` in one transaction; returns the
        events not stored before."""

    def read_events(self, meter: str, start: int, end: int, *, after: EventPosition | None = None,
                    limit: int | None = None, reverse: bool = False) -> list[StoredEvent]:
        """Events of ``meter`` with ``start <= time < end`` in :class:`EventPosition`
        order (descending when ``reverse``), strictly after (before) ``after``, at most
        ``limit``."""

    # --- reading -------------------------------------------------------------------------
    def read(self, meter: str, start: int, end: int, *, after: RowPosition | None = None,
             limit: int | None = None, reverse: bool = False,
             columns: Sequence[int] | None = None) -> list[StoredRow]:
        """Rows of every series of ``meter`` with ``start <= timestamp < end`` in
        :class:`RowPosition` order (descending when ``reverse``), strictly after (before,
        when reversed) ``after`` when given, at most ``limit``. ``columns``: only these
        indices of ``raw`` are needed (the others may read 0)."""

    def read_around(self, meter: str, cuts: Sequence[int], *, columns: Sequence[int] | None = None,
                    exact: bool = False) -> list[StoredRow]:
        """For each cut: the last row with ``timestamp < cut`` and the first with
        ``timestamp >= cut`` in :class:`RowPosition` order; each row once, ascending
        (the bounding rows of processed reads, without reading what lies between).
        ``columns`` as for :meth:`read`; ``exact``: the row before a cut may be left out
        where a row lies exactly at it."""

    def series_extents(self, meter: str) -> list[tuple[int, int, int]]:
        """(series id, oldest, newest row timestamp) of each series of ``meter`` with rows."""

    def read_columns(self, meter: str, start: int, end: int, columns: Sequence[int], *,
                     after: RowPosition | None = None, limit: int | None = None,
                     reverse: bool = False) -> list[tuple[int, ...]]:
        """:meth:`read` of only the datalog columns ``columns`` (indices into
        :attr:`StoredRow.raw`), each row a plain tuple ``(timestamp, series_id, index,
        status, raw[c] for c in columns)`` (its first three items are its
        :class:`RowPosition`). For reads of one quantity over many rows (history reads): a
        backend decodes only what is asked and builds no row objects."""

    def extent(self, meter: str) -> tuple[StoredRow, StoredRow] | None:
        """The oldest and the newest row of ``meter`` in read order, or None when empty."""

    def row_count(self, meter: str) -> int:
        """Rows stored for ``meter`` (every series)."""

    # --- housekeeping --------------------------------------------------------------------
    def prune(self, before: int) -> int:
        """Delete rows and events older than ``before`` (retention); returns how many rows."""

    def close(self) -> None:
        """Commit and close; the store is unusable afterwards."""
