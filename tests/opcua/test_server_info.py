"""What the server says about itself, read by a real asyncua client: BuildInfo and
ApplicationType, LocaleIdArray, the ServerCapabilities limits (the configured, enforced
ones), ServerDiagnostics, and the shutdown announcement in ServerStatus."""

from __future__ import annotations

import asyncio

from asyncua import Client, ua

import emu_opcua
from emu_opcua.opcua import server_info
from emu_opcua.opcua.serve import GatewayServer
from tests.opcua.test_channel_guard import config_for

CAPS = "Server_ServerCapabilities_"


def node(client: Client, name: str):
    return client.get_node(ua.NodeId(getattr(ua.ObjectIds, name)))


async def test_identity_capabilities_and_locales(tmp_path):
    config = config_for(tmp_path, ("None",), max_sessions=7, max_subscriptions=11, max_monitored_items=1234,
                        max_browse_continuation_points=4, max_history_continuation_points=6)
    async with GatewayServer(config):
        async with Client(config.endpoint, timeout=10) as client:
            build = await node(client, "Server_ServerStatus_BuildInfo").read_value()
            assert (build.ProductName, build.ManufacturerName, build.SoftwareVersion, build.ProductUri) == (
                "emu-opcua", server_info.MANUFACTURER, emu_opcua.__version__, server_info.PRODUCT_URI)
            assert await node(client, "Server_ServerStatus_BuildInfo_ProductName").read_value() == "emu-opcua"
            endpoints = await client.get_endpoints()
            assert {e.Server.ApplicationType for e in endpoints} == {ua.ApplicationType.Server}
            assert {e.Server.ProductUri for e in endpoints} == {server_info.PRODUCT_URI}
            assert await node(client, CAPS + "LocaleIdArray").read_value() == ["en", "de"]
            caps = {name: await node(client, CAPS + name).read_value() for name in (
                "MaxSessions", "MaxSubscriptions", "MaxMonitoredItems", "MaxBrowseContinuationPoints",
                "MaxHistoryContinuationPoints", "MaxQueryContinuationPoints")}
            assert caps == {"MaxSessions": 7, "MaxSubscriptions": 11, "MaxMonitoredItems": 1234,
                            "MaxBrowseContinuationPoints": 4, "MaxHistoryContinuationPoints": 6,
                            "MaxQueryContinuationPoints": 0}


async def test_server_diagnostics_count_sessions_and_refusals(tmp_path):
    config = config_for(tmp_path, ("None",), max_sessions=2)
    async with GatewayServer(config):
        async with Client(config.endpoint, timeout=10) as client:
            assert await node(client, "Server_ServerDiagnostics_EnabledFlag").read_value() is True
            async with Client(config.endpoint, timeout=10) as second:
                await second.create_subscription(250, None)
                refused = Client(config.endpoint, timeout=10)
                try:
                    await refused.connect()
                except ua.UaStatusCodeError:
                    pass
                await refused.disconnect()
                deadline = asyncio.get_running_loop().time() + 5
                while True:
                    summary = await node(client, "Server_ServerDiagnostics_ServerDiagnosticsSummary").read_value()
                    if summary is not None and summary.RejectedSessionCount == 1 or \
                            asyncio.get_running_loop().time() > deadline:
                        break
                    await asyncio.sleep(0.2)
                assert summary.CurrentSessionCount == 2
                assert summary.CumulatedSessionCount == 2
                assert summary.RejectedSessionCount == 1
                assert summary.CurrentSubscriptionCount == 1
                assert summary.CumulatedSubscriptionCount == 1
                assert summary.PublishingIntervalCount == 1
                count = node(client, "Server_ServerDiagnostics_ServerDiagnosticsSummary_CurrentSessionCount")
                assert await count.read_value() == 2


async def test_session_timeouts_and_aborts_are_counted(tmp_path):
    config = config_for(tmp_path, ("None",))
    async with GatewayServer(config) as gateway:
        idle = Client(config.endpoint, timeout=10)
        idle.session_timeout = 1000  # asyncua revises it to its minimum, 5 s
        await idle.connect_socket()
        await idle.send_hello()
        await idle.open_secure_channel()
        await idle.create_session()
        await idle.activate_session()
        gone = Client(config.endpoint, timeout=10)
        await gone.connect()
        gone.disconnect_socket()  # no CloseSession
        counters = gateway.server.guard.counters
        deadline = asyncio.get_running_loop().time() + 15
        while (counters.session_timeouts, counters.session_aborts) != (1, 1) and \
                asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
        idle.disconnect_socket()
        await asyncio.sleep(1.5)  # one diagnostics refresh
        async with Client(config.endpoint, timeout=10) as client:
            summary = await node(client, "Server_ServerDiagnostics_ServerDiagnosticsSummary").read_value()
        assert (summary.SessionTimeoutCount, summary.SessionAbortCount) == (1, 1)


async def test_shutdown_is_announced_in_server_status(tmp_path):
    config = config_for(tmp_path, ("None",))
    async with GatewayServer(config) as gateway:
        async with Client(config.endpoint, timeout=10) as client:
            announcing = asyncio.create_task(server_info.announce_shutdown(gateway.server, 3, "maintenance"))
            await asyncio.sleep(0.3)
            status = await node(client, "Server_ServerStatus").read_value()
            assert status.State == ua.ServerState.Shutdown
            assert 1 <= status.SecondsTillShutdown <= 3
            assert status.ShutdownReason.Text == "maintenance"
            assert await node(client, "Server_ServerStatus_State").read_value() == ua.ServerState.Shutdown
            assert await node(client, "Server_ServerStatus_SecondsTillShutdown").read_value() == \
                status.SecondsTillShutdown
            await announcing
            assert await node(client, "Server_ServerStatus_SecondsTillShutdown").read_value() == 0
