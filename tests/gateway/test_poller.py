"""MeterPoller against simulated meters over real sockets, with a recording MeterSink."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import pytest

from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.clients.modbus import MeterModbusClient
from emu_opcua.gateway.poller import (
    FAST_CODES, SOURCE_HTTP_MISMATCH, SOURCE_HTTP_MODBUS_FAILED, SOURCE_HTTP_MODBUS_OFF, SOURCE_MODBUS, Diagnostics,
    MeterPoller, PollSettings,
)
from emu_opcua.meter.meterdata import Extremes
from emu_opcua.meter.registers import RegisterMap
from emu_opcua.meter.status import MeterStatus
from emu_opcua.simulator.fleet import Fleet, FleetConfig, SimClock, SimulatedMeter

WAIT = 20.0


class RecordingSink:
    """A MeterSink that remembers every call, stamped with the monotonic time."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, Any]] = []
        self.values: dict[str, float] = {}
        self.last_diagnostics: Diagnostics | None = None

    def _add(self, kind: str, payload: Any) -> None:
        self.calls.append((time.monotonic(), kind, payload))

    async def measurements(self, values: Mapping[str, float], source_time: datetime) -> None:
        self.values.update(values)
        self._add("measurements", (dict(values), source_time))

    async def measurements_failed(self, codes: tuple[str, ...], status: str) -> None:
        self._add("measurements_failed", (codes, status))

    async def extremes(self, extremes: Mapping[str, Extremes]) -> None:
        self._add("extremes", dict(extremes))

    async def extremes_failed(self, status: str) -> None:
        self._add("extremes_failed", status)

    async def status(self, status: MeterStatus) -> None:
        self._add("status", status)

    async def status_failed(self, status: str) -> None:
        self._add("status_failed", status)

    async def diagnostics(self, diagnostics: Diagnostics) -> None:
        self.last_diagnostics = diagnostics
        self._add("diagnostics", diagnostics)

    def of(self, kind: str) -> list[tuple[float, Any]]:
        return [(t, p) for t, k, p in self.calls if k == kind]

    def fast_values(self) -> list[tuple[float, dict[str, float]]]:
        return [(t, v) for t, (v, _) in self.of("measurements") if "active_power_total" in v]


async def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)
    return result


class Running:
    def __init__(self, poller: MeterPoller, sink: RecordingSink, task: asyncio.Task, http: MeterHttpClient):
        self.poller, self.sink, self.task, self.http = poller, sink, task, http


async def start_poller(http_host: str, http_port: int, modbus_host: str, modbus_port: int | None,
                       settings: PollSettings, register_map: RegisterMap | None = None,
                       name: str = "meter", http_timeout: float = 5.0) -> Running:
    sink = RecordingSink()
    http = MeterHttpClient(http_host, http_port, timeout=http_timeout)

    def factory(port: int) -> MeterModbusClient:
        return MeterModbusClient(modbus_host, port, register_map=register_map, timeout=1.0)

    poller = MeterPoller(name=name, http=http, modbus_factory=factory, sink=sink, settings=settings,
                         modbus_port=modbus_port)
    task = asyncio.create_task(poller.run())
    return Running(poller, sink, task, http)


async def stop(running: Running) -> None:
    running.task.cancel()
    try:
        await running.task
    except asyncio.CancelledError:
        pass
    await running.http.aclose()


@pytest.fixture
async def fleet():
    async with Fleet(FleetConfig(meters=2, host="127.0.0.1", control_port=None)) as fleet:
        await fleet.wait_warm()
        yield fleet


@pytest.fixture
async def pollers():
    started: list[Running] = []
    yield started
    for running in started:
        await stop(running)


FAST = PollSettings(fast_interval=0.1, extremes_interval=0.5, status_interval=1.0, datalog_interval=1.0,
                    crosscheck_interval=0.5, stale_after=1.5, max_backoff=5.0)


async def test_backoff_after_failures_then_recovery(fleet: Fleet, pollers):
    sim = fleet.meters[0]
    r = await start_poller(sim.host, sim.http_port, sim.host, sim.modbus_port, FAST)
    pollers.append(r)
    await wait_until(lambda: r.sink.fast_values(), "a first fast poll")
    await sim.refuse_connections()
    failed = await wait_until(lambda: len(fast_failures(r.sink)) >= 5 and fast_failures(r.sink),
                              "five failed fast polls")
    times = [t for t, _ in failed]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Backoff doubles from fast_interval, jitter takes at most a quarter off: each gap is
    # at least 0.75 * 0.1 * 2**k (sleep never returns early) -- except that the poller
    # shortens the one gap that would overshoot the moment values turn stale, so they turn
    # Bad on time; gaps ending well before that moment are pure backoff.
    unstale_until = times[0] + FAST.stale_after - 2 * FAST.fast_interval
    checked = 0
    for k, gap in enumerate(gaps):
        if times[k + 1] < unstale_until:
            assert gap >= 0.75 * FAST.fast_interval * 2 ** k * 0.99, (k, gaps)
            checked += 1
    assert checked >= 2, gaps
    statuses = [s for _, (_, s) in failed]
    assert statuses[0] == "UncertainLastUsableValue"
    await wait_until(lambda: any(s == "BadNoCommunication" for _, (_, s) in fast_failures(r.sink)),
                     "BadNoCommunication after stale_after")
    d = r.poller.diagnostics()
    assert d.consecutive_failures >= 5 and "MeterUnreachable" in d.last_error
    await sim.clear_faults()
    n = len(r.sink.fast_values())
    await wait_until(lambda: len(r.sink.fast_values()) >= n + 5, "fast polls again at the interval")
    assert r.poller.diagnostics().consecutive_failures == 0


def fast_failures(sink: RecordingSink) -> list[tuple[float, tuple]]:
    return [(t, p) for t, p in sink.of("measurements_failed") if "active_power_total" in p[0]]


async def test_fast_group_continues_while_http_is_slow(fleet: Fleet, pollers):
    """The simulator's ``delay`` slows a meter's HTTP and Modbus alike, so the poller reads
    Modbus from meter 0 and HTTP from meter 1, which answers after 3 s: the fast group
    must keep its pace while every HTTP request of the same poller hangs."""
    modbus_meter, http_meter = fleet.meters
    await http_meter.slow_responses(3.0)
    settings = PollSettings(fast_interval=0.1, extremes_interval=0.5, status_interval=1.0, datalog_interval=1.0,
                            crosscheck_interval=60.0, crosscheck_failures_to_switch=1000, stale_after=5.0)
    r = await start_poller(http_meter.host, http_meter.http_port, modbus_meter.host, modbus_meter.modbus_port,
                           settings)
    pollers.append(r)
    await wait_until(lambda: len(r.sink.fast_values()) >= 10, "ten fast polls")
    assert not r.sink.of("status") and not r.sink.of("extremes"), "an HTTP answer came before 3 s"
    assert r.poller.diagnostics().data_source == SOURCE_MODBUS
    await wait_until(lambda: r.sink.of("status"), "the slow status.json answer")


async def test_auto_modbus_port_from_status(fleet: Fleet, pollers):
    sim = fleet.meters[1]
    r = await start_poller(sim.host, sim.http_port, sim.host, None, FAST)
    pollers.append(r)
    values = await wait_until(lambda: r.sink.fast_values(), "fast values over Modbus")
    assert r.poller.modbus_port == sim.modbus_port
    # before status.json told the port, no Modbus read was attempted
    first_status = r.sink.of("status")[0][0]
    assert values[0][0] >= first_status
    assert r.poller.diagnostics().data_source == SOURCE_MODBUS
    assert set(FAST_CODES) <= set(values[0][1])


def shifted(shift: int) -> RegisterMap:
    text = "\n".join(f"[registers.{code}]\naddress = {src.address + shift}\n"
                     for code, src in RegisterMap.default().entries.items())
    return RegisterMap.from_toml(text, source="shifted.toml")


@pytest.mark.parametrize("shift", [2, 1], ids=["neighbour-registers", "off-by-one"])
async def test_crosscheck_switches_to_http_and_back(pollers, shift: int):
    """The meter's own register layout is wrong for our map, then fixed (a firmware update:
    the meter restarts with the layout the map expects, on the same ports)."""
    clock = SimClock()
    wrong = SimulatedMeter(22350000, clock=clock, register_map=shifted(-shift))
    http_port, modbus_port = await wrong.start()
    settings = PollSettings(fast_interval=0.2, extremes_interval=0.3, status_interval=1.0, datalog_interval=1.0,
                            crosscheck_interval=0.5, crosscheck_failures_to_switch=2, stale_after=3.0)
    r = await start_poller("127.0.0.1", http_port, "127.0.0.1", modbus_port, settings)
    pollers.append(r)
    right: SimulatedMeter | None = None
    try:
        d = await wait_until(lambda: (d := r.sink.last_diagnostics) and d.data_source == SOURCE_HTTP_MISMATCH and d,
                             "data source switched to HTTP on the register map mismatch")
        assert d.crosscheck_ok is False
        assert r.poller._crosscheck_failures >= settings.crosscheck_failures_to_switch
        # from now on the fast values are meterdata.json's
        n = len(r.sink.fast_values())
        await wait_until(lambda: len(r.sink.fast_values()) >= n + 3, "fast values from HTTP")
        meterdata = wrong.meterdata()
        latest = r.sink.fast_values()[-1][1]
        assert latest["voltage_l1"] == pytest.approx(meterdata.values["voltage_l1"], abs=2.0)
        assert latest["frequency"] == pytest.approx(meterdata.values["frequency"], abs=0.2)

        await wrong.stop()
        right = SimulatedMeter(22350000, clock=clock, http_port=http_port, modbus_port=modbus_port)
        await right.start()
        d = await wait_until(lambda: (d := r.sink.last_diagnostics) and d.data_source == SOURCE_MODBUS
                             and d.crosscheck_ok and d, "back on Modbus once the map agrees")
        assert "agrees" in d.crosscheck
    finally:
        await wrong.stop()
        if right is not None:
            await right.stop()


async def test_a_bug_in_a_poll_is_logged_and_never_ends_the_polling(fleet: Fleet, pollers, caplog):
    sim = fleet.meters[0]
    r = await start_poller(sim.host, sim.http_port, sim.host, sim.modbus_port, FAST)
    pollers.append(r)
    original = r.sink.measurements
    broken = {"left": 3}

    async def measurements(values, source_time):
        if "active_power_total" in values and broken["left"] > 0:
            broken["left"] -= 1
            raise RuntimeError("a bug in a sink")
        await original(values, source_time)

    r.sink.measurements = measurements
    await wait_until(lambda: broken["left"] == 0 and len(r.sink.fast_values()) >= 3,
                     "fast polls going on after three failing ones")
    assert not r.task.done()
    assert "a bug in a sink" in caplog.text and "Traceback" in caplog.text
    assert r.poller.diagnostics().consecutive_failures == 0


async def test_a_meter_trickling_its_answer_fails_the_poll_at_the_deadline(fleet: Fleet, pollers):
    """Each byte arrives well within the read timeout, so no request times out; the
    poll deadline still ends the poll, and the extremes turn Uncertain instead of
    staying Good forever. The fast group (Modbus) goes on."""
    sim = fleet.meters[0]
    trickling = asyncio.Event()

    async def meter_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # a proxy to the simulated meter's HTTP that, once told to, sends answers slowly
        upstream_r, upstream_w = await asyncio.open_connection(sim.host, sim.http_port)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                upstream_w.write(head)
                await upstream_w.drain()
                answer_head = await upstream_r.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in answer_head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                answer = answer_head + await upstream_r.readexactly(length)
                if not trickling.is_set():
                    writer.write(answer)
                else:
                    for i in range(len(answer)):
                        writer.write(answer[i:i + 1])
                        await writer.drain()
                        await asyncio.sleep(0.1)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            upstream_w.close()
            writer.close()

    proxy = await asyncio.start_server(meter_http, "127.0.0.1", 0)
    try:
        port = proxy.sockets[0].getsockname()[1]
        settings = PollSettings(fast_interval=0.2, extremes_interval=0.5, status_interval=1.0,
                                datalog_interval=1.0, crosscheck_interval=60.0, stale_after=30.0,
                                max_backoff=1.0, poll_deadline=1.5)
        # each byte comes within 0.1 s, well inside the 0.5 s read timeout
        r = await start_poller("127.0.0.1", port, sim.host, sim.modbus_port, settings, http_timeout=0.5)
        pollers.append(r)
        await wait_until(lambda: r.sink.of("extremes"), "first extremes")
        trickling.set()
        failed = await wait_until(lambda: r.sink.of("extremes_failed"), "the extremes poll failing")
        assert failed[0][1] == "UncertainLastUsableValue"
        # the polls holding the meter's connections end at the deadline (the others may
        # fail sooner, waiting for a free connection)
        await wait_until(lambda: "did not finish within 1.5 s" in r.poller.diagnostics().last_error,
                         "a poll ended by the deadline")
        n = len(r.sink.fast_values())
        await wait_until(lambda: len(r.sink.fast_values()) >= n + 3, "fast polls going on")
    finally:
        proxy.close()


# --- the meter's clock ------------------------------------------------------------------------
@pytest.mark.parametrize("ahead", [0.6, -3600.3], ids=["0.6s-ahead", "an-hour-behind"])
async def test_modbus_timestamps_follow_the_meter_clock(pollers, ahead: float):
    """The simulator's clock is known: it runs ``ahead`` seconds from ours. Modbus values
    carry no time; their SourceTimestamp must be the meter's clock when they were read
    (the old estimate, whole reported seconds minus our clock, ran up to 1 s early)."""
    async with Fleet(FleetConfig(meters=1, control_port=None, history_days=0.1,
                                 start_time=time.time() + ahead)) as fleet:
        await fleet.wait_warm()
        sim = fleet.meters[0]
        r = await start_poller(sim.host, sim.http_port, sim.host, sim.modbus_port, FAST)
        pollers.append(r)
        errors: list[float] = []
        original = r.sink.measurements

        async def measurements(values, source_time):
            if "active_power_total" in values:  # a fast poll, just read
                errors.append(source_time.timestamp() - sim.meter_time())
            await original(values, source_time)

        r.sink.measurements = measurements
        # a few meterdata.json reports (every 0.5 s) pin the offset
        await asyncio.sleep(4.0)
        assert r.poller.diagnostics().data_source == SOURCE_MODBUS
        del errors[:]
        await wait_until(lambda: len(errors) >= 10, "ten more fast polls")
        # stamped halfway through the read, compared right after it: a read slowed by a
        # loaded machine is off by half its duration, the typical one by milliseconds
        shown = [round(e, 3) for e in errors]
        assert statistics.median(abs(e) for e in errors) < 0.05, shown
        assert max(abs(e) for e in errors) < 0.3, shown


# --- Modbus failing while HTTP answers --------------------------------------------------------
#: status.json every 30 s: returning to Modbus must not wait for it
RETRY = PollSettings(fast_interval=0.1, extremes_interval=0.5, status_interval=30.0, datalog_interval=30.0,
                     crosscheck_interval=0.5, stale_after=1.5, max_backoff=5.0, modbus_retry_max=0.5)


def bad_fast_failures(sink: RecordingSink, since: float) -> list:
    return [(t, p) for t, p in fast_failures(sink) if t >= since]


async def test_dropped_modbus_connections_fall_back_to_http_and_back(fleet: Fleet, pollers):
    sim = fleet.meters[0]
    r = await start_poller(sim.host, sim.http_port, sim.host, sim.modbus_port, RETRY)
    pollers.append(r)
    await wait_until(lambda: (d := r.sink.last_diagnostics) and d.crosscheck_ok, "a first cross-check")
    since = time.monotonic()
    await sim.drop_modbus_connections()
    d = await wait_until(lambda: (d := r.sink.last_diagnostics) and d.data_source == SOURCE_HTTP_MODBUS_FAILED
                         and d, "DataSource saying Modbus does not answer")
    n = len(r.sink.fast_values())
    await wait_until(lambda: len(r.sink.fast_values()) >= n + 10, "fast values from meterdata.json")
    # served all along: the fast values never went Uncertain or Bad
    assert bad_fast_failures(r.sink, since) == []
    assert r.poller.diagnostics().connection_state.value == "Connected"
    latest = r.sink.fast_values()[-1][1]
    assert latest["voltage_l1"] == pytest.approx(sim.meterdata().values["voltage_l1"], abs=2.0)
    # Modbus was kept being tried
    requests = sim.modbus.requests
    await wait_until(lambda: sim.modbus.requests > requests + 1, "Modbus retries")
    # Modbus answers again: used again within a retry interval, not at the next status poll
    await sim.drop_modbus_connections(False)
    back = time.monotonic()
    await wait_until(lambda: r.poller.diagnostics().data_source == SOURCE_MODBUS, "back on Modbus", timeout=5.0)
    assert time.monotonic() - back < RETRY.modbus_retry_max + 1.0
    assert bad_fast_failures(r.sink, since) == []


async def test_modbus_switched_on_again_is_used_at_once(fleet: Fleet, pollers):
    sim = fleet.meters[1]
    r = await start_poller(sim.host, sim.http_port, sim.host, sim.modbus_port, RETRY)
    pollers.append(r)
    await wait_until(lambda: r.sink.fast_values(), "a first fast poll")
    await sim.disable_modbus()
    # the failing Modbus read makes the poller ask status.json at once, which says why
    await wait_until(lambda: r.poller.diagnostics().data_source == SOURCE_HTTP_MODBUS_OFF,
                     "DataSource saying Modbus is off", timeout=5.0)
    await asyncio.sleep(1.0)
    assert r.sink.of("status")[-1][1].modbus_enabled is False
    await sim.clear_faults()
    # status.json comes every 30 s; the Modbus retries notice it within modbus_retry_max
    await wait_until(lambda: r.poller.diagnostics().data_source == SOURCE_MODBUS, "back on Modbus", timeout=5.0)
    # and ask status.json at once (Configuration/ModbusEnabled)
    await wait_until(lambda: r.sink.of("status")[-1][1].modbus_enabled, "status.json asked again", timeout=5.0)
