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

Backends are synchronous (plain DB code, testable without an event loop); the server
calls them from worker threads (writes from one writer thread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from attrs import frozen

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


class HistoryStore(Protocol):
    """What every backend provides. Times are unix seconds; ranges are half-open."""

    # --- series and sync state ----------------------------------------------------------
    def series(self, meter: str) -> tuple[Series, ...]:
        """Every series of ``meter``, oldest first."""

    def new_series(self, meter: str, serial: str, first_index: int) -> Series:
        """Start a new series for ``meter`` (first contact, replacement, index reset)."""

    def sync_state(self, meter: str) -> Mapping[str, Any] | None:
        """The sync state last committed with :meth:`append` (JSON-able), or None."""

    def append(self, series: Series, rows: Sequence[DatalogRow], sync_state: Mapping[str, Any]) -> int:
        """Store ``rows`` of ``series`` and ``sync_state`` of its meter in one transaction.

        Rows already stored (same series and index) are left as they are, never
        duplicated; returns the number of rows newly stored."""

    # --- reading -------------------------------------------------------------------------
    def read(self, meter: str, start: int, end: int, *, after: RowPosition | None = None,
             limit: int | None = None, reverse: bool = False) -> list[StoredRow]:
        """Rows of every series of ``meter`` with ``start <= timestamp < end`` in
        :class:`RowPosition` order (descending when ``reverse``), strictly after (before,
        when reversed) ``after`` when given, at most ``limit``."""

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
        """Delete rows older than ``before`` (retention); returns how many."""

    def close(self) -> None:
        """Commit and close; the store is unusable afterwards."""
