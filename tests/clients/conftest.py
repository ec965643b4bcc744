"""Fixtures: simulated fleets on 127.0.0.1 with ephemeral ports and a manual clock."""

import pytest
from sim_helpers import FakeMonotonic  # the simulator tests' hand-moved clock

from emu_opcua.simulator.fleet import Fleet, FleetConfig

#: Meter time at the start of every test fleet (a quarter hour, 2023-11-14 22:15 UTC).
START = 1_700_000_100.0


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def start_fleet(clock):
    """``await start_fleet(**FleetConfig fields)``: a simulated fleet on 127.0.0.1 with
    ephemeral ports, history integrated, stopped after the test."""
    fleets: list[Fleet] = []

    async def start(**config) -> Fleet:
        config.setdefault("control_port", None)
        config.setdefault("start_time", START)
        config.setdefault("host", "127.0.0.1")
        fleet = Fleet(FleetConfig(**config), monotonic=clock)
        fleets.append(fleet)
        await fleet.start()
        await fleet.wait_warm()
        return fleet

    yield start
    for fleet in fleets:
        await fleet.stop()
