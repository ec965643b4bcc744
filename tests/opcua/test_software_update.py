"""DI SoftwareUpdate over OPC UA, end to end: asyncua clients, a GatewayServer, simulated
meters whose modules answer SMP on UDP (all on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket

import attrs
import pytest
from asyncua import Client, ua
from asyncua.crypto import security_policies

from emu_opcua.firmware.image import ImageVersion, inspect_image
from emu_opcua.opcua import di_nodeset as di
from emu_opcua.opcua.config import parse_config
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.opcua.software_update import MANUFACTURER_URI
from emu_opcua.simulator.fleet import Fleet, FleetConfig
from images import make_image, make_key
from tests.opcua.test_security import CLIENT_URI, client_cert, hashes  # noqa: F401 (fixtures)

SIGN = ua.MessageSecurityMode.Sign
ENCRYPT = ua.MessageSecurityMode.SignAndEncrypt
_VT = ua.VariantType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return make_key(folder, "sim"), make_key(folder, "foreign")


@pytest.fixture(scope="module")
def images(keys, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return {"new": make_image(folder, keys[0], version="1.1.0", size=50_000, seed=2),
            "newer": make_image(folder, keys[0], version="1.2.0", size=50_000, seed=3),
            "foreign": make_image(folder, keys[1], version="1.1.0", size=50_000, seed=4)}


@pytest.fixture
async def gateway(tmp_path, hashes, client_cert, keys):  # noqa: F811
    fleet_config = FleetConfig(meters=1, control_port=None, history_days=0.05, reboot_time=0.5,
                               firmware_key_pem=keys[0].pem.read_bytes())
    async with Fleet(fleet_config) as fleet:
        p = fleet.ports()[0]
        users = "".join(f'[[users]]\nname = "{n}"\npassword_hash = "{h}"\nrole = "{r}"\n'
                        for (n, h), r in zip(hashes.items(), ("admin", "reader", "operator")))
        config = parse_config(f"""
[server]
host = "127.0.0.1"
port = {free_port()}
application_uri = "urn:test:emu-opcua"
hostnames = ["localhost", "127.0.0.1"]
pki_dir = "pki"
security_policies = ["Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]
allow_anonymous = true
shutdown_grace = 0
{users}
[[meters]]
name = "m1"
host = "{p.host}"
http_port = {p.http_port}
modbus_port = {p.modbus_port}
smp_port = {p.smp_port}
firmware_reboot_timeout = 15
firmware_confirmation_timeout = 2
""", source="test.toml", base_dir=tmp_path)
        trusted = tmp_path / "pki" / "trusted"
        trusted.mkdir(parents=True)
        shutil.copy(client_cert[0], trusted / "test-client.der")
        async with GatewayServer(config) as gw:
            yield gw, fleet, config, tmp_path / "pki" / "own" / "cert.der"


async def connect(gw_fixture, client_cert, mode=ENCRYPT, user: str | None = "alice") -> Client:  # noqa: F811
    _gw, _fleet, config, server_cert = gw_fixture
    client = Client(config.endpoint, timeout=20)
    client.application_uri = CLIENT_URI
    await client.set_security(security_policies.SecurityPolicyBasic256Sha256, certificate=str(client_cert[0]),
                              private_key=str(client_cert[1]), server_certificate=str(server_cert), mode=mode)
    if user is not None:
        client.set_user(user)
        client.set_password(f"{user}-pw")
    await client.connect()
    return client


class AddIn:
    """Node ids of meter m1's SoftwareUpdate AddIn, as a client finds them."""

    def __init__(self, idx: int, di_idx: int) -> None:
        def n(*path: str) -> ua.NodeId:
            return ua.NodeId(".".join(("m1", "SoftwareUpdate", *path)), idx)

        self.addin, self.loading = n(), n("Loading")
        self.transfer, self.installation, self.confirmation = n("Loading", "FileTransfer"), n("Installation"), \
            n("Confirmation")
        self.fallback = n("Loading", "FallbackVersion")
        self.n = n
        self.di = lambda i: ua.NodeId(i, di_idx)
        self.update_firmware = ua.NodeId("EmuSoftwareUpdateType.UpdateFirmware", idx)
        self.clear = ua.NodeId("EmuFallbackVersionType.Clear", idx)

    def revision(self, which: str) -> ua.NodeId:
        return self.n("Loading", which, "SoftwareRevision")


async def addin(client: Client) -> AddIn:
    return AddIn(await client.get_namespace_index("urn:emu-opcua:nodesets:EmuMeter"),
                 await client.get_namespace_index(di.DI_NAMESPACE_URI))


async def read(client: Client, node_id: ua.NodeId):
    return await client.get_node(node_id).read_value()


async def until(client: Client, node_id: ua.NodeId, predicate, timeout: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await read(client, node_id)
        if predicate(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{node_id} stayed {value!r}")
        await asyncio.sleep(0.1)


async def call(client: Client, object_id: ua.NodeId, method_id: ua.NodeId, *args: ua.Variant):
    request = ua.CallMethodRequest(ObjectId=object_id, MethodId=method_id, InputArguments=list(args))
    result = (await client.uaclient.call([request]))[0]
    return result.StatusCode, result.OutputArguments


def state(text) -> str:
    return text.Text


async def test_the_addin_is_typed_by_the_di_nodeset(gateway, client_cert):  # noqa: F811
    client = await connect(gateway, client_cert, user=None)
    try:
        a = await addin(client)
        meter = client.get_node(ua.NodeId("m1", a.addin.NamespaceIndex))
        refs = await meter.get_references(ua.ObjectIds.HasAddIn)
        assert [r.NodeId for r in refs] == [a.addin]
        type_node = client.get_node(await client.get_node(a.addin).read_type_definition())
        assert (await type_node.read_browse_name()).Name == "EmuSoftwareUpdateType"
        base = await type_node.get_references(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
        assert base[0].NodeId == a.di(di.SOFTWARE_UPDATE_TYPE)
        loading_type = await client.get_node(a.loading).read_type_definition()
        assert loading_type == a.di(di.CACHED_LOADING_TYPE)
        names = {(await c.read_browse_name()).Name for c in await client.get_node(a.loading).get_children()}
        assert {"CurrentVersion", "PendingVersion", "FallbackVersion", "FileTransfer", "ErrorMessage",
                "GetUpdateBehavior"} <= names
        assert state(await read(client, a.n("Installation", "CurrentState"))) == "Idle"
        status, out = await call(client, a.loading, a.di(189), ua.Variant(MANUFACTURER_URI), ua.Variant("1.1.0"),
                                 ua.Variant([], _VT.String))
        assert status.is_good() and out[0].Value == di.KEYS_PRESERVED | di.WILL_DISCONNECT | di.WILL_REBOOT
    finally:
        await client.disconnect()


async def test_cached_loading_install_confirm_and_clear(gateway, client_cert, images, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="emu_opcua.firmware.audit")
    gw, fleet, _config, _cert = gateway
    image = images["new"]
    info = inspect_image(image)
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        await until(client, a.revision("CurrentVersion"), lambda v: v == "" or v == "1.0.14")
        status, out = await call(client, a.transfer, ua.NodeId(ua.ObjectIds.TemporaryFileTransferType_GenerateFileForWrite),
                                 ua.Variant(1, _VT.Int32))
        assert status.is_good(), status
        file_id, handle = out[0].Value, out[1].Value
        for offset in range(0, len(image), 16_384):
            status, _ = await call(client, file_id, ua.NodeId(ua.ObjectIds.FileType_Write),
                                   ua.Variant(handle, _VT.UInt32), ua.Variant(image[offset:offset + 16_384], _VT.ByteString))
            assert status.is_good(), status
        status, _ = await call(client, a.transfer, ua.NodeId(ua.ObjectIds.TemporaryFileTransferType_CloseAndCommit),
                               ua.Variant(handle, _VT.UInt32))
        assert status.is_good(), status
        assert await until(client, a.revision("PendingVersion"), lambda v: v == "1.1.0")
        assert await read(client, a.n("Loading", "PendingVersion", "Hash")) == info.hash

        status, _ = await call(client, a.installation, a.di(265), ua.Variant(MANUFACTURER_URI), ua.Variant("1.1.0"),
                               ua.Variant([], _VT.String), ua.Variant(info.hash, _VT.ByteString))
        assert status.is_good(), status
        # the method returns only once the state is Installing (OPC 10000-100 8.4.9.4)
        assert state(await read(client, a.n("Installation", "CurrentState"))) == "Installing"
        data_source = ua.NodeId("m1.Diagnostics.DataSource", a.addin.NamespaceIndex)
        await until(client, data_source, lambda v: v.startswith("paused: firmware update"), timeout=10)
        await until(client, a.n("Confirmation", "CurrentState"), lambda v: state(v) == "WaitingForConfirm")
        assert await read(client, a.n("Confirmation", "ConfirmationTimeout")) == 2000.0
        assert fleet.meters[0].module.slots[0].info.version.minor == 1  # runs in test
        status, _ = await call(client, a.confirmation, a.di(321))
        assert status.is_good(), status
        assert state(await read(client, a.n("Confirmation", "CurrentState"))) == "NotWaitingForConfirm"
        assert await until(client, a.revision("CurrentVersion"), lambda v: v == "1.1.0")
        assert await read(client, a.revision("FallbackVersion")) == "1.0.14"
        assert await read(client, a.revision("PendingVersion")) == ""
        assert fleet.meters[0].module.slots[0].confirmed
        await asyncio.sleep(2.5)  # past the confirmation timeout: a confirmed image stays
        assert fleet.meters[0].module.slots[0].info.version.minor == 1
        assert not (await read(client, data_source)).startswith("paused")

        status, _ = await call(client, a.fallback, a.clear)  # FallbackVersion.Clear: erase slot 1
        assert status.is_good(), status
        await until(client, a.revision("FallbackVersion"), lambda v: v == "")
        assert fleet.meters[0].module.slots[1] is None
    finally:
        await client.disconnect()
    audit = " ".join(r.getMessage() for r in caplog.records if r.name == "emu_opcua.firmware.audit")
    assert "alice" in audit and info.hash_hex in audit and "confirmed by alice" in audit


async def test_not_confirmed_in_time_is_reverted(gateway, client_cert, images):  # noqa: F811
    gw, fleet, _config, _cert = gateway
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        status, _ = await call(client, a.addin, a.update_firmware, ua.Variant(images["new"], _VT.ByteString),
                               ua.Variant(False, _VT.Boolean))
        assert status.is_good(), status
        await until(client, a.n("Confirmation", "CurrentState"), lambda v: state(v) == "WaitingForConfirm")
        assert await until(client, a.revision("CurrentVersion"), lambda v: v == "1.1.0")
        # nobody confirms: after ConfirmationTimeout (2 s) the gateway resets the module
        await until(client, a.n("Confirmation", "CurrentState"), lambda v: state(v) == "NotWaitingForConfirm")
        assert await until(client, a.revision("CurrentVersion"), lambda v: v == "1.0.14")
        message = await until(client, a.n("Loading", "ErrorMessage"), lambda v: "not confirmed" in v.Text)
        assert "1.1.0" in message.Text
        assert fleet.meters[0].module.boot_log[-1].startswith("reverted")
    finally:
        await client.disconnect()


async def test_a_file_that_is_no_image_is_refused(gateway, client_cert):  # noqa: F811
    gw, fleet, _config, _cert = gateway
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        status, _ = await call(client, a.addin, a.update_firmware, ua.Variant(b"PK\x03\x04" + bytes(3000), _VT.ByteString),
                               ua.Variant(True, _VT.Boolean))
        assert status.value == ua.StatusCodes.BadInvalidArgument
        assert "not an MCUboot image" in (await read(client, a.n("Loading", "ErrorMessage"))).Text
        assert fleet.meters[0].smp.requests == 0
    finally:
        await client.disconnect()


async def test_a_wrong_signature_is_rejected_at_boot(gateway, client_cert, images):  # noqa: F811
    gw, fleet, _config, _cert = gateway
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        status, _ = await call(client, a.addin, a.update_firmware, ua.Variant(images["foreign"], _VT.ByteString),
                               ua.Variant(True, _VT.Boolean))
        assert status.is_good(), status
        await until(client, a.n("Installation", "CurrentState"), lambda v: state(v) == "Error")
        message = (await read(client, a.n("Loading", "ErrorMessage"))).Text
        assert "rejected at boot" in message and "1.0.14 keeps running" in message
        assert await until(client, a.revision("CurrentVersion"), lambda v: v == "1.0.14")
        status, _ = await call(client, a.installation, a.di(270))  # Resume: Error -> Idle
        assert status.is_good()
        assert state(await read(client, a.n("Installation", "CurrentState"))) == "Idle"
    finally:
        await client.disconnect()


@pytest.mark.parametrize("mode, user, code", [
    (ENCRYPT, "bob", ua.StatusCodes.BadUserAccessDenied),  # a reader
    (ENCRYPT, "olga", ua.StatusCodes.BadUserAccessDenied),  # an operator
    (ENCRYPT, None, ua.StatusCodes.BadUserAccessDenied),  # anonymous
    (SIGN, "alice", ua.StatusCodes.BadSecurityModeInsufficient),  # an admin, but not encrypted
])
async def test_only_an_admin_over_sign_and_encrypt(gateway, client_cert, images, mode, user, code):  # noqa: F811
    gw, fleet, _config, _cert = gateway
    client = await connect(gateway, client_cert, mode=mode, user=user)
    try:
        a = await addin(client)
        status, _ = await call(client, a.addin, a.update_firmware, ua.Variant(images["new"], _VT.ByteString),
                               ua.Variant(True, _VT.Boolean))
        assert status.value == code
        status, _ = await call(client, a.transfer,
                               ua.NodeId(ua.ObjectIds.TemporaryFileTransferType_GenerateFileForWrite),
                               ua.Variant(1, _VT.Int32))
        assert status.value == code
        executable = await client.get_node(a.update_firmware).read_attribute(ua.AttributeIds.UserExecutable)
        assert executable.Value.Value is False
        assert fleet.meters[0].smp.requests == 0
    finally:
        await client.disconnect()


async def test_a_second_update_of_the_same_meter_is_refused(gateway, client_cert, images):  # noqa: F811
    gw, fleet, _config, _cert = gateway
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        first, _ = await call(client, a.addin, a.update_firmware, ua.Variant(images["new"], _VT.ByteString),
                              ua.Variant(True, _VT.Boolean))
        second, _ = await call(client, a.addin, a.update_firmware, ua.Variant(images["newer"], _VT.ByteString),
                               ua.Variant(True, _VT.Boolean))
        assert first.is_good() and second.value == ua.StatusCodes.BadInvalidState
        assert await until(client, a.revision("CurrentVersion"), lambda v: v == "1.1.0")
        await until(client, a.n("Installation", "CurrentState"), lambda v: state(v) == "Idle")
    finally:
        await client.disconnect()


# --- the rest of the cases, through OPC UA (UpdateFirmware, the whole sequence) ------
async def update_and_wait(client: Client, a: AddIn, image: bytes, *, confirm: bool = True) -> tuple[str, str]:
    """Call UpdateFirmware and wait until the installation settles: (state, UpdateStatus)."""
    status, _ = await call(client, a.addin, a.update_firmware, ua.Variant(image, _VT.ByteString),
                           ua.Variant(confirm, _VT.Boolean))
    assert status.is_good(), status
    await asyncio.sleep(0.2)
    final = await until(client, a.n("UpdateStatus"), lambda v: v.Text.split(":")[0] in
                        ("confirmed", "unchanged", "failed", "awaiting confirmation"), timeout=60)
    return state(await read(client, a.n("Installation", "CurrentState"))), final.Text


async def test_lost_datagrams_and_a_reboot_mid_upload_still_complete(gateway, client_cert, images):  # noqa: F811
    import random

    from emu_opcua.simulator.smp_server import SmpFaults

    gw, fleet, _config, _cert = gateway
    meter = fleet.meters[0]
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        meter.smp.faults = SmpFaults(drop_requests=0.05, drop_replies=0.05, random=random.Random(11),
                                     reboot_after_upload_bytes=len(images["new"]) // 2)
        installation, status = await update_and_wait(client, a, images["new"])
        assert (installation, status.split(":")[0]) == ("Idle", "confirmed")
        assert meter.module.boot_log[0] == "booted 1.0.14"  # the reboot in the middle of the upload
        assert await until(client, a.revision("CurrentVersion"), lambda v: v == "1.1.0")
    finally:
        await client.disconnect()


async def test_both_slots_full_and_the_identical_image(gateway, client_cert, images):  # noqa: F811
    gw, fleet, _config, _cert = gateway
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        assert (await update_and_wait(client, a, images["new"]))[1].startswith("confirmed")
        # slot 1 keeps 1.0.14 (the FallbackVersion): the next update erases it first
        assert await until(client, a.revision("FallbackVersion"), lambda v: v == "1.0.14")
        assert (await update_and_wait(client, a, images["newer"]))[1].startswith("confirmed")
        assert await until(client, a.revision("CurrentVersion"), lambda v: v == "1.2.0")
        boots = len(fleet.meters[0].module.boot_log)
        installation, status = await update_and_wait(client, a, images["newer"])
        assert status.startswith("unchanged") and installation == "Idle"
        assert len(fleet.meters[0].module.boot_log) == boots  # no reset for the running image
    finally:
        await client.disconnect()


async def test_refusals_of_the_meter_leave_it_on_its_image(gateway, client_cert, images):  # noqa: F811
    gw, fleet, _config, _cert = gateway
    meter = fleet.meters[0]
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        meter.online_update_allowed = False
        installation, status = await update_and_wait(client, a, images["new"])
        assert installation == "Error" and "online update is not allowed" in status
        assert "not allowed" in (await read(client, a.n("Loading", "ErrorMessage"))).Text
        assert meter.module.slots[1] is None and meter.module.boot_log == []
        await call(client, a.installation, a.di(270))  # Resume
        meter.online_update_allowed = True
        running = meter.module.slots[0]  # a module too old for online updates
        meter.module.slots[0] = attrs.evolve(running, info=attrs.evolve(running.info, version=ImageVersion(1, 0, 5)))
        installation, status = await update_and_wait(client, a, images["new"])
        assert installation == "Error" and "older than 1.0.6" in status
        assert meter.module.slots[1] is None
    finally:
        await client.disconnect()


async def test_a_meter_that_does_not_come_back_in_time(gateway, client_cert, images):  # noqa: F811
    gw, fleet, _config, _cert = gateway
    meter = fleet.meters[0]
    meter.reboot_time = 18.0  # longer than firmware_reboot_timeout (15 s)
    client = await connect(gateway, client_cert)
    try:
        a = await addin(client)
        installation, status = await update_and_wait(client, a, images["new"])
        assert installation == "Error"
        message = (await read(client, a.n("Loading", "ErrorMessage"))).Text
        assert "did not answer within 15 s" in message and "reverts an unconfirmed image" in message
        # polling resumed (the failure does not leave the meter paused)
        data_source = ua.NodeId("m1.Diagnostics.DataSource", a.addin.NamespaceIndex)
        assert not (await read(client, data_source)).startswith("paused")
    finally:
        await client.disconnect()
