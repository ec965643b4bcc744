"""Backoff: exponential growth, cap, jitter bounds, reset."""

import pytest

from emu_opcua.clients.backoff import Backoff


def test_grows_exponentially_up_to_the_maximum_without_jitter():
    b = Backoff(initial=1.0, maximum=10.0, jitter=0.0)
    assert [b.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.attempts == 6


def test_reset_returns_to_the_initial_delay():
    b = Backoff(initial=0.5, maximum=8.0, jitter=0.0)
    for _ in range(4):
        b.next_delay()
    b.reset()
    assert b.attempts == 0
    assert b.next_delay() == 0.5


@pytest.mark.parametrize("r", [0.0, 0.5, 0.999999])
def test_jitter_takes_at_most_its_share_off(r):
    b = Backoff(initial=4.0, maximum=100.0, jitter=0.25, random_fn=lambda: r)
    assert b.next_delay() == pytest.approx(4.0 * (1 - 0.25 * r))
    assert b.next_delay() == pytest.approx(8.0 * (1 - 0.25 * r))


def test_real_jitter_stays_within_bounds():
    b = Backoff(initial=2.0, maximum=2.0, jitter=0.5)
    delays = [b.next_delay() for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 1  # actually spread


@pytest.mark.parametrize("kwargs", [
    {"initial": 0}, {"initial": 2, "maximum": 1}, {"factor": 0.5}, {"jitter": 1.5},
])
def test_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
