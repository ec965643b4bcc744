"""Fixtures: in-process fleets on 127.0.0.1 with ephemeral ports, a controllable clock."""

import pytest
from sim_helpers import START, FakeMonotonic

from emu_opcua.simulator.fleet import Fleet, FleetConfig


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def make_fleet(monotonic):
    """``await make_fleet(**FleetConfig fields)`` -> a started Fleet, stopped after the test."""
    fleets = []

    async def make(**kw):
        kw.setdefault("history_days", 2)
        kw.setdefault("start_time", START)
        kw.setdefault("refresh_interval", 0.0)
        fleet = Fleet(FleetConfig(**kw), monotonic=monotonic)
        await fleet.start(warm_up=False)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        await fleet.stop()


@pytest.fixture
async def fleet(make_fleet):
    return await make_fleet()


@pytest.fixture
def meter(fleet):
    return fleet.meters[0]
