"""A stopped GatewayServer gives the garbage collector back what it froze, and the
process's thresholds (one process may run several servers: tests, embedding)."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from emu_opcua.opcua.config import MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GC_THRESHOLDS, GatewayServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_stop_unfreezes_and_restores_thresholds(tmp_path):
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS
    dead = free_port()  # nothing listens: every poll fails fast, which counts as polled
    meter = MeterConfig(name="nowhere", host="127.0.0.1", http_port=dead, modbus_port=dead,
                        fast_interval=0.2, http_timeout=0.5, modbus_timeout=0.5)
    config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki",
                          security_policies=("None",), meters=(meter,))
    async with GatewayServer(config) as gateway:
        await asyncio.wait_for(gateway.settled.wait(), 30)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


@pytest.mark.parametrize("refresh_timestamps", [False, True], ids=["on-change", "refresh-timestamps"])
async def test_polling_creates_no_reference_cycles(tmp_path, refresh_timestamps: bool):
    # The gateway relies on it: in steady state the garbage collector has nothing to
    # find, so it never pauses the event loop for long (bench_gateway: no collection in
    # 30 s at 1000 meters). A cycle per poll of any part (clients, parsers, poller,
    # publisher, asyncua's write path) shows up here.
    from emu_opcua.simulator.fleet import Fleet, FleetConfig

    async with Fleet(FleetConfig(meters=2, host="127.0.0.1", control_port=None, history_days=0.2)) as fleet:
        await fleet.wait_warm()
        meters = tuple(
            MeterConfig(name=f"m{i}", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                        fast_interval=0.05, extremes_interval=0.1, status_interval=0.2, datalog_interval=0.2,
                        refresh_timestamps=refresh_timestamps)
            for i, p in enumerate(fleet.ports()))
        config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki",
                              security_policies=("None",), meters=meters)
        async with GatewayServer(config) as gateway:
            await asyncio.wait_for(gateway.settled.wait(), 30)
            await asyncio.sleep(1.0)  # every group polled a few times, connections open
            polls = sum(p.stats.polls for p in gateway.pollers.values())
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                await asyncio.sleep(2.0)
                gc.collect()
                ours = [o for o in gc.garbage
                        if getattr(o, "__module__", type(o).__module__).startswith(
                            ("emu_opcua.clients", "emu_opcua.gateway", "emu_opcua.meter", "emu_opcua.opcua",
                             "httpx", "h11", "pymodbus", "asyncua"))]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
            assert sum(p.stats.polls for p in gateway.pollers.values()) > polls + 20  # it did poll
            assert all(p.stats.failures == 0 for p in gateway.pollers.values())
    assert ours == [], sorted({type(o).__qualname__ for o in ours})
