"""The channel guard against a real asyncua client over TCP: sessions only on configured
policies and modes, client certificates checked when the channel opens, encrypted
passwords where the token policy says so, and the session / subscription / monitored
item limits. Last, the pins on the asyncua internals the guard builds on."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path

import pytest
from asyncua import Client, Server, ua
from asyncua.crypto import security_policies
from asyncua.server.binary_server_asyncio import OPCUAProtocol
from asyncua.server.uaprocessor import UaProcessor
from cryptography.hazmat.primitives import serialization

from emu_opcua.opcua.config import ServerConfig, UserConfig
from emu_opcua.opcua.security import NONE_POLICY_URI, generate_certificate, hash_password
from emu_opcua.opcua.serve import GatewayServer
from tests.opcua.test_interop import free_port

CLIENT_URI = "urn:emu-opcua:test-client"


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("client")
    cert, key = generate_certificate(CLIENT_URI, ["localhost"], "guard test client", client=True)
    (d / "cert.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "cert.der", d / "key.pem"


@pytest.fixture(scope="module")
def reader() -> UserConfig:
    return UserConfig(name="bob", password_hash=hash_password("bob-pw"), role="reader")


def config_for(tmp_path: Path, policies: tuple[str, ...], *, anonymous: bool = True, users=(),
               **limits) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki",
                        application_uri="urn:test:emu-opcua", hostnames=("localhost", "127.0.0.1"),
                        security_policies=policies, allow_anonymous=anonymous, users=tuple(users),
                        shutdown_grace=0, **limits)


async def open_channel(client: Client) -> None:
    """Hello and OpenSecureChannel, no session yet (what Client.connect does first)."""
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()


def pki(gateway: GatewayServer) -> Path:
    return gateway.config.pki_dir


async def secured_client(gateway: GatewayServer, client_cert, mode=ua.MessageSecurityMode.SignAndEncrypt,
                         policy=security_policies.SecurityPolicyBasic256Sha256) -> Client:
    client = Client(gateway.config.endpoint, timeout=10)
    client.application_uri = CLIENT_URI
    await client.set_security(policy, certificate=str(client_cert[0]), private_key=str(client_cert[1]),
                              server_certificate=str(pki(gateway) / "own" / "cert.der"), mode=mode)
    return client


def send_clear_text_password(client: Client) -> None:
    """Make asyncua's client ignore the token policy's SecurityPolicyUri (a careless client)."""
    original = client.server_policy

    def server_policy(token_type):
        return dataclasses.replace(original(token_type), SecurityPolicyUri=NONE_POLICY_URI)

    client.server_policy = server_policy


# --- which channels may hold a session ---------------------------------------------------
async def test_none_channel_gets_endpoints_but_no_session(tmp_path, reader):
    config = config_for(tmp_path, ("Basic256Sha256_SignAndEncrypt",), anonymous=True, users=[reader])
    async with GatewayServer(config):
        client = Client(config.endpoint, timeout=10)
        await open_channel(client)
        try:
            endpoints = await client.get_endpoints()  # discovery stays open (OPC 10000-4 5.4)
            assert {e.SecurityMode for e in endpoints} == {ua.MessageSecurityMode.SignAndEncrypt}
            with pytest.raises(ua.UaStatusCodeError) as info:
                await client.create_session()
            assert info.value.code == ua.StatusCodes.BadSecurityPolicyRejected
            with pytest.raises(ua.UaStatusCodeError) as info:  # nor anything else
                await client.uaclient.read(ua.ReadParameters(NodesToRead=[ua.ReadValueId(
                    NodeId=ua.NodeId(ua.ObjectIds.Server_ServerStatus_State), AttributeId=ua.AttributeIds.Value)]))
            assert info.value.code in (ua.StatusCodes.BadSecurityPolicyRejected, ua.StatusCodes.BadUserAccessDenied)
        finally:
            await client.close_secure_channel()
            client.disconnect_socket()


async def test_a_secured_session_cannot_be_taken_over_from_a_none_channel(tmp_path, client_cert):
    # OPC 10000-4 6.7: a session may be re-activated on a new channel; not on an unconfigured one
    config = config_for(tmp_path, ("Basic256Sha256_SignAndEncrypt",), trust_all_clients=True)
    async with GatewayServer(config) as gateway:
        owner = await secured_client(gateway, client_cert)
        async with owner:
            intruder = Client(config.endpoint, timeout=10)
            await open_channel(intruder)
            try:
                intruder.uaclient.protocol.authentication_token = owner.uaclient.protocol.authentication_token
                with pytest.raises(ua.UaStatusCodeError) as info:
                    await intruder.uaclient.activate_session(ua.ActivateSessionParameters(
                        UserIdentityToken=ua.AnonymousIdentityToken(PolicyId="anonymous")))
                assert info.value.code == ua.StatusCodes.BadSecurityPolicyRejected
            finally:
                await intruder.close_secure_channel()
                intruder.disconnect_socket()
            assert await owner.nodes.server_state.read_value() == ua.ServerState.Running


async def test_sign_channel_refused_where_only_sign_and_encrypt_is_configured(tmp_path, client_cert):
    config = config_for(tmp_path, ("Basic256Sha256_SignAndEncrypt",), trust_all_clients=True)
    async with GatewayServer(config) as gateway:
        client = await secured_client(gateway, client_cert, mode=ua.MessageSecurityMode.Sign)
        with pytest.raises(ua.UaStatusCodeError) as info:
            await client.connect()
        assert info.value.code in (ua.StatusCodes.BadSecurityModeRejected, ua.StatusCodes.BadSecurityPolicyRejected)
        await client.disconnect()
        client = await secured_client(gateway, client_cert)  # the configured mode works
        async with client:
            assert await client.nodes.server_state.read_value() == ua.ServerState.Running


# --- passwords ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["None", "Sign"])
async def test_clear_text_password_refused_where_the_token_policy_demands_encryption(
        tmp_path, reader, client_cert, mode):
    config = config_for(tmp_path, ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"),
                        anonymous=False, users=[reader], trust_all_clients=True)
    async with GatewayServer(config) as gateway:
        for clear_text in (False, True):
            if mode == "None":
                client = Client(config.endpoint, timeout=10)
            else:
                client = await secured_client(gateway, client_cert, mode=ua.MessageSecurityMode.Sign)
            client.set_user("bob")
            client.set_password("bob-pw")
            if clear_text:
                send_clear_text_password(client)
                with pytest.raises(ua.UaStatusCodeError) as info:
                    await client.connect()
                assert info.value.code == ua.StatusCodes.BadIdentityTokenInvalid
                await client.disconnect()
            else:  # the encrypted password, as the policy says: accepted
                async with client:
                    assert await client.nodes.server_state.read_value() == ua.ServerState.Running


# --- client certificates -----------------------------------------------------------------
async def test_untrusted_certificate_is_refused_when_the_channel_opens(tmp_path, client_cert):
    config = config_for(tmp_path, ("Basic256Sha256_SignAndEncrypt",))
    async with GatewayServer(config) as gateway:
        client = await secured_client(gateway, client_cert)
        with pytest.raises(ua.UaStatusCodeError) as info:
            await open_channel(client)  # no CreateSession yet
        assert info.value.code == ua.StatusCodes.BadCertificateUntrusted
        client.disconnect_socket()
        [rejected] = list((pki(gateway) / "rejected").iterdir())
        assert rejected.read_bytes() == client_cert[0].read_bytes()
        rejected.rename(pki(gateway) / "trusted" / rejected.name)  # what an administrator does
        client = await secured_client(gateway, client_cert)
        async with client:
            assert await client.nodes.server_state.read_value() == ua.ServerState.Running


# --- limits ------------------------------------------------------------------------------
async def test_max_sessions(tmp_path):
    config = config_for(tmp_path, ("None",), max_sessions=2)
    async with GatewayServer(config):
        async with Client(config.endpoint, timeout=10), Client(config.endpoint, timeout=10):
            third = Client(config.endpoint, timeout=10)
            with pytest.raises(ua.UaStatusCodeError) as info:
                await third.connect()
            assert info.value.code == ua.StatusCodes.BadTooManySessions
            await third.disconnect()
        async with Client(config.endpoint, timeout=10) as client:  # the two closed: room again
            assert await client.nodes.server_state.read_value() == ua.ServerState.Running


async def test_new_session_on_a_channel_replaces_the_previous_one(tmp_path):
    config = config_for(tmp_path, ("None",), max_sessions=1)
    async with GatewayServer(config) as gateway:
        client = Client(config.endpoint, timeout=10)
        await open_channel(client)
        try:
            for _ in range(5):  # asyncua alone kept all five (and 150, and more)
                await client.create_session()  # each replaces the last, even at max_sessions
            assert gateway.server.guard.live_sessions() == 1
            await client.activate_session()
            assert await client.nodes.server_state.read_value() == ua.ServerState.Running
            await client.close_session()
        finally:
            await client.close_secure_channel()
            client.disconnect_socket()


async def test_max_subscriptions_and_monitored_items(tmp_path):
    config = config_for(tmp_path, ("None",), max_subscriptions=1, max_monitored_items=3)
    async with GatewayServer(config):
        async with Client(config.endpoint, timeout=10) as client:
            sub = await client.create_subscription(100, None)
            nodes = [client.get_node(ua.NodeId(i)) for i in (
                ua.ObjectIds.Server_ServerStatus_State, ua.ObjectIds.Server_ServerStatus_StartTime,
                ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName)]
            first = await sub.subscribe_data_change(nodes[:2])
            assert all(isinstance(h, int) for h in first)
            # one more fits, the second of this call does not: refused alone (operation level)
            more = await sub.subscribe_data_change(
                [nodes[2], client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime))])
            assert isinstance(more[0], int)
            assert isinstance(more[1], ua.StatusCode) and more[1].value == ua.StatusCodes.BadTooManyMonitoredItems
            with pytest.raises(ua.UaStatusCodeError) as info:
                await sub.subscribe_data_change(client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime)))
            assert info.value.code == ua.StatusCodes.BadTooManyMonitoredItems
            await sub.unsubscribe(first[0])  # room for one again
            assert isinstance(await sub.subscribe_data_change(
                client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime))), int)
            with pytest.raises(ua.UaStatusCodeError) as info:
                await client.create_subscription(100, None)
            assert info.value.code == ua.StatusCodes.BadTooManySubscriptions


# --- pins on asyncua ---------------------------------------------------------------------
#: sha256 of asyncua 2.1's Server.start, which GuardedServer.start repeats with its own
#: binary server; when asyncua changes it, compare and update both.
SERVER_START_SHA256 = "0e7d0b97d12c9075cbbca20bf115f77b371aab02997bc61bb302b607755b6579"


def test_asyncua_internals_the_guard_builds_on():
    import asyncua

    assert asyncua.__version__.startswith("2.1."), asyncua.__version__
    source = inspect.getsource(Server.start)
    assert "BinaryServer(self.iserver, ipaddress, port, self.limits)" in source
    assert "self.bserver.set_policies(self._policies)" in source
    assert "await self._setup_server_nodes()" in source
    # the processor: where asyncua opens the channel and dispatches requests
    assert list(inspect.signature(UaProcessor.open_secure_channel).parameters) == ["self", "algohdr", "seqhdr", "body"]
    assert list(inspect.signature(UaProcessor._process_message).parameters) == [
        "self", "typeid", "requesthdr", "seqhdr", "body"]
    assert "self.open_secure_channel(" in inspect.getsource(UaProcessor.process)
    # OPCUAProtocol makes a plain processor in connection_made; its loop looks it up per message
    assert "self.processor = UaProcessor(" in inspect.getsource(OPCUAProtocol.connection_made)
    assert "self.processor.process(" in inspect.getsource(OPCUAProtocol._process_one_msg)
    # sessions are counted in asyncua's registry of external sessions
    assert "self._external_sessions[session.auth_token] = session" in inspect.getsource(
        asyncua.server.internal_server.InternalServer.register_external_session)
    # asyncua's own cap on activated sessions, which config.py's max_sessions range respects
    from asyncua.server.internal_session import InternalSession

    assert InternalSession.max_connections == 1000
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == SERVER_START_SHA256, digest
