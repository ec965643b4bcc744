"""The simulated TCP module's switches through the control server (real HTTP and SMP/UDP)."""

from __future__ import annotations

import httpx
import pytest

from emu_opcua.clients.smp import MeterSmpClient
from emu_opcua.errors import MeterTimeout
from emu_opcua.simulator.fleet import Fleet, FleetConfig
from sim_helpers import control_url


@pytest.fixture
async def fleet():
    async with Fleet(FleetConfig(meters=1, history_days=0.0)) as fleet:
        yield fleet


async def test_module_switches_and_state(fleet):
    meter = fleet.meters[0]
    async with httpx.AsyncClient() as c:
        info = (await c.get(f"{control_url(fleet)}/0/module")).json()
        assert info["smp_port"] == meter.smp_port and info["slots"][0]["version"] == "1.0.14"
        assert info["slots"][0]["confirmed"] and info["online_update_allowed"]
        r = await c.post(f"{control_url(fleet)}/0/module", json={"drop_requests": 1.0, "online_update_allowed": False})
        assert r.status_code == 200 and r.json()["faults"]["drop_requests"] == 1.0
        async with MeterSmpClient(meter.host, meter.smp_port, timeout=0.1, retries=1) as smp:
            with pytest.raises(MeterTimeout):  # every request datagram lost
                await smp.image_states()
            await c.post(f"{control_url(fleet)}/0/module", json={"drop_requests": 0})
            assert (await smp.image_states())[0].version == "1.0.14"
        assert meter.status().online_update_allowed is False
        for bad in ({"drop_requests": 2}, {"nonsense": 1}, {"online_update_allowed": "yes"}, {"reboot_time": -1}):
            r = await c.post(f"{control_url(fleet)}/0/module", json=bad)
            assert r.status_code == 400, bad
        # the meter's own port has no such route
        r = await c.get(f"http://{meter.host}:{meter.http_port}/_sim/meters/0/module")
        assert r.status_code in (401, 404)
