"""End to end: a simulated meter's datalog, synced into the gateway's SQLite store, read
back over OPC UA (asyncua's client) equals what the meter's own datalog says."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta

import pytest
from asyncua import Client

from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.history.raw import row_status
from emu_opcua.meter.catalogue import BY_CODE
from emu_opcua.opcua.config import HistoryConfig, MeterConfig, ServerConfig
from emu_opcua.opcua.history import HISTORIZED
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig

WAIT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_synced_datalog_reads_back_as_history(tmp_path):
    async with Fleet(FleetConfig(meters=1, history_days=0.25, control_port=None)) as fleet:
        await fleet.wait_warm()
        port = fleet.ports()[0]
        async with MeterHttpClient(port.host, port.http_port) as http:
            meter_rows = await http.datalog(last=24)
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki", data_dir=tmp_path / "data",
            application_uri="urn:test:emu-opcua", security_policies=("None",),
            history=HistoryConfig(enabled=True, interval=1.0),
            meters=(MeterConfig(name="boiler", host=port.host, http_port=port.http_port,
                                modbus_port=port.modbus_port),))
        async with GatewayServer(config) as gateway:
            store = gateway.history.store
            deadline = time.monotonic() + WAIT
            while store.row_count("boiler") < len(meter_rows):
                if time.monotonic() > deadline:
                    pytest.fail(f"the store has {store.row_count('boiler')} rows, the meter {len(meter_rows)}")
                await asyncio.sleep(0.2)
            rows = sorted(meter_rows, key=lambda r: (r.timestamp, r.index))
            start, end = rows[0].timestamp, rows[-1].timestamp + timedelta(seconds=1)
            async with Client(config.endpoint, timeout=10) as client:
                for code in sorted(HISTORIZED):
                    node = client.get_node(gateway.model.quantity("boiler", code))
                    history = await node.read_raw_history(start, end, return_bounds=False)
                    assert [dv.SourceTimestamp for dv in history] == [r.timestamp for r in rows], code
                    assert [dv.Value.Value for dv in history] == [r.value(BY_CODE[code]) for r in rows], code
                    assert [dv.StatusCode.value for dv in history] == [
                        row_status(int(r.status), BY_CODE[code]) for r in rows], code
