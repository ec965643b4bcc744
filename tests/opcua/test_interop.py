"""Interoperability: an independent OPC UA stack (node-opcua) reads a measurement.

``make test`` installs node-opcua into tests/interop/node_modules (npm ci); without it the
test fails, saying so, rather than skipping: CI runs ``make test``.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import socket
from pathlib import Path

import pytest
from asyncua import Client

from emu_opcua.firmware.image import inspect_image
from emu_opcua.meter.units import UNECE_NAMESPACE_URI
from emu_opcua.opcua.config import MeterConfig, ServerConfig, UserConfig
from emu_opcua.opcua.security import hash_password
from emu_opcua.opcua.nodeset import NAMESPACE_URI
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig

INTEROP = Path(__file__).resolve().parents[1] / "interop"
SCRIPT = INTEROP / "read_measurement.mjs"
SERVICES_SCRIPT = INTEROP / "services.mjs"
WAIT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_node(node: str, script: Path, *args: str) -> dict:
    """Run a node-opcua script; its result is the last JSON object line on stdout."""
    # asyncio subprocess: the server runs in this event loop and must keep answering
    proc = await asyncio.create_subprocess_exec(
        node, str(script), *args, cwd=INTEROP, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"node {script.name} did not finish within 60 s")
    assert proc.returncode == 0, f"node-opcua client failed:\n{err.decode(errors='replace')}"
    # node-opcua logs warnings on stdout too: the result is the JSON object line
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"no output from the node-opcua client; stderr:\n{err.decode(errors='replace')}"
    return json.loads(lines[-1])


def node_or_fail() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js) is not installed: install it, then run `make test` "
                    "(it installs node-opcua into tests/interop/node_modules)")
    if not (INTEROP / "node_modules" / "node-opcua-client").is_dir():
        pytest.fail("tests/interop/node_modules is missing node-opcua-client: run `make test` "
                    "(it runs npm ci in tests/interop)")
    return node


# node-opcua sends its (untrusted) client certificate in CreateSession even on a
# SecurityPolicy None channel; OPC 10000-4 5.6.2.2 says the server shall then ignore it.
# The default-trust case proves our validator does (asyncua itself would refuse it).
@pytest.mark.parametrize("trust_all_clients", [False, True],
                         ids=["default-trust", "trust-all-clients"])
async def test_node_opcua_reads_active_power_with_units(tmp_path: Path, trust_all_clients: bool):
    node = node_or_fail()
    async with Fleet(FleetConfig(meters=1, host="127.0.0.1", control_port=None)) as fleet:
        await fleet.wait_warm()
        p = fleet.ports()[0]
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki", application_uri="urn:test:emu-opcua",
            security_policies=("None",), allow_anonymous=True, trust_all_clients=trust_all_clients,
            meters=(MeterConfig(name="boiler", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                                fast_interval=0.5, extremes_interval=1.0, status_interval=2.0),),
        )
        async with GatewayServer(config) as gateway:
            # wait (with our own client) until the value has been polled once
            power_id = gateway.model.quantity("boiler", "active_power_total")
            async with Client(config.endpoint, timeout=10) as client:
                deadline = asyncio.get_running_loop().time() + WAIT
                while True:
                    dv = await client.get_node(power_id).read_data_value(raise_on_bad_status=False)
                    if dv.StatusCode.is_good():
                        break
                    if asyncio.get_running_loop().time() > deadline:
                        pytest.fail(f"boiler AcActivePowerTotal not Good within {WAIT:g} s: {dv.StatusCode.name}")
                    await asyncio.sleep(0.1)
            path = [f"{NAMESPACE_URI}|{name}" for name in ("Meters", "boiler", "Measurements", "AcActivePowerTotal")]
            result = await run_node(node, SCRIPT, f"opc.tcp://127.0.0.1:{config.port}/", *path)
    assert result["statusCode"] == "Good", result
    assert isinstance(result["value"], (int, float)) and math.isfinite(result["value"]), result
    eu = result["engineeringUnits"]
    assert eu is not None, result
    assert eu["unitId"] == 4937556 and eu["namespaceUri"] == UNECE_NAMESPACE_URI, eu
    assert eu["displayName"] == "kW"
    assert result["displayName"]


async def wait_good(config: ServerConfig, node_ids: list) -> None:
    async with Client(config.endpoint, timeout=10) as client:
        deadline = asyncio.get_running_loop().time() + WAIT
        for node_id in node_ids:
            while not (await client.get_node(node_id).read_data_value(raise_on_bad_status=False)).StatusCode.is_good():
                if asyncio.get_running_loop().time() > deadline:
                    pytest.fail(f"{node_id} not Good within {WAIT:g} s")
                await asyncio.sleep(0.1)


async def test_node_opcua_admin_cannot_overwrite_read_only_values_and_gets_monitored_items(tmp_path: Path):
    node = node_or_fail()
    async with Fleet(FleetConfig(meters=1, host="127.0.0.1", control_port=None)) as fleet:
        await fleet.wait_warm()
        p = fleet.ports()[0]
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki", application_uri="urn:test:emu-opcua",
            security_policies=("None",), allow_anonymous=True,
            users=(UserConfig("alice", hash_password("alice-pw"), "admin"),),
            meters=(MeterConfig(name="boiler", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                                fast_interval=0.5, extremes_interval=1.0, status_interval=1.0),),
        )
        async with GatewayServer(config) as gateway:
            model = gateway.model
            power = model.quantity("boiler", "active_power_total")
            serial = model.identification("boiler", "SerialNumber")
            ip = model.configuration("boiler", "IpAddress")
            await wait_good(config, [power, serial, ip])
            real_serial = gateway.server.read_attribute_value(serial).Value.Value
            result = await run_node(node, SERVICES_SCRIPT, config.endpoint,
                                    "alice", "alice-pw", *(n.to_string() for n in (power, serial, ip)))
            assert gateway.server.read_attribute_value(serial).Value.Value == real_serial
            assert gateway.server.read_attribute_value(power).Value.Value != 1234.5
    assert result["writeStatuses"] == ["BadNotWritable"] * 4, result
    assert (result["serialStatus"], result["serial"]) == ("Good", real_serial), result
    assert result["serverHandles"] == [result["monitoredItemId"]], result
    assert result["clientHandles"] == [result["clientHandle"]], result
    assert result["unknownSubscription"] == "BadSubscriptionIdInvalid", result


async def test_node_opcua_loads_firmware_through_di_file_transfer(tmp_path: Path):
    """A generic DI update client (node-opcua) over SignAndEncrypt as an admin: the
    image written to the temporary file becomes the meter's PendingVersion."""
    from images import make_image, make_key

    node = node_or_fail()
    key = make_key(tmp_path)
    image = make_image(tmp_path, key, version="1.1.0", size=40_000, seed=9)
    (tmp_path / "update.bin").write_bytes(image)
    fleet_config = FleetConfig(meters=1, host="127.0.0.1", control_port=None, history_days=0.05,
                               firmware_key_pem=key.pem.read_bytes())
    async with Fleet(fleet_config) as fleet:
        p = fleet.ports()[0]
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki", application_uri="urn:test:emu-opcua",
            hostnames=("localhost", "127.0.0.1"), security_policies=("Basic256Sha256_SignAndEncrypt",),
            allow_anonymous=False, trust_all_clients=True, shutdown_grace=0,
            users=(UserConfig(name="alice", password_hash=hash_password("alice-pw"), role="admin"),),
            meters=(MeterConfig(name="boiler", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                                smp_port=p.smp_port),),
        )
        async with GatewayServer(config) as gateway:
            idx = gateway.model.namespace_index
            transfer = f"ns={idx};s=boiler.SoftwareUpdate.Loading.FileTransfer"
            pending = f"ns={idx};s=boiler.SoftwareUpdate.Loading.PendingVersion.SoftwareRevision"
            result = await run_node(node, INTEROP / "software_update.mjs", config.endpoint, "alice", "alice-pw",
                                    transfer, pending, str(tmp_path / "update.bin"))
    assert result["generate"] == "Good" and result["writes"] == ["Good"] and result["commit"] == "Good"
    assert result["fileId"].endswith("boiler.SoftwareUpdate.Loading.FileTransfer.File")
    assert result["pending"] == "1.1.0"
    assert fleet.meters[0].module.slots[1].info.hash == inspect_image(image).hash
