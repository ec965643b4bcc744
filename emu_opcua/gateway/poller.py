"""Polling one meter: a fast group over Modbus TCP and slow groups over HTTP.

One ``MeterPoller`` per meter, each group its own task, so a slow or dead meter never
delays another meter, and a slow HTTP endpoint never delays the Modbus values of the same
meter. What the poller learns goes to a ``MeterSink`` (the OPC UA publisher).

Groups (intervals from the configuration):
- fast (1 s): measurements from Modbus; from ``meterdata.json`` instead while the meter's
  Modbus server is off (``mbactive`` false), does not answer while HTTP does, or the
  register map failed the cross-check. While off or not answering, Modbus is tried again
  with backoff (up to ``modbus_retry_max``) and serves again as soon as it answers.
- extremes (5 s): ``meterdata.json`` min/max with their times; every ``crosscheck``
  seconds also a Modbus read right before it, compared with ``cross_check``.
- status (60 s): ``status.json`` (identity, configuration, Modbus port when "auto") and
  the newest datalog row (quantities only the datalog carries: reactive energy, neutral
  current).

Failures: exponential backoff with jitter per group; values keep their last value as
Uncertain, then turn Bad after ``stale_after`` (see ``health``). Every group degrades the
values it supplies; a group that finds the meter gone (unreachable, timed out) makes the
others poll at once, so all of a meter's values degrade together, and a group that finds
it back makes the failing ones retry at once.

Time: values the meter stamps itself (min/max, datalog rows, MeterTime) keep its stamps;
live values (Modbus, meterdata.json) get the meter's clock at the moment they were read,
estimated from its whole-second reports (``meterclock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from attrs import define, field, frozen

from emu_opcua.clients.backoff import Backoff
from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.clients.modbus import MeterModbusClient
from emu_opcua.errors import (
    EmuError,
    MeterCommunicationError,
    MeterTimeout,
    MeterUnreachable,
    ModbusDisabled,
    ModbusProtocolError,
    ParseError,
    RegisterMapMismatch,
)
from emu_opcua.gateway.health import GOOD, ConnectionState, SourceHealth
from emu_opcua.gateway.meterclock import MeterClock
from emu_opcua.meter.catalogue import BY_CODE, CATALOGUE
from emu_opcua.meter.crosscheck import CrossCheckResult, cross_check
from emu_opcua.meter.meterdata import Extremes, MeterData
from emu_opcua.meter.registers import RegisterMap
from emu_opcua.meter.status import MeterStatus

log = logging.getLogger(__name__)

#: Quantities read every fast poll over Modbus (identity registers are read by the
#: cross-check only).
FAST_CODES: tuple[str, ...] = tuple(q.code for q in CATALOGUE if q.is_measurement and q.modbus)
#: Counters read over Modbus only with the cross-check (they change rarely).
SLOW_MODBUS_CODES: tuple[str, ...] = tuple(q.code for q in CATALOGUE if q.group == "diagnostic" and q.modbus)
#: Measurements only meterdata.json carries (tariff energies): read with the extremes
#: while the fast group reads Modbus.
METERDATA_ONLY_CODES: tuple[str, ...] = tuple(
    q.code for q in CATALOGUE if q.is_measurement and q.meterdata and not q.modbus
)
#: Quantities only the datalog carries.
DATALOG_ONLY_CODES: tuple[str, ...] = tuple(
    q.code for q in CATALOGUE if q.is_measurement and q.datalog and not q.meterdata and not q.modbus
)

SOURCE_MODBUS = "modbus"
SOURCE_HTTP_MODBUS_OFF = "http (modbus disabled)"
SOURCE_HTTP_MISMATCH = "http (register map mismatch)"
SOURCE_HTTP_MODBUS_FAILED = "http (modbus not answering)"
#: sources under which Modbus is retried with backoff, to return to it once it answers
_MODBUS_RETRIED = (SOURCE_HTTP_MODBUS_OFF, SOURCE_HTTP_MODBUS_FAILED)
#: errors saying the meter cannot be reached at all (not: it answered with an error)
_GONE = (MeterUnreachable, MeterTimeout)
#: the extremes poll (the most frequent report of the meter's time) is timed to refine
#: the meter clock's offset while it is known less precisely than this (seconds)
CLOCK_PRECISION = 0.02
#: rank of a quality, to take the worse of two
_RANK = {GOOD: 0, "UncertainLastUsableValue": 1}


def _raise_if_cancelled() -> None:
    """Honour a cancellation that was swallowed on the way. Python 3.11's
    ``asyncio.wait_for`` (used inside pymodbus) returns the result instead of raising
    when the awaited call completes in the same instant the task is cancelled; a polling
    loop would then run on forever and shutdown would hang."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@frozen
class PollSettings:
    fast_interval: float = 1.0
    extremes_interval: float = 5.0
    status_interval: float = 60.0
    datalog_interval: float = 60.0
    crosscheck_interval: float = 30.0
    stale_after: float = 10.0  # seconds of failure before Uncertain turns Bad
    max_backoff: float = 60.0
    #: longest one poll of a group may take, all its requests together. Each request has
    #: its own timeout, but a meter trickling its answer a byte at a time never trips a
    #: read timeout; without this bound its group would hang, its values Good forever.
    poll_deadline: float = 60.0
    #: consecutive failed cross-checks before the HTTP values replace the Modbus ones
    crosscheck_failures_to_switch: int = 2
    #: longest wait between Modbus retries while meterdata.json serves the fast values
    #: because Modbus is off or does not answer (backoff from fast_interval up to this)
    modbus_retry_max: float = 10.0


@frozen
class Diagnostics:
    connection_state: ConnectionState
    last_successful_poll: datetime | None
    consecutive_failures: int
    last_error: str
    poll_duration_ms: float
    crosscheck: str
    crosscheck_ok: bool | None
    data_source: str
    #: quality of the cross-check result: it degrades while Modbus or meterdata.json fail
    crosscheck_status: str = GOOD


class MeterSink(Protocol):
    """Where a poller puts what it learns (implemented by the OPC UA publisher)."""

    async def measurements(self, values: Mapping[str, float], source_time: datetime) -> None: ...

    async def measurements_failed(self, codes: tuple[str, ...], status: str) -> None: ...

    async def extremes(self, extremes: Mapping[str, Extremes]) -> None: ...

    async def extremes_failed(self, status: str) -> None: ...

    async def status(self, status: MeterStatus) -> None: ...

    async def status_failed(self, status: str) -> None: ...

    async def diagnostics(self, diagnostics: Diagnostics) -> None: ...


@define
class PollStats:
    """Counters for benchmarks and diagnostics: how punctual the fast group is."""

    polls: int = 0
    on_time: int = 0
    late: int = 0  # started more than 10 % of an interval after its slot
    overran: int = 0  # finished after the next slot
    failures: int = 0
    max_lateness: float = 0.0


@define
class MeterPoller:
    name: str
    http: MeterHttpClient
    modbus_factory: Callable[[int], MeterModbusClient]  # port -> client
    sink: MeterSink
    settings: PollSettings = PollSettings()
    modbus_port: int | None = None  # None: "auto", taken from status.json
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time  # epoch seconds, to read the meter's clock against
    stats: PollStats = field(factory=PollStats)

    _fast: SourceHealth = field(init=False)
    _extremes: SourceHealth = field(init=False)
    _status: SourceHealth = field(init=False)
    _modbus: MeterModbusClient | None = field(init=False, default=None)
    _modbus_lock: asyncio.Lock = field(init=False, factory=asyncio.Lock)
    _modbus_enabled: bool = field(init=False, default=True)
    _status_known: asyncio.Event = field(init=False, factory=asyncio.Event)
    #: per group: set to make it poll now (the meter went away or came back; see _wake)
    _wakeups: dict[str, asyncio.Event] = field(init=False, factory=lambda: {
        g: asyncio.Event() for g in ("fast", "extremes", "status", "datalog")})
    _groups: tuple[tuple[str, SourceHealth], ...] = field(init=False)
    _meter_clock: MeterClock = field(init=False, factory=MeterClock)
    #: every Modbus read (fast, cross-check, retries), for the values only Modbus supplies
    _modbus_health: SourceHealth = field(init=False)
    _modbus_failing: bool = field(init=False, default=False)  # last read failed, HTTP answered
    _modbus_backoff: Backoff = field(init=False)
    _modbus_retry_at: float = field(init=False, default=0.0)  # monotonic
    _crosscheck: CrossCheckResult | None = field(init=False, default=None)
    _crosscheck_text: str = field(init=False, default="not yet checked")
    _crosscheck_failures: int = field(init=False, default=0)
    _last_crosscheck: float = field(init=False, default=float("-inf"))
    _data_source: str = field(init=False, default=SOURCE_MODBUS)
    _auto_port: bool = field(init=False, default=False)
    _serial: str | None = field(init=False, default=None)
    _datalog: SourceHealth = field(init=False)
    _datalog_index: int | None = field(init=False, default=None)
    #: why polling is paused (a firmware update rebooting the module), None while polling
    _pause_reason: str | None = field(init=False, default=None)
    _resumed: asyncio.Event = field(init=False, factory=asyncio.Event)

    def __attrs_post_init__(self) -> None:
        self._resumed.set()
        s = self.settings.stale_after
        self._fast = SourceHealth(stale_after=s)
        # The slow groups are woken when the meter goes away, and count from then.
        self._extremes = SourceHealth(stale_after=s, since_first_failure=True)
        self._status = SourceHealth(stale_after=s, since_first_failure=True)
        self._datalog = SourceHealth(stale_after=s, since_first_failure=True)
        self._modbus_health = SourceHealth(stale_after=s, since_first_failure=True)
        self._groups = (("fast", self._fast), ("extremes", self._extremes), ("status", self._status),
                        ("datalog", self._datalog))
        fast = self.settings.fast_interval
        self._modbus_backoff = Backoff(initial=fast, maximum=max(fast, self.settings.modbus_retry_max))
        if self.modbus_port is not None:
            self._status_known.set()

    # --- running ------------------------------------------------------------------
    async def run(self) -> None:
        """Poll until cancelled. Never raises for meter errors."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._loop("status", self.settings.status_interval, self._status, self._poll_status))
                if DATALOG_ONLY_CODES:
                    tg.create_task(self._loop("datalog", self.settings.datalog_interval, self._datalog,
                                              self._poll_datalog))
                tg.create_task(self._loop("extremes", self.settings.extremes_interval, self._extremes, self._poll_extremes))
                tg.create_task(self._fast_loop())
        finally:
            await self._close_modbus()

    async def _loop(self, group: str, interval: float, health: SourceHealth,
                    poll: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(initial=interval, maximum=max(interval, self.settings.max_backoff))
        # Spread the first polls of many meters over one interval, so 1000 meters do not
        # hit the same second.
        await asyncio.sleep(random.uniform(0, min(interval, 1.0)))
        wakeup = self._wakeups[group]
        # The first poll comes soon (identity, Modbus port), the rest keep a random phase
        # over the whole interval: 1000 meters started together must not send 1000
        # status.json requests in the same second every minute.
        spread = random.uniform(0, max(0.0, interval - 1.0))
        while True:
            start = self.clock()
            wakeup.clear()  # a wake-up during the poll is honoured after it
            error = await self._attempt(group, poll)
            if error is not None:
                health.record_failure(self.clock(), error, self.clock() - start)
                await self._on_failure(group, health, error)
                delay = self._failure_delay(health, backoff)
            else:
                if health.consecutive_failures:
                    self._wake(failing=True)
                    wakeup.clear()  # (this group has just polled)
                health.record_success(self.clock(), datetime.now(UTC), self.clock() - start)
                backoff.reset()
                delay = max(0.0, interval - (self.clock() - start)) + spread
                spread = 0.0
                if group == "extremes" and self._meter_clock.uncertainty > CLOCK_PRECISION:
                    # ask for the meter's time when its clock turns a second, as far as
                    # we know: each answer halves what we do not know of its offset
                    delay += self._meter_clock.delay_to_second(self.wall_clock() + delay)
            await self._publish_diagnostics()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wakeup.wait()
            _raise_if_cancelled()

    async def _attempt(self, group: str, poll: Callable[[], Awaitable[None]]) -> EmuError | None:
        """Run one poll; the error it failed with, or None. A bug (any other exception)
        is logged with its traceback and counted as a failure: it must never end the
        polling of this meter, let alone of the others."""
        if not self._resumed.is_set():  # paused: no request until resumed, no failure counted
            await self._resumed.wait()
        deadline = asyncio.timeout(self.settings.poll_deadline)
        try:
            async with deadline:
                await poll()
        except EmuError as error:
            return error
        except Exception as exc:  # noqa: BLE001 - see docstring
            if isinstance(exc, TimeoutError) and deadline.expired():
                return MeterTimeout(f"meter {self.name}: the {group} poll did not finish within "
                                    f"{self.settings.poll_deadline:g} s")
            log.exception("meter %s: %s poll failed unexpectedly", self.name, group)
            return EmuError(f"internal error in the {group} poll: {exc!r}")
        return None

    def _failure_delay(self, health: SourceHealth, backoff: Backoff) -> float:
        """Back off, but poll again by the time the values turn stale, so they turn Bad
        on time rather than up to a backoff later."""
        delay = backoff.next_delay()
        if not health.is_stale(self.clock()):
            since = health.failing_since()
            if since is not None:
                delay = min(delay, max(0.05, since + health.stale_after - self.clock() + 0.01))
        return delay

    async def _fast_loop(self) -> None:
        interval = self.settings.fast_interval
        backoff = Backoff(initial=interval, maximum=max(interval, self.settings.max_backoff))
        await self._status_known.wait()
        await asyncio.sleep(random.uniform(0, interval))
        deadline = self.clock()
        wakeup = self._wakeups["fast"]
        while True:
            start = self.clock()
            lateness = start - deadline
            error = await self._attempt("fast", self._poll_fast)
            if error is not None:
                self._fast.record_failure(self.clock(), error, self.clock() - start)
                self.stats.failures += 1
                await self._on_failure("fast", self._fast, error)
                if isinstance(error, MeterCommunicationError) and self._data_source == SOURCE_MODBUS:
                    # Modbus may have been switched off on the meter: ask status.json now
                    # rather than at the next status poll.
                    self._wakeups["status"].set()
                delay = self._failure_delay(self._fast, backoff)
                await self._publish_diagnostics()
                # backing off, but a meter that answers another group again is retried now
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wakeup.wait()
                wakeup.clear()
                deadline = self.clock()
                _raise_if_cancelled()
                continue
            end = self.clock()
            if self._fast.consecutive_failures:
                # the meter answers again: the slow groups need not wait out their
                # backoff, and status.json may tell what changed
                self._wake(failing=True)
                self._wakeups["status"].set()
                wakeup.clear()
            self._fast.record_success(end, datetime.now(UTC), end - start)
            backoff.reset()
            self.stats.polls += 1
            # On time: started within 10 % of an interval of its slot and done before
            # the next slot.
            late, overran = lateness > 0.1 * interval, end - deadline > interval
            if not late and not overran:
                self.stats.on_time += 1
            self.stats.late += late
            self.stats.overran += overran
            self.stats.max_lateness = max(self.stats.max_lateness, lateness)
            deadline += interval
            if deadline < end:  # overran: skip the missed slots, keep the grid
                missed = int((end - deadline) // interval) + 1
                deadline += missed * interval
            delay = deadline - end
            await self._publish_diagnostics()
            await asyncio.sleep(max(0.0, delay))
            _raise_if_cancelled()

    def pause(self, reason: str) -> None:
        """Stop polling this meter (its module is rebooting on purpose): no request is sent
        and no failure counted until :meth:`resume`; Diagnostics/DataSource says why."""
        if self._pause_reason is None:
            log.info("meter %s: polling paused (%s)", self.name, reason)
        self._pause_reason = reason
        self._resumed.clear()
        asyncio.get_running_loop().create_task(self._publish_diagnostics())

    def resume(self) -> None:
        """Poll again, every group at once."""
        if self._pause_reason is None:
            return
        log.info("meter %s: polling resumed", self.name)
        self._pause_reason = None
        self._resumed.set()
        self._wake(failing=True)

    def _wake(self, *, failing: bool) -> None:
        """Make groups poll now. ``failing``: those failing (the meter answers again:
        retry rather than wait out a backoff); else the slow groups that are not (the
        meter went away: find out, so their values degrade now, not a minute later)."""
        for group, health in self._groups:
            if (health.consecutive_failures > 0) == failing and (failing or group != "fast"):
                self._wakeups[group].set()

    async def _on_failure(self, group: str, health: SourceHealth, error: EmuError) -> None:
        if health.consecutive_failures == 1:
            log.warning("meter %s: %s poll failed: %s", self.name, group, error)
            if isinstance(error, _GONE):
                self._wake(failing=False)
        quality = health.quality(self.clock())
        if group == "fast":
            codes = FAST_CODES if self._data_source == SOURCE_MODBUS else FAST_CODES + METERDATA_ONLY_CODES
            await self.sink.measurements_failed(codes, quality)
        elif group == "extremes":
            await self.sink.extremes_failed(quality)
            if self._data_source == SOURCE_MODBUS:
                await self.sink.measurements_failed(METERDATA_ONLY_CODES, quality)
        elif group == "status":
            await self.sink.status_failed(quality)
        elif group == "datalog":
            # the newest row is published again after the next success, even unchanged
            self._datalog_index = None
            await self.sink.measurements_failed(DATALOG_ONLY_CODES, quality)

    # --- the groups ---------------------------------------------------------------
    async def _poll_fast(self) -> None:
        source = self._data_source
        if source == SOURCE_MODBUS:
            wall = self.wall_clock
            sent = wall()
            try:
                values = await self._read_modbus(FAST_CODES)
            except MeterCommunicationError as error:
                # A Modbus exception answer is the cross-check's business (a wrong map);
                # with meterdata.json failing too there is nothing to fall back on.
                if isinstance(error, ModbusProtocolError) or self._extremes.consecutive_failures:
                    raise
                reason = str(error)
            else:
                await self.sink.measurements(values, self._meter_clock.meter_time((sent + wall()) * 0.5))
                return
            # Modbus does not answer, HTTP does (as far as the extremes group knows):
            # serve meterdata.json until Modbus answers again.
            await self._fast_http()
            self._modbus_failing = True
            log.warning("meter %s: Modbus does not answer (%s); serving meterdata.json meanwhile",
                        self.name, reason)
            self._choose_source()
            self._wakeups["status"].set()  # Modbus may have been switched off: ask status.json
            return
        if source in _MODBUS_RETRIED and self.clock() >= self._modbus_retry_at:
            wall = self.wall_clock
            sent = wall()
            try:
                values = await self._read_modbus(FAST_CODES, retry=True)
            except EmuError as error:  # not yet: meterdata.json goes on serving
                self._modbus_retry_at = self.clock() + self._modbus_backoff.next_delay()
                log.debug("meter %s: Modbus retry failed: %s", self.name, error)
            else:
                await self.sink.measurements(values, self._meter_clock.meter_time((sent + wall()) * 0.5))
                self._modbus_answers()
                return
        await self._fast_http()

    async def _fast_http(self) -> None:
        wall = self.wall_clock
        sent = wall()
        data = await self.http.meterdata()
        received = wall()
        self._note_meter_time(data.meter_time, sent, received)
        await self.sink.measurements(data.values, self._meter_clock.meter_time((sent + received) * 0.5))

    def _modbus_answers(self) -> None:
        """Modbus answered a retry while meterdata.json served the fast values: back to
        Modbus now, and ask status.json at once (ModbusEnabled, the port)."""
        log.warning("meter %s: Modbus answers again", self.name)
        self._modbus_failing = False
        self._modbus_enabled = True  # it answers, so it is on; status.json will confirm
        self._choose_source()
        self._wakeups["status"].set()
        self._crosscheck_soon()

    async def _poll_extremes(self) -> None:
        now = self.clock()
        wall = self.wall_clock
        modbus_values = None
        map_error: str | None = None
        # After a failed check, check again at once (the next extremes poll): confirm a
        # wrong map before its values are served for another crosscheck_interval, and
        # notice a fixed one as soon.
        if (self._modbus_enabled and self._status_known.is_set()
                and (now - self._last_crosscheck >= self.settings.crosscheck_interval
                     or self._crosscheck_failures > 0)):
            if self._last_crosscheck == float("-inf"):
                # First check at once; the next at a random point of the interval, so
                # 1000 meters started together do not all read every register in the
                # same few seconds every crosscheck_interval.
                self._last_crosscheck = now - random.uniform(0, self.settings.crosscheck_interval)
            else:
                self._last_crosscheck = now
            sent = wall()
            try:
                modbus_values = await self._read_modbus(None)
            except (ModbusProtocolError, ParseError) as error:
                # The meter answered, but not with values the map can decode (an illegal
                # address, a NaN float): evidence against the map, like a mismatch.
                map_error = str(error)
            except EmuError as error:  # the fast group reports Modbus trouble
                log.debug("meter %s: cross-check Modbus read failed: %s", self.name, error)
            else:
                extra = {c: modbus_values[c] for c in SLOW_MODBUS_CODES if c in modbus_values}
                if extra:
                    await self.sink.measurements(extra, self._meter_clock.meter_time((sent + wall()) * 0.5))
        sent = wall()
        data = await self.http.meterdata()
        received = wall()
        self._note_meter_time(data.meter_time, sent, received)
        read_at = self._meter_clock.meter_time((sent + received) * 0.5)
        if map_error is not None:
            self._crosscheck_failed(f"register map does not fit the meter: {map_error}")
        if data.extremes is not None:
            await self.sink.extremes(data.extremes)
        if self._data_source == SOURCE_MODBUS:
            only = {c: data.values[c] for c in METERDATA_ONLY_CODES if c in data.values}
            if only:
                await self.sink.measurements(only, read_at)
        if modbus_values is not None:
            self._apply_crosscheck(modbus_values, data)
        if self._data_source != SOURCE_MODBUS and self._fast.consecutive_failures:
            # The fast group reads HTTP too in this mode; keep values fresh meanwhile.
            await self.sink.measurements(data.values, read_at)

    async def _poll_status(self) -> None:
        wall = self.wall_clock
        sent = wall()
        status = await self.http.status()
        self._note_meter_time(status.meter_time, sent, wall())
        await self.sink.status(status)
        self._serial = status.serial
        self._modbus_enabled = status.modbus_enabled
        if self.modbus_port is None or self._auto_port:
            self._auto_port = True
            if status.modbus_port != self.modbus_port:
                await self._close_modbus()
                self.modbus_port = status.modbus_port
        self._choose_source()
        self._status_known.set()

    async def _poll_datalog(self) -> None:
        rows = await self.http.datalog(last=1)
        if rows:
            row = rows[0]
            if row.index != self._datalog_index:
                self._datalog_index = row.index
                values = {code: row.value(BY_CODE[code]) for code in DATALOG_ONLY_CODES}
                await self.sink.measurements(values, row.timestamp)

    # --- helpers ------------------------------------------------------------------
    async def _read_modbus(self, codes: tuple[str, ...] | None, *, retry: bool = False) -> dict[str, float]:
        """Read over Modbus (``retry``: even while status.json says it is off, to notice
        it being switched on). Every outcome goes to the Modbus health; a failure to
        reach Modbus degrades the values only Modbus supplies."""
        if not self._modbus_enabled and not retry:
            raise ModbusDisabled(f"meter {self.name}: Modbus TCP is switched off (mbactive false)")
        health = self._modbus_health
        async with self._modbus_lock:
            if self._modbus is None:
                assert self.modbus_port is not None
                self._modbus = self.modbus_factory(self.modbus_port)
            try:
                values = await self._modbus.read_values(codes)
            except MeterCommunicationError as error:
                if not isinstance(error, ModbusProtocolError):
                    # After a timeout the transaction ids may be out of step: the next read
                    # starts on a fresh connection. The client object stays, with what it
                    # learnt about the meter (how boldly reads may be merged).
                    await self._modbus.close()
                    health.record_failure(self.clock(), error, 0.0)
                    if SLOW_MODBUS_CODES:
                        await self.sink.measurements_failed(SLOW_MODBUS_CODES, health.quality(self.clock()))
                raise
        if health.consecutive_failures or health.last_success is None:
            # (only then: the fast path records nothing per poll; staleness counts
            # from the first failure, so the time of the last success is not needed)
            if health.consecutive_failures and codes is not None:
                # Modbus is back: the values only the cross-check reads recover with it
                self._crosscheck_soon()
            health.record_success(self.clock(), datetime.now(UTC), 0.0)
        return values

    def _crosscheck_soon(self) -> None:
        self._last_crosscheck = min(self._last_crosscheck, self.clock() - self.settings.crosscheck_interval)
        self._wakeups["extremes"].set()

    async def _close_modbus(self) -> None:
        async with self._modbus_lock:
            await self._close_modbus_locked()

    async def _close_modbus_locked(self) -> None:
        client, self._modbus = self._modbus, None
        if client is not None:
            await client.close()

    def _note_meter_time(self, meter_time: datetime | None, sent: float, received: float) -> None:
        """A report of the meter's clock by a request sent and answered at these local
        wall-clock times (epoch s): refines the clock estimate Modbus values are stamped by."""
        if meter_time is not None and not self._meter_clock.observe(meter_time.timestamp(), sent, received):
            log.info("meter %s: the meter's clock was set (now %+.1f s from ours)",
                     self.name, self._meter_clock.offset)

    def _apply_crosscheck(self, modbus_values: Mapping[str, float], data: MeterData) -> None:
        result = cross_check(modbus_values, data, serial=self._serial)
        if result.ok:
            self._crosscheck = result
            self._crosscheck_text = result.summary()
            self._crosscheck_failures = 0
            self._choose_source()
        else:
            self._crosscheck_failed(result.summary(), result)

    def _crosscheck_failed(self, summary: str, result: CrossCheckResult | None = None) -> None:
        self._crosscheck = result if result is not None else CrossCheckResult(False, 0, ())
        self._crosscheck_text = summary
        self._crosscheck_failures += 1
        if self._crosscheck_failures == 1:
            log.warning("meter %s: %s", self.name, RegisterMapMismatch(summary))
        self._choose_source()

    def _choose_source(self) -> None:
        if not self._modbus_enabled:
            source = SOURCE_HTTP_MODBUS_OFF
        elif self._crosscheck_failures >= self.settings.crosscheck_failures_to_switch:
            source = SOURCE_HTTP_MISMATCH
        elif self._modbus_failing:
            source = SOURCE_HTTP_MODBUS_FAILED
        else:
            source = SOURCE_MODBUS
        if source != self._data_source:
            log.warning("meter %s: data source is now %s", self.name, source)
            if source in _MODBUS_RETRIED and self._data_source not in _MODBUS_RETRIED:
                # Modbus is retried with backoff from now on
                self._modbus_backoff.reset()
                self._modbus_retry_at = self.clock() + self._modbus_backoff.next_delay()
            self._data_source = source

    def diagnostics(self) -> Diagnostics:
        now = self.clock()
        groups = (self._fast, self._extremes, self._status, self._datalog)
        worst = max(groups, key=lambda h: (h.consecutive_failures > 0, h.consecutive_failures))
        state = self._fast.state(now) if self._fast.last_success or self._fast.consecutive_failures \
            else worst.state(now)
        if worst.consecutive_failures and state == ConnectionState.CONNECTED:
            state = ConnectionState.DEGRADED
        successes = [h.last_success_utc for h in groups if h.last_success_utc is not None]
        check = self._crosscheck
        crosscheck_status = GOOD
        if check is not None and (self._extremes.consecutive_failures or self._modbus_health.consecutive_failures):
            # the last result stands for what the meter says now only while both answer
            crosscheck_status = max(self._extremes.quality(now), self._modbus_health.quality(now),
                                    key=lambda q: _RANK.get(q, 2))
        return Diagnostics(
            connection_state=state,
            last_successful_poll=max(successes) if successes else None,
            consecutive_failures=worst.consecutive_failures,
            # the error of a group failing now; "" once every group answers again
            last_error=worst.error_text() if worst.consecutive_failures else "",
            poll_duration_ms=self._fast.last_duration * 1000.0,
            crosscheck=self._crosscheck_text,
            crosscheck_ok=check.ok if check is not None else None,
            data_source=self._data_source if self._pause_reason is None else f"paused: {self._pause_reason}",
            crosscheck_status=crosscheck_status,
        )

    async def _publish_diagnostics(self) -> None:
        await self.sink.diagnostics(self.diagnostics())
