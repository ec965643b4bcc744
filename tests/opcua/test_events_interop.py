"""Interoperability: node-opcua subscribes to a meter's events on Server and reads them
back from history (tests/interop/meter_events.mjs), with the same EventIds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from emu_opcua.opcua.config import HistoryConfig, MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig
from tests.opcua.test_events import sim_event
from tests.opcua.test_interop import INTEROP, free_port, node_or_fail

SCRIPT = INTEROP / "meter_events.mjs"


async def test_node_opcua_subscribes_to_meter_events_on_server_and_reads_their_history(tmp_path: Path):
    node = node_or_fail()
    async with Fleet(FleetConfig(meters=1, history_days=0.1)) as fleet:
        await fleet.wait_warm()
        p = fleet.ports()[0]
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki", data_dir=tmp_path / "data",
            application_uri="urn:test:emu-opcua", security_policies=("None",), allow_anonymous=True,
            history=HistoryConfig(enabled=True, interval=0.3),
            meters=(MeterConfig(name="boiler", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port),))
        async with GatewayServer(config) as gateway:
            await asyncio.wait_for(gateway.syncers["boiler"].current.wait(), 30)
            meter = gateway.model.meters["boiler"].object
            proc = await asyncio.create_subprocess_exec(
                node, str(SCRIPT), config.endpoint, "i=2253", meter.to_string(), str(gateway.model.namespace_index),
                "2", cwd=INTEROP, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                async with asyncio.timeout(60):
                    while True:  # node-opcua logs on stdout too: wait for its ready line
                        line = await proc.stdout.readline()
                        assert line, f"node-opcua client ended:\n{(await proc.stderr.read()).decode()}"
                        if line.startswith(b'{"ready"'):
                            break
                    await sim_event(fleet, "ct_ratio", primary=800, secondary=5)
                    await sim_event(fleet, "vt_ratio", primary=20000, secondary=100)
                    out, err = await proc.communicate()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                pytest.fail("node meter_events.mjs did not finish within 60 s")
            assert proc.returncode == 0, f"node-opcua client failed:\n{err.decode(errors='replace')}"
            result = json.loads([ln for ln in out.decode().splitlines() if ln.startswith("{")][-1])
            stored = {s.event.event_id.hex(): s.event for s in gateway.history.store.read_events("boiler", 0, 1 << 40)}
    live = result["live"]
    assert len(live) == 2
    assert all(e["sourceName"] == "boiler" and e["eventType"].endswith("s=LogbookEntryEventType") for e in live)
    assert (live[0]["ctPrimary"], live[1]["ctPrimary"]) == (800, 800) and live[0]["ctPrimaryBefore"] != 800
    assert "VT" in live[1]["message"]
    # the same EventIds as the store's, and history (one event a page) holds them all
    assert {e["eventId"] for e in live} <= set(stored)
    history_ids = [e["eventId"] for e in result["history"]]
    # (the store, read after the client ended, may hold events of rows synced since)
    assert result["pages"] == len(history_ids) and set(history_ids) <= set(stored)
    assert len(set(history_ids)) == len(history_ids)
    assert live == [e for e in result["history"] if e["eventId"] in {x["eventId"] for x in live}]
