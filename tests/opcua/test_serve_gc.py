"""A stopped GatewayServer gives the garbage collector back what it froze, and the
process's thresholds (one process may run several servers: tests, embedding)."""

from __future__ import annotations

import asyncio
import gc
import socket

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
