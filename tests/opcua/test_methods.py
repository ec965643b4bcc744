"""The method-call seam (methods.py) with real asyncua sessions on a secured endpoint.

A method registered with a requirement (least role, least channel security mode) is
checked before its handler runs; the handler gets the caller's MethodContext; the
session's UserExecutable follows the same requirement.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from asyncua import Client, ua
from asyncua.crypto import security_policies

from emu_opcua.opcua.methods import MethodContext, MethodRegistry, MethodRequirement
from tests.opcua.test_security import CLIENT_URI, client_cert, hashes, make_config, start  # noqa: F401 (fixtures)

SIGN = ua.MessageSecurityMode.Sign
ENCRYPT = ua.MessageSecurityMode.SignAndEncrypt
BASIC256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"


# --- pure -------------------------------------------------------------------------------------
def context(role: str, mode: ua.MessageSecurityMode, user: str | None = "u") -> MethodContext:
    return MethodContext(session_id=ua.NodeId(1), user=user, role=role, security_policy_uri=BASIC256SHA256,
                         security_mode=mode)


def test_requirement_checks_security_mode_then_role():
    firmware = MethodRequirement(min_role="admin", min_security_mode=ENCRYPT)
    assert firmware.refusal(context("admin", ENCRYPT)) is None
    assert firmware.refusal(context("admin", SIGN)) == ua.StatusCodes.BadSecurityModeInsufficient
    assert firmware.refusal(context("operator", ENCRYPT)) == ua.StatusCodes.BadUserAccessDenied
    assert firmware.refusal(context("reader", ua.MessageSecurityMode.None_, None)) \
        == ua.StatusCodes.BadSecurityModeInsufficient
    default = MethodRequirement()
    assert default.refusal(context("operator", ua.MessageSecurityMode.None_)) is None
    assert default.refusal(context("reader", ENCRYPT)) == ua.StatusCodes.BadUserAccessDenied


def test_handlers_must_be_coroutine_functions():
    registry = MethodRegistry()

    def blocking(ctx, object_id, arguments):
        return []

    with pytest.raises(TypeError, match="coroutine"):
        registry.register(ua.NodeId("m", 1), blocking)

    async def handler(ctx, object_id, arguments):
        return []

    registry.register(ua.NodeId("m", 1), handler)
    with pytest.raises(ValueError, match="already"):
        registry.register(ua.NodeId("m", 1), handler)


# --- over a secured channel -------------------------------------------------------------------
@pytest.fixture
async def secured(tmp_path, hashes, client_cert):  # noqa: F811
    config = make_config(tmp_path, hashes, anonymous=True,
                         policies=["Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"])
    methods = MethodRegistry()
    server, model, paths = await start(config, methods)
    shutil.copy(client_cert[0], paths.trusted / "test-client.der")
    try:
        yield config, server, methods, paths
    finally:
        await server.stop()


async def connect(config, paths, client_cert, mode, user: str | None = None) -> Client:  # noqa: F811
    """A connected client over Basic256Sha256 in ``mode``, as ``user`` (password "<user>-pw") or anonymous."""
    client = Client(config.endpoint, timeout=10)
    client.application_uri = CLIENT_URI
    await client.set_security(security_policies.SecurityPolicyBasic256Sha256, certificate=str(client_cert[0]),
                              private_key=str(client_cert[1]), server_certificate=str(paths.cert), mode=mode)
    if user is not None:
        client.set_user(user)
        client.set_password(f"{user}-pw")
    await client.connect()
    return client


async def add_method(server, methods: MethodRegistry, name: str, requirement: MethodRequirement, handler):
    def never_called(parent, *args):  # asyncua's own callback: our registry decides
        raise AssertionError("asyncua's method callback must not run")

    node = await server.nodes.objects.add_method(ua.NodeId(f"test.{name}", 1), name, never_called,
                                                 [ua.VariantType.String], [ua.VariantType.String])
    methods.register(node.nodeid, handler, requirement)
    return node.nodeid


# users from make_config: alice admin, bob reader, olga operator
async def test_admin_only_over_sign_and_encrypt(secured, client_cert):  # noqa: F811
    config, server, methods, paths = secured
    seen: list[MethodContext] = []

    async def flash(ctx: MethodContext, object_id: ua.NodeId, arguments):
        seen.append(ctx)
        return [ua.Variant(f"{arguments[0].Value} by {ctx.user}", ua.VariantType.String)]

    method = await add_method(server, methods, "Flash", MethodRequirement("admin", ENCRYPT), flash)
    objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    argument = ua.Variant("image.bin", ua.VariantType.String)
    expected = {
        (ENCRYPT, "alice"): (ua.StatusCodes.Good, True),
        (SIGN, "alice"): (ua.StatusCodes.BadSecurityModeInsufficient, False),
        (ENCRYPT, "olga"): (ua.StatusCodes.BadUserAccessDenied, False),
        (ENCRYPT, "bob"): (ua.StatusCodes.BadUserAccessDenied, False),
        (ENCRYPT, None): (ua.StatusCodes.BadUserAccessDenied, False),
        (SIGN, None): (ua.StatusCodes.BadSecurityModeInsufficient, False),
    }
    got = {}
    for (mode, user) in expected:
        client = await connect(config, paths, client_cert, mode, user)
        try:
            [result] = await client.uaclient.call([ua.CallMethodRequest(ObjectId=objects, MethodId=method,
                                                                        InputArguments=[argument])])
            executable = await client.get_node(method).read_attribute(ua.AttributeIds.UserExecutable)
            got[(mode, user)] = (result.StatusCode.value, executable.Value.Value)
            if result.StatusCode.is_good():
                assert result.OutputArguments == [ua.Variant("image.bin by alice", ua.VariantType.String)]
        finally:
            await client.disconnect()
    assert got == expected
    [ctx] = seen  # the handler ran once, for the admin over SignAndEncrypt
    assert (ctx.user, ctx.role, ctx.security_mode, ctx.security_policy_uri) == ("alice", "admin", ENCRYPT,
                                                                                BASIC256SHA256)


async def test_operator_method_and_a_handler_that_waits_does_not_stall_the_server(secured, client_cert):  # noqa: F811
    config, server, methods, paths = secured
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(ctx: MethodContext, object_id: ua.NodeId, arguments):
        started.set()
        await release.wait()
        return [ua.Variant(ctx.role, ua.VariantType.String)]

    method = await add_method(server, methods, "Slow", MethodRequirement("operator", SIGN), slow)
    operator = await connect(config, paths, client_cert, SIGN, "olga")
    reader = await connect(config, paths, client_cert, SIGN, "bob")
    try:
        call = asyncio.create_task(operator.get_node(ua.ObjectIds.ObjectsFolder).call_method(
            method, ua.Variant("x", ua.VariantType.String)))
        await asyncio.wait_for(started.wait(), 10)
        # while the handler waits, other sessions are served
        assert await reader.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value() == 0
        with pytest.raises(ua.UaStatusCodeError) as info:
            await reader.get_node(ua.ObjectIds.ObjectsFolder).call_method(method, ua.Variant("x", ua.VariantType.String))
        assert info.value.code == ua.StatusCodes.BadUserAccessDenied
        assert not call.done()
        release.set()
        assert await asyncio.wait_for(call, 10) == "operator"
    finally:
        await operator.disconnect()
        await reader.disconnect()
