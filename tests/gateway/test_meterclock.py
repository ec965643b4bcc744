"""The meter clock's offset, estimated from whole-second reports (pure, no sockets)."""

import math

import pytest

from emu_opcua.gateway.meterclock import MeterClock

LATENCY = 0.003  # s from sending a request to its answer


def report(clock: MeterClock, true_offset: float, sent: float) -> bool:
    """The meter answers a request sent at local ``sent``: its clock, truncated to the
    second, read halfway through."""
    meter_second = math.floor(sent + LATENCY / 2 + true_offset)
    return clock.observe(meter_second, sent, sent + LATENCY)


@pytest.mark.parametrize("true_offset", [0.0, 0.6, 0.97, -3600.3, 12.5])
def test_reports_timed_at_the_estimated_second_pin_the_offset(true_offset: float):
    clock = MeterClock()
    assert not clock.known and clock.offset == 0.0
    local = 1_800_000_000.25
    for n in range(12):
        report(clock, true_offset, local)
        assert clock.low <= true_offset <= clock.high, n  # the interval always holds the truth
        local += 5.0
        local += clock.delay_to_second(local)  # as the poller times the extremes poll
    # each report halves the interval: after 12, the latency is what is left
    assert abs(clock.offset - true_offset) < 0.01
    assert clock.uncertainty < 0.01
    assert clock.steps == 0


def test_one_report_is_within_half_a_second_and_not_biased_early():
    # The old estimate (meter second - local) is early by the fraction of the meter's
    # second at the report: up to a second.
    clock = MeterClock()
    report(clock, 0.6, 1_800_000_000.5)  # the meter's clock reads ...001.1: reports ...001
    assert clock.offset == pytest.approx(0.6, abs=0.5 + LATENCY)
    assert clock.offset > 0.6 - 0.5 - LATENCY  # the old way gave 0.6 - 1.1 = -0.5


def test_reports_at_one_phase_narrow_it_only_from_one_side():
    clock = MeterClock()
    for k in range(10):
        report(clock, 0.3, 1_800_000_000.1 + 5 * k)
    assert clock.uncertainty > 0.3  # why the poller times its requests


def test_a_clock_set_starts_again_from_the_new_report():
    clock = MeterClock()
    local = 1_800_000_000.0
    for _ in range(8):
        report(clock, 0.4, local)
        local += 5.0 + clock.delay_to_second(local + 5.0)
    assert abs(clock.offset - 0.4) < 0.02
    assert report(clock, 3600.4, local) is False  # the meter's clock was set an hour ahead
    assert clock.steps == 1
    assert abs(clock.offset - 3600.4) <= 0.5 + LATENCY
    for _ in range(8):
        local += 5.0 + clock.delay_to_second(local + 5.0)
        assert report(clock, 3600.4, local) is True
    assert abs(clock.offset - 3600.4) < 0.02


def test_a_drifting_clock_is_followed_without_a_reset():
    # 50 ppm fast: after a day, 4.3 s ahead. Within the drift allowance the interval
    # widens between reports, so the drifting truth never contradicts it.
    clock = MeterClock()
    local = 1_800_000_000.0
    start = local
    for _ in range(24 * 60):  # one report a minute, for a day
        truth = 0.2 + 50e-6 * (local - start)
        report(clock, truth, local)
        assert clock.low <= truth <= clock.high
        local += 60.0 + clock.delay_to_second(local + 60.0)
    assert clock.steps == 0
    assert abs(clock.offset - truth) < 0.02


def test_meter_time_adds_the_offset():
    clock = MeterClock()
    clock.observe(1_800_000_100, 1_800_000_000.0, 1_800_000_000.0)
    assert clock.meter_time(1_800_000_000.0).timestamp() == pytest.approx(1_800_000_100.5)
    assert clock.meter_time(0).tzinfo is not None
