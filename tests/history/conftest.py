"""Fixtures: simulated meters on real sockets (fake monotonic clock), real SQLite stores."""

import pytest
from sim_helpers import START, FakeMonotonic

from emu_opcua.history.sqlite import SqliteHistoryStore
from emu_opcua.history.syncer import StoreWriter
from emu_opcua.simulator.fleet import Fleet, FleetConfig


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def make_fleet(monotonic):
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
def writer(tmp_path):
    w = StoreWriter(SqliteHistoryStore.in_directory(tmp_path / "data"))
    yield w
    w.close()
