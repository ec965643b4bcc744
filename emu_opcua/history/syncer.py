"""The I/O driver of datalog sync: pages from each meter into the history store.

One :class:`MeterSyncer` per meter runs the plan of :mod:`emu_opcua.history.sync`: it
asks the meter for the next page over HTTP (on the event loop) and hands the body to the
store's **one writer thread** (:class:`StoreWriter`), where it is parsed, judged
(:func:`~emu_opcua.history.sync.apply_answer`) and stored with the new sync state in one
transaction. So a 3000-row page never blocks the event loop for its parse or its SQLite
write, and at most one SQLite writer exists.

Throttle: while a meter backfills, each page holds a slot of one fleet-wide
:class:`asyncio.Semaphore` (``max_concurrent_pages``) from its request until it is
stored, so 1000 meters backfilling keep at most that many pages in memory and in flight
and leave the event loop to live polling. A meter that is current asks once per
``interval`` (one small page: the row it has and any new ones), outside the throttle.

Failures (unreachable, timeouts, HTTP errors, pages that do not parse) back off
exponentially and show as ``failing`` with the error; nothing is stored from a bad page.

Events (:mod:`emu_opcua.history.events`): the status bits of each page's rows become
events stored in the page's transaction; a new series (meter replaced, index reset) is an
event. Each time the datalog is current the **logbook** is synced too
(:mod:`emu_opcua.history.logbook_sync`, pages stored with their own state). Events that
appear while sync is current (not those of a backfill) are handed to ``on_events``, the
live path (the OPC UA layer emits them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

import attrs
from attrs import frozen

from emu_opcua.clients.backoff import Backoff
from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.errors import EmuError, HttpStatusError, ParseError, TruncatedDataError
from emu_opcua.history import logbook_sync
from emu_opcua.history.events import MeterEvent, datalog_events, logbook_events, series_event
from emu_opcua.history.sqlite import SqliteHistoryStore
from emu_opcua.history.store import Series
from emu_opcua.history.sync import IndexRange, NewestRow, Step, SyncPolicy, SyncState, apply_answer, next_request, progress
from emu_opcua.meter.datalog import parse_datalog_lenient
from emu_opcua.meter.logbook import parse_logbook_lenient

__all__ = ["MeterSyncer", "StoreWriter", "SyncDiagnostics", "SyncSettings"]

log = logging.getLogger(__name__)
T = TypeVar("T")

SyncPhase = Literal["starting", "backfilling", "current", "failing"]


@frozen
class SyncSettings:
    policy: SyncPolicy = SyncPolicy()
    interval: float = 60.0  # s between checks for new rows once current
    max_backoff: float = 300.0  # s
    logbook: bool = True  # sync the logbook too (meters without one answer 404: asked once)


@frozen
class SyncDiagnostics:
    """What the address space shows of one meter's sync."""

    state: SyncPhase
    progress: float  # 0..1 of the rows the meter holds
    rows_stored: int
    oldest_row: datetime | None
    newest_row: datetime | None
    last_error: str  # "" when the last sync step worked
    serial: str | None = None
    lost: int = 0
    unparseable: int = 0


class StoreWriter:
    """The store and its one writer thread: every write (and each page's parse) runs
    there, in submission order; reads may run there too (``call``) or in any thread."""

    def __init__(self, store: SqliteHistoryStore) -> None:
        self.store = store
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-writer")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()


@attrs.define(eq=False)
class _Outcome:
    step: Step
    state: SyncState
    series: Series | None
    added: int
    diagnostics: tuple[int, datetime | None, datetime | None] | None
    events: list[MeterEvent] = attrs.Factory(list)


class MeterSyncer:
    """Keeps one meter's datalog in the store (see the module docstring)."""

    def __init__(self, name: str, http: MeterHttpClient, writer: StoreWriter, pages: asyncio.Semaphore,
                 settings: SyncSettings = SyncSettings(), *,
                 report: Callable[[SyncDiagnostics], Awaitable[None]] | None = None,
                 on_events: Callable[[list[MeterEvent]], Awaitable[None]] | None = None) -> None:
        self.name = name
        self.http = http
        self.writer = writer
        self.pages = pages
        self.settings = settings
        self._report = report
        self._on_events = on_events
        self.state = SyncState()
        self.logbook = logbook_sync.LogbookState()
        self.logbook_absent = False  # the meter answered 404: it has no logbook
        self._logbook_tries: tuple[object, int] = (None, 0)  # (request, tries) of a page with bad rows
        self.series: Series | None = None
        self.diagnostics = SyncDiagnostics("starting", 0.0, 0, None, None, "")
        self.rows_added = 0  # this run (benchmarks)
        self.current = asyncio.Event()  # set whenever sync has caught up
        #: the last step in this run found nothing more to fetch: the next request is a
        #: check for new rows, not a page of backfill (a restart after an outage starts
        #: throttled even when the stored state says current)
        self._caught_up = False
        self._backoff = Backoff(1.0, settings.max_backoff)

    # --- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        await self._load()
        attempt = 1  # tries of the current request (a page with bad rows is tried again)
        while True:
            try:
                step = await self.step(attempt)
            except EmuError as exc:
                await self._failed(str(exc))
                continue
            except (sqlite3.Error, OSError) as exc:  # the store (disk full, I/O error)
                await self._failed(f"history store: {type(exc).__name__}: {exc}")
                continue
            if step.retry:
                attempt += 1
                await self._failed(step.error or "bad page")
                continue
            attempt = 1
            self._backoff.reset()
            if not step.more:
                if self.settings.logbook and not self.logbook_absent:
                    try:
                        await self.sync_logbook()
                    except Exception:  # noqa: BLE001 - the logbook never stops the datalog's sync
                        log.exception("%s: logbook sync failed", self.name)
                self.current.set()
                await asyncio.sleep(self.settings.interval)

    async def _failed(self, message: str) -> None:
        log.info("%s: datalog sync: %s", self.name, message)
        self.current.clear()
        await self._publish(attrs.evolve(self.diagnostics, state="failing", last_error=message))
        await asyncio.sleep(self._backoff.next_delay())

    async def _load(self) -> None:
        store = self.writer.store

        def load():
            state = SyncState.from_json(store.sync_state(self.name))
            series = None
            if state.series_id is not None:
                series = next((s for s in store.series(self.name) if s.id == state.series_id), None)
                if series is None:  # the state names a series the store lacks: start over
                    state = SyncState()
            logbook = logbook_sync.LogbookState.from_json(store.logbook_state(self.name))
            return state, series, logbook, _diagnostic_rows(store, self.name)

        self.state, self.series, self.logbook, numbers = await self.writer.call(load)
        await self._publish(self._diagnostics(numbers, ""))

    async def step(self, attempt: int = 1) -> Step:
        """One request to the meter and what it means, stored. Raises EmuError when the
        meter cannot be asked."""
        state = self.state
        live = state.current  # caught up before: what this step finds has just appeared
        request = next_request(state, self.settings.policy)
        throttled = isinstance(request, IndexRange) and not self._caught_up
        if throttled:
            async with self.pages:
                outcome = await self._fetch_and_store(request, state, attempt)
        else:
            outcome = await self._fetch_and_store(request, state, attempt)
        self.state, self.series = outcome.state, outcome.series
        self.rows_added += outcome.added
        step = outcome.step
        if not step.retry:
            self._caught_up = not step.more
        if step.event:
            log.info("%s: datalog sync: %s", self.name, step.event)
        if outcome.events:
            if step.new_series is not None and self.logbook.high is not None:
                self.logbook = logbook_sync.rescan(self.logbook)  # another meter, or reset
            await self._emit([e for e in outcome.events if live or e.kind in ("meter_replaced", "index_reset")])
        if not step.retry:
            error = step.error or ""
            if outcome.diagnostics is not None or error != self.diagnostics.last_error or \
                    self._phase() != self.diagnostics.state:
                await self._publish(self._diagnostics(outcome.diagnostics, error))
        return step

    async def _fetch_and_store(self, request, state: SyncState, attempt: int) -> _Outcome:
        if isinstance(request, NewestRow):
            params = {"last": 1}
        else:
            params = {"from": request.first, "to": request.last}
        body = await self.http.get("/data/", params)
        url = f"{self.http.base_url}/data/?" + "&".join(f"{k}={v}" for k, v in params.items())
        return await self.writer.call(self._judge_and_store, body, url, request, state, self.series, attempt)

    def _judge_and_store(self, body: bytes, url: str, request, state: SyncState, series: Series | None,
                         attempt: int) -> _Outcome:
        """In the writer thread: parse, judge, store (one transaction), diagnostics."""
        store = self.writer.store
        try:
            parsed = parse_datalog_lenient(body)
            rows, errors = parsed.rows, parsed.errors
        except ParseError as exc:  # the document as a whole (e.g. no header)
            rows, errors = (), (exc,)
        truncated = any(isinstance(e, TruncatedDataError) for e in errors)
        messages = [f"{url}: {e}" for e in errors]
        step = apply_answer(state, request, rows, messages, self.settings.policy,
                            truncated=truncated, attempt=attempt)
        if step.retry:
            return _Outcome(step, state, series, 0, None)
        new_state = step.state
        events: list[MeterEvent] = []
        if step.new_series is not None:
            series = store.new_series(self.name, step.new_series, new_state.next_from or 1,
                                      sync_state=new_state.to_json())
            new_state = attrs.evolve(new_state, series_id=series.id)
            if state.serial is not None:  # not a first contact: replaced or reset
                when = max(r.timestamp for r in rows).timestamp() if rows else datetime.now(timezone.utc).timestamp()
                events += store.add_events([series_event(
                    self.name, series.id, int(when), serial=step.new_series,
                    first_index=new_state.next_from or 1, previous_serial=state.serial)])
        added = 0
        if step.rows:
            if series is None:
                raise RuntimeError(f"{self.name}: rows to store without a series")
            # the status of the row before this page's first: the one sync holds (same series)
            previous = state.fingerprint[1] if state.fingerprint and state.series_id == series.id else None
            row_events = datalog_events(self.name, series.id, step.rows, previous)
            added = store.append(series, step.rows, new_state.to_json(), row_events)
            events += row_events
        elif new_state != state:
            store.put_sync_state(self.name, new_state.to_json())
        numbers = _diagnostic_rows(store, self.name) if (added or step.new_series) else None
        return _Outcome(step, new_state, series, added, numbers, events)

    # --- the logbook ---------------------------------------------------------------------
    async def sync_logbook(self) -> None:
        """Fetch the logbook's new entries (pages until current); errors are logged and
        tried again at the next sync interval, never stopping the datalog's sync."""
        for _ in range(1000):  # a bound, not a limit: 2048 entries a page
            live = self.logbook.current
            request = logbook_sync.next_logbook_request(self.logbook)
            try:
                body = await self.http.get("/logbook/", {"from": request.first, "to": request.last})
            except HttpStatusError as exc:
                if exc.status == 404:
                    log.info("%s: the meter has no logbook (HTTP 404)", self.name)
                    self.logbook_absent = True
                    return
                log.info("%s: logbook sync: %s", self.name, exc)
                return
            except EmuError as exc:
                log.info("%s: logbook sync: %s", self.name, exc)
                return
            step, new = await self.writer.call(self._store_logbook, body, request, self.logbook)
            if step is None:
                return  # a page that did not parse whole: again next time
            self.logbook = step.state
            if step.event:
                log.info("%s: logbook sync: %s", self.name, step.event)
            if new and live:
                await self._emit(new)
            if not step.more:
                return

    def _store_logbook(self, body: bytes, request, state):
        """In the writer thread: parse, judge, store with the state (one transaction).
        A cut page is tried again (next interval) until it comes whole; a page whose bad
        rows stay bad over ``policy.attempts`` tries is stored without them (logged)."""
        try:
            entries, errors = parse_logbook_lenient(body)
        except ParseError as exc:
            log.info("%s: logbook sync: %s", self.name, exc)
            return None, []
        if errors:
            previous, tries = self._logbook_tries
            tries = tries + 1 if previous == request else 1
            self._logbook_tries = (request, tries)
            cut = any(isinstance(e, TruncatedDataError) for e in errors)
            if cut or tries < self.settings.policy.attempts:
                log.info("%s: logbook sync: %d bad entries (%s); trying again later", self.name, len(errors),
                         errors[0])
                return None, []
            log.warning("%s: logbook sync: %d entries never parsed, stored without them: %s", self.name,
                        len(errors), "; ".join(map(str, errors)))
        self._logbook_tries = (None, 0)
        step = logbook_sync.apply_logbook(state, request, entries)
        if step.state == state and not step.entries:
            return step, []
        new = self.writer.store.append_logbook(self.name, logbook_events(self.name, step.entries),
                                               step.state.to_json())
        return step, new

    async def _emit(self, events: list[MeterEvent]) -> None:
        if events and self._on_events is not None:
            try:
                await self._on_events(events)
            except Exception:  # noqa: BLE001 - events never stop sync
                log.exception("%s: emitting events failed", self.name)

    # --- diagnostics ---------------------------------------------------------------------
    def _phase(self) -> SyncPhase:
        return "current" if self.state.current else "backfilling"

    def _diagnostics(self, numbers, error: str) -> SyncDiagnostics:
        d = self.diagnostics
        if numbers is None:
            numbers = (d.rows_stored, d.oldest_row, d.newest_row)
        s = self.state
        return SyncDiagnostics(self._phase(), progress(s), *numbers, last_error=error, serial=s.serial,
                               lost=s.lost, unparseable=s.unparseable)

    async def _publish(self, diagnostics: SyncDiagnostics) -> None:
        self.diagnostics = diagnostics
        if self._report is not None:
            try:
                await self._report(diagnostics)
            except Exception:  # noqa: BLE001 - diagnostics never stop sync
                log.exception("%s: publishing sync diagnostics failed", self.name)


def _diagnostic_rows(store: SqliteHistoryStore, meter: str) -> tuple[int, datetime | None, datetime | None]:
    extent = store.extent(meter)
    if extent is None:
        return 0, None, None
    oldest, newest = extent
    return (store.row_count(meter), datetime.fromtimestamp(oldest.timestamp, timezone.utc),
            datetime.fromtimestamp(newest.timestamp, timezone.utc))
