"""What the server says about itself: identity, capabilities and limits, diagnostics,
and the announcement of a shutdown (namespace 0's ``Server`` object, OPC 10000-5 6.3).

asyncua fills ``Server`` with its own name ("FreeOpcUa Python Server 1.0pre",
ApplicationType ClientAndServer) and leaves ServerCapabilities and ServerDiagnostics
empty. Here every value is what this server enforces or counts:

- the limits of :class:`~emu_opcua.opcua.config.ServerConfig` (``max_sessions`` ...) are
  applied (:func:`apply_limits`) and published under ServerCapabilities;
- ServerDiagnosticsSummary is refreshed once a second from the counters of the
  :class:`~emu_opcua.opcua.channel_guard.SessionGuard` (never per value written);
- :func:`announce_shutdown` counts SecondsTillShutdown down in ServerStatus.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from asyncua import Server, ua

import emu_opcua

if TYPE_CHECKING:
    from emu_opcua.opcua.channel_guard import SessionGuard
    from emu_opcua.opcua.config import ServerConfig

log = logging.getLogger(__name__)

PRODUCT_URI = "urn:emu-opcua"
PRODUCT_NAME = "emu-opcua"
MANUFACTURER = "emu-opcua project"
DIAGNOSTICS_INTERVAL = 1.0  # s between ServerDiagnosticsSummary refreshes

_CAPS = "Server_ServerCapabilities_"


def _node(server: Server, name: str):
    return server.get_node(ua.NodeId(getattr(ua.ObjectIds, name)))


def prepare_identity(server: Server) -> None:
    """Before ``server.start()``: what the endpoints' ApplicationDescription carries."""
    server.product_uri = PRODUCT_URI
    server.manufacturer_name = MANUFACTURER
    server.application_type = ua.ApplicationType.Server


def apply_limits(server: Server, guard: SessionGuard, config: ServerConfig) -> None:
    """Make the configured limits the enforced ones (asyncua's own and the guard's)."""
    server.iserver.max_subscriptions = config.max_subscriptions
    guard.max_sessions = config.max_sessions
    guard.max_monitored_items = config.max_monitored_items


async def publish_identity(server: Server, config: ServerConfig, locales: Iterable[str]) -> None:
    """After ``server.init()``: BuildInfo, LocaleIdArray and ServerCapabilities."""
    package = Path(emu_opcua.__file__)
    build_date = datetime.datetime.fromtimestamp(package.stat().st_mtime, datetime.timezone.utc)
    await server.set_build_info(PRODUCT_URI, MANUFACTURER, PRODUCT_NAME, emu_opcua.__version__,
                                emu_opcua.__version__, build_date)
    default = "en"
    ordered = [default] + sorted(set(locales) - {default})
    values: list[tuple[str, ua.Variant]] = [
        ("LocaleIdArray", ua.Variant(ordered, ua.VariantType.String)),
        ("MaxSessions", ua.Variant(config.max_sessions, ua.VariantType.UInt32)),
        ("MaxSubscriptions", ua.Variant(config.max_subscriptions, ua.VariantType.UInt32)),
        ("MaxMonitoredItems", ua.Variant(config.max_monitored_items, ua.VariantType.UInt32)),
        # 0: no limit of its own (the server-wide ones above apply)
        ("MaxSubscriptionsPerSession", ua.Variant(0, ua.VariantType.UInt32)),
        ("MaxMonitoredItemsPerSubscription", ua.Variant(0, ua.VariantType.UInt32)),
        ("MaxBrowseContinuationPoints", ua.Variant(config.max_browse_continuation_points, ua.VariantType.UInt16)),
        ("MaxHistoryContinuationPoints", ua.Variant(config.max_history_continuation_points, ua.VariantType.UInt16)),
        ("MaxQueryContinuationPoints", ua.Variant(0, ua.VariantType.UInt16)),  # no Query service
    ]
    for name, variant in values:
        await _node(server, _CAPS + name).write_value(ua.DataValue(variant))
    await _node(server, "Server_ServerDiagnostics_EnabledFlag").write_value(
        ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))


# --- diagnostics ------------------------------------------------------------------------
def diagnostics_summary(server: Server, guard: SessionGuard) -> ua.ServerDiagnosticsSummaryDataType:
    c = guard.counters
    subscriptions = server.iserver.subscription_service.subscriptions.values()
    return ua.ServerDiagnosticsSummaryDataType(
        ServerViewCount=0,
        CurrentSessionCount=guard.live_sessions(),
        CumulatedSessionCount=c.cumulated_sessions,
        SecurityRejectedSessionCount=c.security_rejected_sessions,
        RejectedSessionCount=c.rejected_sessions + c.security_rejected_sessions,
        SessionTimeoutCount=c.session_timeouts,
        SessionAbortCount=c.session_aborts,
        CurrentSubscriptionCount=len(subscriptions),
        CumulatedSubscriptionCount=c.cumulated_subscriptions,
        PublishingIntervalCount=len({s.data.RevisedPublishingInterval for s in subscriptions}),
        SecurityRejectedRequestsCount=c.security_rejected_requests,
        RejectedRequestsCount=c.rejected_requests + c.security_rejected_requests,
    )


_SUMMARY_FIELDS = ("ServerViewCount", "CurrentSessionCount", "CumulatedSessionCount",
                   "SecurityRejectedSessionCount", "RejectedSessionCount", "SessionTimeoutCount",
                   "SessionAbortCount", "CurrentSubscriptionCount", "CumulatedSubscriptionCount",
                   "PublishingIntervalCount", "SecurityRejectedRequestsCount", "RejectedRequestsCount")


async def write_diagnostics(server: Server, summary: ua.ServerDiagnosticsSummaryDataType) -> None:
    """The summary and each of its component variables (clients read either)."""
    base = "Server_ServerDiagnostics_ServerDiagnosticsSummary"
    await server.write_attribute_value(
        ua.NodeId(getattr(ua.ObjectIds, base)),
        ua.DataValue(ua.Variant(summary, ua.VariantType.ExtensionObject)))
    for name in _SUMMARY_FIELDS:
        await server.write_attribute_value(
            ua.NodeId(getattr(ua.ObjectIds, f"{base}_{name}")),
            ua.DataValue(ua.Variant(getattr(summary, name), ua.VariantType.UInt32)))


async def run_diagnostics(server: Server, guard: SessionGuard, interval: float = DIAGNOSTICS_INTERVAL) -> None:
    """Refresh ServerDiagnosticsSummary whenever it changed, checked every ``interval``."""
    last = None
    while True:
        summary = diagnostics_summary(server, guard)
        if summary != last:
            await write_diagnostics(server, summary)
            last = summary
        await asyncio.sleep(interval)


# --- shutdown ---------------------------------------------------------------------------
async def _write_status(server: Server, state: ua.ServerState, seconds: int, reason: str) -> None:
    status_node = _node(server, "Server_ServerStatus")
    status = await status_node.read_value()
    status.State = state
    status.SecondsTillShutdown = seconds
    status.ShutdownReason = ua.LocalizedText(reason, "en")
    status.CurrentTime = datetime.datetime.now(datetime.timezone.utc)
    await status_node.write_value(status)
    await _node(server, "Server_ServerStatus_State").write_value(state, ua.VariantType.Int32)
    await _node(server, "Server_ServerStatus_SecondsTillShutdown").write_value(seconds, ua.VariantType.UInt32)
    await _node(server, "Server_ServerStatus_ShutdownReason").write_value(ua.LocalizedText(reason, "en"))


async def announce_shutdown(server: Server, grace: float, reason: str,
                            cut_short: asyncio.Event | None = None) -> None:
    """ServerStatus State Shutdown with SecondsTillShutdown counting down for ``grace``
    seconds (OPC 10000-5 12.6), so clients can say why and reconnect elsewhere; returns
    early when ``cut_short`` is set (a second Ctrl-C)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    log.info("shutting down in %g s: %s", grace, reason)
    while True:
        remaining = deadline - loop.time()
        await _write_status(server, ua.ServerState.Shutdown, max(0, int(remaining + 0.999)), reason)
        if remaining <= 0 or (cut_short is not None and cut_short.is_set()):
            return
        step = min(1.0, remaining)
        if cut_short is None:
            await asyncio.sleep(step)
        else:
            try:
                await asyncio.wait_for(cut_short.wait(), step)
            except TimeoutError:
                pass
