"""The gateway with history on: a syncer per meter, diagnostics read by a real OPC UA client."""

from __future__ import annotations

import asyncio
import socket

from asyncua import Client

from emu_opcua.opcua.config import HistoryConfig, MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def read_history(client, gateway, meter):
    diag = gateway.model.meters[meter].diagnostics
    names = ["HistorySyncState", "HistorySyncProgress", "HistoryRowsStored", "HistoryOldestRow",
             "HistoryNewestRow", "HistoryLastSyncError"]
    values = await client.read_values([client.get_node(diag[n]) for n in names])
    return dict(zip(names, values))


async def test_gateway_syncs_every_meter_and_shows_it(tmp_path):
    async with Fleet(FleetConfig(meters=2, history_days=5, control_port=None)) as fleet:
        meters = tuple(MeterConfig(name=f"m{i}", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port)
                       for i, p in enumerate(fleet.ports()))
        config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki",
                              security_policies=("None",), meters=meters, data_dir=tmp_path / "data",
                              history=HistoryConfig(max_concurrent_pages=1, interval=0.5))
        async with GatewayServer(config) as gateway:
            async with Client(config.endpoint, timeout=10) as client:
                for i, sim in enumerate(fleet.meters):
                    name = f"m{i}"
                    await asyncio.wait_for(gateway.syncers[name].current.wait(), 30)
                    for _ in range(50):  # the publisher writes after the step
                        shown = await read_history(client, gateway, name)
                        if shown["HistorySyncState"] == "current":
                            break
                        await asyncio.sleep(0.1)
                    physics = sim.advance()
                    held = physics.last_index - physics.first_index + 1
                    store = gateway.history.store
                    assert shown["HistorySyncState"] == "current"
                    assert shown["HistorySyncProgress"] == 100.0
                    assert shown["HistoryRowsStored"] == store.row_count(name) >= held
                    oldest, newest = store.extent(name)
                    assert shown["HistoryOldestRow"].timestamp() == oldest.timestamp
                    assert shown["HistoryNewestRow"].timestamp() == newest.timestamp
                    assert shown["HistoryLastSyncError"] == ""
        assert (tmp_path / "data" / "history.sqlite").exists()


async def test_history_off_says_so(tmp_path):
    async with Fleet(FleetConfig(meters=1, history_days=1, control_port=None)) as fleet:
        p = fleet.ports()[0]
        config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki",
                              security_policies=("None",), data_dir=tmp_path / "data",
                              meters=(MeterConfig(name="m", host=p.host, http_port=p.http_port,
                                                  modbus_port=p.modbus_port),))
        async with GatewayServer(config) as gateway:
            assert gateway.history is None and not gateway.syncers
            async with Client(config.endpoint, timeout=10) as client:
                shown = await read_history(client, gateway, "m")
                assert shown["HistorySyncState"] == "disabled"
        assert not (tmp_path / "data").exists()
