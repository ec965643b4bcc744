"""Writes what a meter's poller learns into that meter's nodes: the ``MeterSink``.

Values are written with ``server.write_attribute_value`` (the fast path, no per-node
service call) and only when value or status changed, so a thousand meters polled every
second cost the server little when values stand still, and subscribed clients get a
notification exactly when something changed.

Quality (OPC 10000-4 7.7, and what SCADA users expect): a failed poll rewrites the last
value with UncertainLastUsableValue and its original SourceTimestamp; once the source is
stale the status turns Bad (asyncua then nulls the value, as the spec demands for Bad).
Everything the meter supplies degrades so: measurements, extremes, identification,
configuration, MeterTime, PowerFailCount, CrossCheckOk (its quality comes with the
diagnostics).

``refresh_timestamps``: values written only on change keep the SourceTimestamp of their
last change; with the option on (as Kepware offers), every good poll gives the unchanged
values of that poll its time too, written in one batch (``batchwrite``). Off, it costs
one attribute test per poll.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from asyncua import Server, ua

from emu_opcua.gateway.health import ConnectionState
from emu_opcua.gateway.poller import Diagnostics
from emu_opcua.history.syncer import SyncDiagnostics
from emu_opcua.meter.catalogue import BY_CODE
from emu_opcua.meter.meterdata import Extremes
from emu_opcua.meter.status import MeterStatus
from emu_opcua.opcua import nodeset as ns
from emu_opcua.opcua.batchwrite import value_attribute, write_values
from emu_opcua.opcua.model import MeterNodes

_VT = ua.VariantType

#: DI DeviceHealthEnumeration value for each connection state.
_HEALTH = {
    ConnectionState.CONNECTING: 0,  # NORMAL: nothing known to be wrong yet
    ConnectionState.CONNECTED: 0,  # NORMAL
    ConnectionState.DEGRADED: 3,  # OFF_SPEC: values are last usable, not current
    ConnectionState.DISCONNECTED: 1,  # FAILURE: no communication
}
_MAINTENANCE_REQUIRED = 4  # the register map disagrees with the meter


_STATUS: dict[str, ua.StatusCode] = {}


def _status(name: str) -> ua.StatusCode:
    code = _STATUS.get(name)
    if code is None:
        code = _STATUS[name] = ua.StatusCode(getattr(ua.StatusCodes, name))
    return code


_MANUFACTURER = ua.LocalizedText(ns.MANUFACTURER, "en")
_MODEL = ua.LocalizedText(ns.MODEL_NAME, "en")

#: the Variant type each quantity is served as
_QUANTITY_VT = {code: _VT.Double if q.is_measurement else _VT.UInt32 for code, q in BY_CODE.items()}


class _Slot:
    """What was last written to one node, to write only on change and to fall back on."""

    __slots__ = ("value", "variant", "source_time", "status", "attribute")

    def __init__(self) -> None:
        self.value: object = None  # the plain Python value, compared before any Variant is built
        self.variant: ua.Variant | None = None
        self.source_time: datetime | None = None
        self.status: str = "BadWaitingForInitialData"
        self.attribute = None  # the node's Value attribute, once timestamps are refreshed


class MeterPublisher:
    """The OPC UA side of one meter: implements ``emu_opcua.gateway.poller.MeterSink``."""

    def __init__(self, server: Server, nodes: MeterNodes, *, refresh_timestamps: bool = False,
                 on_connection: Callable[[str, bool, str], Awaitable[None]] | None = None) -> None:
        self._server = server
        self._nodes = nodes
        self._refresh = refresh_timestamps
        #: ``await on_connection(meter, lost, error)`` when the meter is lost (Disconnected)
        #: or regained (Connected after being lost): the gateway's events
        self._on_connection = on_connection
        self._lost = False
        self._slots: dict[ua.NodeId, _Slot] = {}
        self._extreme_ids = tuple(nodes.extremes.values())
        # what status.json supplies (Manufacturer and Model are ours, they stay Good)
        self._status_ids = tuple(
            [node_id for browse, node_id in nodes.identification.items()
             if browse not in ("Manufacturer", "Model", "DeviceHealth")]
            + list(nodes.configuration.values())
            + [nodes.diagnostics[b] for b in ("MeterTime",) if b in nodes.diagnostics])
        self.writes = 0  # written DataValues, for benchmarks

    # --- writing ----------------------------------------------------------------------
    def _slot(self, node_id: ua.NodeId) -> _Slot:
        slot = self._slots.get(node_id)
        if slot is None:
            slot = self._slots[node_id] = _Slot()
        return slot

    async def _write(self, node_id: ua.NodeId, value: object, vt: ua.VariantType,
                     source_time: datetime | None = None, status: str = "Good") -> bool:
        """Write if value or status changed; False when they did not."""
        slot = self._slot(node_id)
        # type() too: True == 1 == 1.0, but a changed type is a change
        if slot.status == status and slot.value == value and type(slot.value) is type(value) \
                and slot.variant is not None:
            return False
        variant = ua.Variant(value, vt)
        slot.value, slot.variant, slot.source_time, slot.status = value, variant, source_time, status
        now = datetime.now(UTC)
        await self._server.write_attribute_value(node_id, ua.DataValue(
            Value=variant, StatusCode=_status(status),
            SourceTimestamp=source_time or now, ServerTimestamp=now,
        ))
        self.writes += 1
        return True

    async def _refresh_timestamps(self, node_ids: list[ua.NodeId], source_time: datetime | None) -> None:
        """Give unchanged Good values ``source_time``, in one batch."""
        now = datetime.now(UTC)
        source_time = source_time or now
        good = _status("Good")
        writes = []
        for node_id in node_ids:
            slot = self._slots[node_id]
            if slot.source_time == source_time:
                continue
            slot.source_time = source_time
            attribute = slot.attribute
            if attribute is None:
                attribute = slot.attribute = value_attribute(self._server, node_id)
            writes.append((node_id, attribute, ua.DataValue(
                Value=slot.variant, StatusCode=good, SourceTimestamp=source_time, ServerTimestamp=now)))
        if writes:
            await write_values(self._server, writes)
            self.writes += len(writes)

    async def _degrade(self, node_ids, status: str) -> None:
        """A failed poll: keep the last value as Uncertain, or go Bad once stale."""
        now = datetime.now(UTC)
        for node_id in node_ids:
            slot = self._slot(node_id)
            if slot.status == status:
                continue
            if status.startswith("Uncertain") and slot.variant is None:
                continue  # nothing usable to keep: stays BadWaitingForInitialData until Bad
            slot.status = status
            await self._server.write_attribute_value(node_id, ua.DataValue(
                Value=slot.variant if not status.startswith("Bad") else None,
                StatusCode=_status(status),
                SourceTimestamp=slot.source_time or now, ServerTimestamp=now,
            ))
            self.writes += 1

    # --- MeterSink ----------------------------------------------------------------------
    async def measurements(self, values: Mapping[str, float], source_time: datetime) -> None:
        if self._refresh:
            await self._measurements_refreshing(values, source_time)
            return
        quantities = self._nodes.quantities
        for code, value in values.items():
            node_id = quantities.get(code)
            if node_id is None:
                continue
            vt = _QUANTITY_VT[code]
            await self._write(node_id, float(value) if vt is _VT.Double else int(value), vt, source_time)

    async def _measurements_refreshing(self, values: Mapping[str, float], source_time: datetime) -> None:
        quantities = self._nodes.quantities
        unchanged = []
        for code, value in values.items():
            node_id = quantities.get(code)
            if node_id is None:
                continue
            vt = _QUANTITY_VT[code]
            if not await self._write(node_id, float(value) if vt is _VT.Double else int(value), vt, source_time):
                unchanged.append(node_id)
        if unchanged:
            await self._refresh_timestamps(unchanged, source_time)

    async def measurements_failed(self, codes: tuple[str, ...], status: str) -> None:
        quantities = self._nodes.quantities
        await self._degrade([quantities[c] for c in codes if c in quantities], status)

    async def extremes(self, extremes: Mapping[str, Extremes]) -> None:
        ids = self._nodes.extremes
        for code, ext in extremes.items():
            time_keys = {"min": (code, "min_time"), "max": (code, "max_time")}
            for which, extreme in (("min", ext.minimum), ("max", ext.maximum)):
                value_id = ids.get((code, which))
                if value_id is None:
                    continue
                await self._write(value_id, float(extreme.value), _VT.Double, extreme.time)
                if extreme.time is not None:
                    await self._write(ids[time_keys[which]], extreme.time, _VT.DateTime, extreme.time)

    async def extremes_failed(self, status: str) -> None:
        await self._degrade(self._extreme_ids, status)

    async def status(self, status: MeterStatus) -> None:
        ident, conf = self._nodes.identification, self._nodes.configuration
        t = status.meter_time
        S, B = _VT.String, _VT.Boolean
        unchanged: list[ua.NodeId] | None = [] if self._refresh else None
        for browse, value, vt in (
            ("Manufacturer", _MANUFACTURER, _VT.LocalizedText),
            ("Model", _MODEL, _VT.LocalizedText),
            ("SerialNumber", status.serial, S),
            ("SoftwareRevision", status.firmware_version, S),
            ("MacAddress", status.mac, S),
            ("FactoryNumber", int(status.factory_number), _VT.UInt64),
        ):
            if browse in ident and not await self._write(ident[browse], value, vt, t) and unchanged is not None:
                unchanged.append(ident[browse])
        for browse, value, vt in (
            ("DhcpEnabled", bool(status.dhcp_enabled), B),
            ("IpAddress", status.ip, S),
            ("Netmask", status.netmask, S),
            ("Gateway", status.gateway, S),
            ("Dns", status.dns, S),
            ("ModbusEnabled", bool(status.modbus_enabled), B),
            ("ModbusPort", int(status.modbus_port), _VT.UInt16),
            ("NtpEnabled", bool(status.ntp_enabled), B),
            ("NtpServer", status.ntp_server, S),
            ("OnlineUpdateAllowed", bool(status.online_update_allowed), B),
        ):
            if browse in conf and not await self._write(conf[browse], value, vt, t) and unchanged is not None:
                unchanged.append(conf[browse])
        if t is not None and "MeterTime" in self._nodes.diagnostics:
            await self._write(self._nodes.diagnostics["MeterTime"], t, _VT.DateTime, t)
        if unchanged:
            await self._refresh_timestamps(unchanged, t)

    async def status_failed(self, status: str) -> None:
        await self._degrade(self._status_ids, status)

    async def diagnostics(self, d: Diagnostics) -> None:
        if self._on_connection is not None:
            state = d.connection_state
            if state is ConnectionState.DISCONNECTED:
                if not self._lost:
                    self._lost = True
                    await self._on_connection(self._nodes.name, True, d.last_error)
            elif self._lost and state is ConnectionState.CONNECTED:
                self._lost = False
                await self._on_connection(self._nodes.name, False, "")
        diag = self._nodes.diagnostics
        health = _HEALTH[d.connection_state]
        if health == 0 and d.crosscheck_ok is False:
            health = _MAINTENANCE_REQUIRED
        S = _VT.String
        entries = [
            ("ConnectionState", d.connection_state.value, S),
            ("ConsecutiveFailures", d.consecutive_failures, _VT.UInt32),
            ("LastError", d.last_error, S),
            ("PollDuration", round(d.poll_duration_ms, 1), _VT.Double),
            ("CrossCheck", d.crosscheck, S),
            ("DataSource", d.data_source, S),
        ]
        if d.crosscheck_ok is not None and "CrossCheckOk" in diag:
            if d.crosscheck_status == "Good":
                await self._write(diag["CrossCheckOk"], d.crosscheck_ok, _VT.Boolean)
            else:  # the last result, as last usable, until Modbus and meterdata.json answer
                await self._degrade((diag["CrossCheckOk"],), d.crosscheck_status)
        if d.last_successful_poll is not None:
            entries.append(("LastSuccessfulPoll", d.last_successful_poll, _VT.DateTime))
        for browse, value, vt in entries:
            if browse in diag:
                await self._write(diag[browse], value, vt)
        if "DeviceHealth" in self._nodes.identification:
            await self._write(self._nodes.identification["DeviceHealth"], health, _VT.Int32)

    async def history(self, d: SyncDiagnostics) -> None:
        """Datalog sync diagnostics (``Diagnostics/History*``); called by the syncer."""
        diag = self._nodes.diagnostics
        entries = [
            ("HistorySyncState", d.state, _VT.String),
            ("HistorySyncProgress", round(d.progress * 100.0, 1), _VT.Double),
            ("HistoryRowsStored", int(d.rows_stored), _VT.UInt64),
            ("HistoryLastSyncError", d.last_error, _VT.String),
        ]
        if d.oldest_row is not None:
            entries.append(("HistoryOldestRow", d.oldest_row, _VT.DateTime))
        if d.newest_row is not None:
            entries.append(("HistoryNewestRow", d.newest_row, _VT.DateTime))
        for browse, value, vt in entries:
            if browse in diag:
                await self._write(diag[browse], value, vt)

    async def history_disabled(self) -> None:
        if "HistorySyncState" in self._nodes.diagnostics:
            await self._write(self._nodes.diagnostics["HistorySyncState"], "disabled", _VT.String)
