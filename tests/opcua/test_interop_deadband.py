"""Interoperability of deadbands: node-opcua subscribes while the simulator ramps the load.

tests/interop/subscribe_deadband.mjs (node-opcua) subscribes to AcActivePowerTotal with a
deadband; this test steps the simulated meter's load from 2 to 10 kW in 0.5 kW steps
(waiting until the gateway serves each step) and compares what node-opcua was notified
with what OPC 10000-4 7.22.2 prescribes. Like test_interop.py, it fails (not skips)
without node-opcua installed: ``make test`` installs it.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio
from asyncua import Client

from emu_opcua.opcua.config import MeterConfig, ServerConfig
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig
from tests.opcua.test_interop import INTEROP, free_port, node_or_fail
from tests.opcua.test_subscriptions import FAST, RAMP_KW, TIMING, Env, deadband_rule, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCRIPT = INTEROP / "subscribe_deadband.mjs"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory) -> Env:
    tmp = tmp_path_factory.mktemp("interop-deadband")
    async with Fleet(FleetConfig(meters=1, host="127.0.0.1", control_port=None, refresh_interval=0.1)) as fleet:
        await fleet.wait_warm()
        p = fleet.ports()[0]
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp / "pki", application_uri="urn:test:emu-opcua",
            security_policies=("None",),
            meters=(MeterConfig(name="ramp", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                                fast_interval=FAST["ramp"], **TIMING),))
        async with GatewayServer(config) as gateway:
            async with Client(config.endpoint, timeout=10) as client:
                e = Env(fleet, gateway, client)
                await wait_for(lambda: e.value(e.power()), lambda v: v is not None, "ramp polled")
                yield e


class NodeClient:
    """subscribe_deadband.mjs running: its JSON lines as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict] = []

    @classmethod
    async def start(cls, env: Env, kind: str, amount: float, sampling: float = 0.0) -> NodeClient:
        node = node_or_fail()
        node_id = env.power().to_string()
        proc = await asyncio.create_subprocess_exec(
            node, str(SCRIPT), env.gateway.config.endpoint, node_id, kind,
            str(amount), str(sampling), cwd=INTEROP, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return cls(proc)

    async def until(self, key: str, timeout: float = 30.0) -> dict:
        """Read lines until one has ``key`` (node-opcua logs other lines on stdout too)."""
        async def read() -> dict:
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = (await self.proc.stderr.read()).decode(errors="replace")
                    pytest.fail(f"node-opcua client ended before {key!r}:\n{err}")
                text = raw.decode(errors="replace").strip()
                if text.startswith("{"):
                    line = json.loads(text)
                    self.lines.append(line)
                    if key in line:
                        return line
        try:
            return await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            self.proc.kill()
            pytest.fail(f"node-opcua client: no {key!r} within {timeout:g} s; so far: {self.lines}")

    async def finish(self) -> list[dict]:
        self.proc.stdin.close()
        await self.until("done")
        assert await asyncio.wait_for(self.proc.wait(), 30) == 0
        return self.lines

    def values(self) -> list[float]:
        return [line["value"] for line in self.lines if "value" in line]


@pytest.mark.parametrize("kind, amount", [("Absolute", 2.0), ("Percent", 0.1)],
                         ids=["absolute-2kW", "percent-0.1-of-EURange"])
async def test_node_opcua_deadband_ramp(env: Env, kind: str, amount: float):
    served = [await env.set_load(RAMP_KW[0])]
    client = await NodeClient.start(env, kind, amount)
    try:
        created = (await client.until("created"))["created"]
        assert created["statusCode"] == "Good", created
        await client.until("ready")
        await client.until("value")  # the initial one, before the ramp starts
        for kw in RAMP_KW[1:]:
            served.append(await env.set_load(kw))
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        await client.finish()
    finally:
        if client.proc.returncode is None:
            client.proc.kill()
            await client.proc.wait()
        env.fleet.meters[0].set_load(None)
    expected = deadband_rule(served, 2.0)  # Percent 0.1 of EURange -1000..1000 kW = 2 kW
    assert len(expected) == 4, expected  # 2, 4.5, 7, 9.5
    assert client.values() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kind, amount, sampling, status, revised", [
    ("Percent", 150.0, 0.0, "BadDeadbandFilterInvalid", None),
    ("None", 0.0, 10.0, "Good", 1000 * FAST["ramp"]),  # faster than the poll: revised up to it
    ("None", 0.0, 3000.0, "Good", 3000.0),  # slower: honoured
])
async def test_node_opcua_sees_refusals_and_revised_sampling(env: Env, kind, amount, sampling, status, revised):
    client = await NodeClient.start(env, kind, amount, sampling)
    try:
        created = (await client.until("created"))["created"]
        if status == "Good":
            await client.until("ready")
        await client.finish()
    finally:
        if client.proc.returncode is None:
            client.proc.kill()
            await client.proc.wait()
    assert created["statusCode"] == status, created
    if revised is not None:
        assert created["revisedSamplingInterval"] == revised, created
