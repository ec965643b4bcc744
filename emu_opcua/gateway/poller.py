"""Polling one meter: a fast group over Modbus TCP and slow groups over HTTP.

One ``MeterPoller`` per meter, each group its own task, so a slow or dead meter never
delays another meter, and a slow HTTP endpoint never delays the Modbus values of the same
meter. What the poller learns goes to a ``MeterSink`` (the OPC UA publisher).

Groups (intervals from the configuration):
- fast (1 s): measurements from Modbus; from ``meterdata.json`` instead while the meter's
  Modbus server is off (``mbactive`` false) or the register map failed the cross-check.
- extremes (5 s): ``meterdata.json`` min/max with their times; every ``crosscheck``
  seconds also a Modbus read right before it, compared with ``cross_check``.
- status (60 s): ``status.json`` (identity, configuration, Modbus port when "auto") and
  the newest datalog row (quantities only the datalog carries: reactive energy, neutral
  current).

Failures: exponential backoff with jitter per group; values keep their last value as
Uncertain, then turn Bad after ``stale_after`` (see ``health``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from attrs import define, field, frozen

from emu_opcua.clients.backoff import Backoff
from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.clients.modbus import MeterModbusClient
from emu_opcua.errors import (
    EmuError,
    MeterCommunicationError,
    MeterTimeout,
    ModbusDisabled,
    ModbusProtocolError,
    ParseError,
    RegisterMapMismatch,
)
from emu_opcua.gateway.health import ConnectionState, SourceHealth
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


class MeterSink(Protocol):
    """Where a poller puts what it learns (implemented by the OPC UA publisher)."""

    async def measurements(self, values: Mapping[str, float], source_time: datetime) -> None: ...

    async def measurements_failed(self, codes: tuple[str, ...], status: str) -> None: ...

    async def extremes(self, extremes: Mapping[str, Extremes]) -> None: ...

    async def extremes_failed(self, status: str) -> None: ...

    async def status(self, status: MeterStatus) -> None: ...

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
    stats: PollStats = field(factory=PollStats)

    _fast: SourceHealth = field(init=False)
    _extremes: SourceHealth = field(init=False)
    _status: SourceHealth = field(init=False)
    _modbus: MeterModbusClient | None = field(init=False, default=None)
    _modbus_lock: asyncio.Lock = field(init=False, factory=asyncio.Lock)
    _modbus_enabled: bool = field(init=False, default=True)
    _status_known: asyncio.Event = field(init=False, factory=asyncio.Event)
    _status_wakeup: asyncio.Event = field(init=False, factory=asyncio.Event)
    #: set when the meter answers again: groups backing off retry at once
    _recovered: asyncio.Event = field(init=False, factory=asyncio.Event)
    _clock_offset: timedelta = field(init=False, default=timedelta(0))
    _crosscheck: CrossCheckResult | None = field(init=False, default=None)
    _crosscheck_text: str = field(init=False, default="not yet checked")
    _crosscheck_failures: int = field(init=False, default=0)
    _last_crosscheck: float = field(init=False, default=float("-inf"))
    _data_source: str = field(init=False, default=SOURCE_MODBUS)
    _auto_port: bool = field(init=False, default=False)
    _serial: str | None = field(init=False, default=None)
    _datalog: SourceHealth = field(init=False)
    _datalog_index: int | None = field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        s = self.settings.stale_after
        self._fast = SourceHealth(stale_after=s)
        self._extremes = SourceHealth(stale_after=max(s, 2 * self.settings.extremes_interval))
        self._status = SourceHealth(stale_after=max(s, 2 * self.settings.status_interval))
        self._datalog = SourceHealth(stale_after=max(s, 2 * self.settings.datalog_interval))
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
        status_wakeup = self._status_wakeup if group == "status" else None
        # The first poll comes soon (identity, Modbus port), the rest keep a random phase
        # over the whole interval: 1000 meters started together must not send 1000
        # status.json requests in the same second every minute.
        spread = random.uniform(0, max(0.0, interval - 1.0))
        while True:
            start = self.clock()
            error = await self._attempt(group, poll)
            if error is not None:
                health.record_failure(self.clock(), error, self.clock() - start)
                await self._on_failure(group, health, error)
                delay = self._failure_delay(health, backoff)
                # backing off, but a meter that answers another group again is retried
                wakeup = self._recovered if status_wakeup is None else status_wakeup
            else:
                if health.consecutive_failures:
                    self._recovered.set()
                health.record_success(self.clock(), datetime.now(UTC), self.clock() - start)
                backoff.reset()
                delay = max(0.0, interval - (self.clock() - start)) + spread
                spread = 0.0
                wakeup = status_wakeup
            await self._publish_diagnostics()
            if wakeup is None:
                await asyncio.sleep(delay)
            else:
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wakeup.wait()
            _raise_if_cancelled()

    async def _attempt(self, group: str, poll: Callable[[], Awaitable[None]]) -> EmuError | None:
        """Run one poll; the error it failed with, or None. A bug (any other exception)
        is logged with its traceback and counted as a failure: it must never end the
        polling of this meter, let alone of the others."""
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
            since = health.last_success if health.last_success is not None else health.first_failure
            if since is not None:
                delay = min(delay, max(0.05, since + health.stale_after - self.clock() + 0.01))
        return delay

    async def _fast_loop(self) -> None:
        interval = self.settings.fast_interval
        backoff = Backoff(initial=interval, maximum=max(interval, self.settings.max_backoff))
        await self._status_known.wait()
        await asyncio.sleep(random.uniform(0, interval))
        deadline = self.clock()
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
                    self._status_wakeup.set()
                delay = self._failure_delay(self._fast, backoff)
                deadline = self.clock() + delay
            else:
                end = self.clock()
                if self._fast.consecutive_failures:
                    # the meter answers again: the slow groups need not wait out their backoff
                    self._recovered.set()
                    self._status_wakeup.set()
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

    async def _on_failure(self, group: str, health: SourceHealth, error: EmuError) -> None:
        if health.consecutive_failures == 1:
            log.warning("meter %s: %s poll failed: %s", self.name, group, error)
        quality = health.quality(self.clock())
        if group == "fast":
            codes = FAST_CODES if self._data_source == SOURCE_MODBUS else FAST_CODES + METERDATA_ONLY_CODES
            await self.sink.measurements_failed(codes, quality)
        elif group == "extremes":
            await self.sink.extremes_failed(quality)
            if self._data_source == SOURCE_MODBUS:
                await self.sink.measurements_failed(METERDATA_ONLY_CODES, quality)
        elif group == "datalog":
            # the newest row is published again after the next success, even unchanged
            self._datalog_index = None
            await self.sink.measurements_failed(DATALOG_ONLY_CODES, quality)

    # --- the groups ---------------------------------------------------------------
    async def _poll_fast(self) -> None:
        if self._data_source == SOURCE_MODBUS:
            values = await self._read_modbus(FAST_CODES)
            await self.sink.measurements(values, datetime.now(UTC) + self._clock_offset)
        else:
            data = await self.http.meterdata()
            self._note_meter_time(data.meter_time)
            await self.sink.measurements(data.values, data.meter_time)

    async def _poll_extremes(self) -> None:
        now = self.clock()
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
            try:
                modbus_values = await self._read_modbus(None)
            except (ModbusProtocolError, ParseError) as error:
                # The meter answered, but not with values the map can decode (an illegal
                # address, a NaN float): evidence against the map, like a mismatch.
                map_error = str(error)
            except EmuError as error:  # the fast group reports Modbus trouble
                log.debug("meter %s: cross-check Modbus read failed: %s", self.name, error)
        data = await self.http.meterdata()
        self._note_meter_time(data.meter_time)
        if map_error is not None:
            self._crosscheck_failed(f"register map does not fit the meter: {map_error}")
        if data.extremes is not None:
            await self.sink.extremes(data.extremes)
        if self._data_source == SOURCE_MODBUS:
            only = {c: data.values[c] for c in METERDATA_ONLY_CODES if c in data.values}
            if only:
                await self.sink.measurements(only, data.meter_time)
        if modbus_values is not None:
            self._apply_crosscheck(modbus_values, data)
            extra = {c: modbus_values[c] for c in SLOW_MODBUS_CODES if c in modbus_values}
            if extra:
                await self.sink.measurements(extra, datetime.now(UTC) + self._clock_offset)
        if self._data_source != SOURCE_MODBUS and self._fast.consecutive_failures:
            # The fast group reads HTTP too in this mode; keep values fresh meanwhile.
            await self.sink.measurements(data.values, data.meter_time)

    async def _poll_status(self) -> None:
        status = await self.http.status()
        self._note_meter_time(status.meter_time)
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
    async def _read_modbus(self, codes: tuple[str, ...] | None) -> dict[str, float]:
        if not self._modbus_enabled:
            raise ModbusDisabled(f"meter {self.name}: Modbus TCP is switched off (mbactive false)")
        async with self._modbus_lock:
            if self._modbus is None:
                assert self.modbus_port is not None
                self._modbus = self.modbus_factory(self.modbus_port)
            try:
                return await self._modbus.read_values(codes)
            except MeterCommunicationError as error:
                if not isinstance(error, ModbusProtocolError):
                    # After a timeout the transaction ids may be out of step: the next read
                    # starts on a fresh connection. The client object stays, with what it
                    # learnt about the meter (how boldly reads may be merged).
                    await self._modbus.close()
                raise

    async def _close_modbus(self) -> None:
        async with self._modbus_lock:
            await self._close_modbus_locked()

    async def _close_modbus_locked(self) -> None:
        client, self._modbus = self._modbus, None
        if client is not None:
            await client.close()

    def _note_meter_time(self, meter_time: datetime | None) -> None:
        """Track the meter clock's offset, so Modbus values get the meter's own time."""
        if meter_time is not None:
            offset = meter_time - datetime.now(UTC)
            # The meter's clock has 1 s resolution; ignore sub-second jitter.
            if abs((offset - self._clock_offset).total_seconds()) >= 1.0:
                self._clock_offset = offset

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
        else:
            source = SOURCE_MODBUS
        if source != self._data_source:
            log.warning("meter %s: data source is now %s", self.name, source)
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
        return Diagnostics(
            connection_state=state,
            last_successful_poll=max(successes) if successes else None,
            consecutive_failures=worst.consecutive_failures,
            # the error of a group failing now; "" once every group answers again
            last_error=worst.error_text() if worst.consecutive_failures else "",
            poll_duration_ms=self._fast.last_duration * 1000.0,
            crosscheck=self._crosscheck_text,
            crosscheck_ok=check.ok if check is not None else None,
            data_source=self._data_source,
        )

    async def _publish_diagnostics(self) -> None:
        await self.sink.diagnostics(self.diagnostics())
