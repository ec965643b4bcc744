"""History over OPC UA: the HistoryRead service, HA Configuration nodes, capabilities.

The rules are in :mod:`emu_opcua.history.raw` (sans-IO); this module maps them to asyncua:

- **The seam.** asyncua sends every HistoryRead to ``iserver.history_manager.
  read_history(params)``. :func:`install` replaces that manager with a
  :class:`HistoryService` (a subclass, so asyncua's own ``historize_*`` keep working)
  that reads the store. Our client sessions pass themselves
  (:class:`HistorySessionMixin`), which keeps continuation points per session.
- **Dispatch by details type** (:meth:`HistoryService.register`): ReadRawModifiedDetails
  (raw; IsReadModified -> Bad_HistoryOperationUnsupported) and ReadAtTimeDetails here;
  ReadProcessedDetails in :mod:`emu_opcua.opcua.processed` (registered by :func:`install`);
  ReadEventDetails (logbook events) answers Bad_HistoryOperationUnsupported until its
  handler is registered.
- **Continuation points** (:class:`ContinuationPoints`): opaque bytes (the cursor, a
  fingerprint of node and details, a random nonce), valid only while listed in the
  session's table: single use, at most ``max_points`` per session (the oldest is
  dropped), freed by ReleaseContinuationPoints and when the session closes. An unknown,
  used, dropped or foreign point is Bad_ContinuationPointInvalid for that node only.
- **Values on the wire.** A page of history is encoded straight to the HistoryData
  ExtensionObject's bytes (DataValues of one Double, a StatusCode when not Good, the
  timestamps asked for): asyncua's generic encoder costs ~10 us per DataValue, this
  ~0.3 us (``bench/bench_history_read.py``). The internal session gets ``ua.HistoryData``.
- **Nodes.** Each historized variable (every quantity the datalog carries) has
  Historizing true, HistoryRead in AccessLevel and UserAccessLevel, and an
  ``HA Configuration`` object (HasHistoricalConfiguration) with Stepped, StartOfArchive,
  StartOfOnlineArchive, AggregateConfiguration (OPC 10000-13 defaults) and an
  AggregateFunctions folder (the 37 aggregates ReadProcessed computes): one per meter
  for its stepped variables, one for its sloped ones (``<meter>.HAConfiguration.Stepped``
  / ``.Sloped``; one per variable would nearly double a meter's nodes). They are part of
  the meter template of ``model.py``, so every meter after the first shares their
  attributes; StartOfArchive / StartOfOnlineArchive answer through a value callback
  that finds the meter in the node id and asks the store for its oldest row.
- **Server capabilities**: HistoryServerCapabilities (AccessHistoryDataCapability,
  MaxReturnDataValues, ServerTimestampSupported, every insert/replace/update/delete
  false), ServerCapabilities/MaxHistoryContinuationPoints, and both AggregateFunctions
  folders (ServerCapabilities, HistoryServerCapabilities) referencing the 37
  AggregateFunction objects of ns=0.

ServerTimestamp: the store keeps no time of arrival, so a value's ServerTimestamp is its
row's time, the same as its SourceTimestamp.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import struct
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from asyncua import Server, ua
from asyncua.server.history import HistoryManager

from emu_opcua.history import raw
from emu_opcua.history.raw import (
    KIND_AT_TIME,
    KIND_RAW,
    US,
    ContinuationState,
    RawRequest,
    RequestError,
    RowConverter,
    StatusCodes,
)
from emu_opcua.history.store import HistoryStore
from emu_opcua.meter.catalogue import Quantity
from emu_opcua.meter.datalog import DATALOG_QUANTITIES
from emu_opcua.opcua import processed

if TYPE_CHECKING:
    from emu_opcua.opcua.model import MeterModel

#: Codes of the catalogue quantities served with history: every one the datalog carries.
HISTORIZED: frozenset[str] = frozenset(q.code for q in DATALOG_QUANTITIES)
#: Default cap on the values of one node in one HistoryRead answer (MaxReturnDataValues).
MAX_RETURN_DATA_VALUES = 10_000
#: Default continuation points per session (``ServerConfig.max_history_continuation_points``).
MAX_CONTINUATION_POINTS = 10

HA_CONFIGURATION = "HAConfiguration"  # node id segment; the BrowseName is "HA Configuration"
_HISTORY_ACCESS = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.HistoryRead.mask

_TICKS_AT_UNIX_EPOCH = 116_444_736_000_000_000  # 100 ns ticks from 1601-01-01 to 1970-01-01

_SC = ua.StatusCodes


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(code)


# --- the nodes ----------------------------------------------------------------------------------
def historized_access() -> tuple[int, int, bool]:
    """AccessLevel, UserAccessLevel and Historizing of a historized variable."""
    return _HISTORY_ACCESS, _HISTORY_ACCESS, True


def _property(node_id: ua.NodeId, parent: ua.NodeId, name: str, datatype: int,
              value: ua.Variant) -> ua.AddNodesItem:
    attrs = ua.VariableAttributes(DisplayName=ua.LocalizedText(name, "en"), Value=value,
                                  DataType=ua.NodeId(datatype), ValueRank=-1,
                                  AccessLevel=ua.AccessLevel.CurrentRead.mask,
                                  UserAccessLevel=ua.AccessLevel.CurrentRead.mask)
    attrs.SpecifiedAttributes = (ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.Value
                                 | ua.NodeAttributesMask.DataType | ua.NodeAttributesMask.ValueRank
                                 | ua.NodeAttributesMask.AccessLevel | ua.NodeAttributesMask.UserAccessLevel)
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasProperty),
                           RequestedNewNodeId=node_id, BrowseName=ua.QualifiedName(name, 0),
                           NodeClass=ua.NodeClass.Variable, NodeAttributes=attrs,
                           TypeDefinition=ua.NodeId(ua.ObjectIds.PropertyType))


def _object(node_id: ua.NodeId, parent: ua.NodeId, ref: int, name: str, type_id: int) -> ua.AddNodesItem:
    attrs = ua.ObjectAttributes(DisplayName=ua.LocalizedText(name, "en"), EventNotifier=0)
    attrs.SpecifiedAttributes = ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.EventNotifier
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=ua.NodeId(ref), RequestedNewNodeId=node_id,
                           BrowseName=ua.QualifiedName(name, 0), NodeClass=ua.NodeClass.Object,
                           NodeAttributes=attrs, TypeDefinition=ua.NodeId(type_id))


def configuration_items(variable: ua.NodeId, meter: str, stepped: bool) -> list[ua.AddNodesItem]:
    """A meter's ``HA Configuration`` object for its stepped (or sloped) historized
    variables, and its children (OPC 10000-11 5.2.2, HistoricalDataConfigurationType), as
    AddNodes items with ``variable`` the first to reference it. The others reference it
    through :func:`configuration_references`: a meter has two HA Configurations, not one
    per variable (what differs between its variables is Stepped; all share the archive)."""
    idx = variable.NamespaceIndex
    base = f"{meter}.{HA_CONFIGURATION}.{'Stepped' if stepped else 'Sloped'}"

    def nid(*path: str) -> ua.NodeId:
        return ua.NodeId(".".join((base, *path)), idx)

    V, T = ua.Variant, ua.VariantType
    config, aggregates = nid(), nid("AggregateConfiguration")
    return [
        _object(config, variable, ua.ObjectIds.HasHistoricalConfiguration, "HA Configuration",
                ua.ObjectIds.HistoricalDataConfigurationType),
        _object(aggregates, config, ua.ObjectIds.HasComponent, "AggregateConfiguration",
                ua.ObjectIds.AggregateConfigurationType),
        # OPC 10000-13 4.2.1.2 defaults
        _property(nid("AggregateConfiguration", "TreatUncertainAsBad"), aggregates, "TreatUncertainAsBad",
                  ua.ObjectIds.Boolean, V(True, T.Boolean)),
        _property(nid("AggregateConfiguration", "PercentDataBad"), aggregates, "PercentDataBad",
                  ua.ObjectIds.Byte, V(100, T.Byte)),
        _property(nid("AggregateConfiguration", "PercentDataGood"), aggregates, "PercentDataGood",
                  ua.ObjectIds.Byte, V(100, T.Byte)),
        _property(nid("AggregateConfiguration", "UseSlopedExtrapolation"), aggregates, "UseSlopedExtrapolation",
                  ua.ObjectIds.Boolean, V(False, T.Boolean)),
        _property(nid("Stepped"), config, "Stepped", ua.ObjectIds.Boolean, V(stepped, T.Boolean)),
        _property(nid("StartOfArchive"), config, "StartOfArchive", ua.ObjectIds.UtcTime, V(None, T.DateTime)),
        _property(nid("StartOfOnlineArchive"), config, "StartOfOnlineArchive", ua.ObjectIds.UtcTime,
                  V(None, T.DateTime)),
        # the aggregates served (OPC 10000-13 4.2.2.1); its references: configuration_function_references
        processed.folder_item(nid("AggregateFunctions"), config),
    ]


def configuration_function_references(config: ua.NodeId) -> list[ua.AddReferencesItem]:
    """The references of an HA Configuration's AggregateFunctions folder to the
    AggregateFunction objects of every aggregate served (ReadProcessed)."""
    return processed.function_references(ua.NodeId(f"{config.Identifier}.AggregateFunctions",
                                                   config.NamespaceIndex))


def configuration_references(variable: ua.NodeId, config: ua.NodeId) -> list[ua.AddReferencesItem]:
    """HasHistoricalConfiguration from ``variable`` to an HA Configuration, both ways."""
    ref = ua.NodeId(ua.ObjectIds.HasHistoricalConfiguration)
    return [ua.AddReferencesItem(SourceNodeId=variable, ReferenceTypeId=ref, IsForward=True,
                                 TargetNodeId=config, TargetNodeClass=ua.NodeClass.Object),
            ua.AddReferencesItem(SourceNodeId=config, ReferenceTypeId=ref, IsForward=False,
                                 TargetNodeId=variable, TargetNodeClass=ua.NodeClass.Variable)]


#: The archive-start properties of an HA Configuration (answered by callback, per meter).
ARCHIVE_START = ("StartOfArchive", "StartOfOnlineArchive")


def is_configuration_node(suffix: str) -> bool:
    """Whether a meter node's id suffix (after the meter name) is part of an HA Configuration."""
    return suffix.startswith(f".{HA_CONFIGURATION}.")


# --- continuation points ------------------------------------------------------------------------
class ContinuationPoints:
    """The live continuation points of each session (see the module docstring)."""

    def __init__(self, max_points: int) -> None:
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        self.max_points = max_points
        self._sessions: weakref.WeakKeyDictionary[Any, OrderedDict[bytes, None]] = weakref.WeakKeyDictionary()
        self._internal: OrderedDict[bytes, None] = OrderedDict()

    def _table(self, session: Any) -> OrderedDict[bytes, None]:
        if session is None:
            return self._internal
        table = self._sessions.get(session)
        if table is None:
            table = self._sessions[session] = OrderedDict()
        return table

    def add(self, session: Any, point: bytes) -> None:
        table = self._table(session)
        table[point] = None
        while len(table) > self.max_points:
            table.popitem(last=False)  # the oldest goes

    def take(self, session: Any, point: bytes) -> bool:
        """Remove ``point`` from the session's table; False when it was not there."""
        table = self._table(session)
        if point in table:
            del table[point]
            return True
        return False

    def count(self, session: Any) -> int:
        return len(self._table(session))

    def forget(self, session: Any) -> None:
        self._sessions.pop(session, None)


def _fingerprint(node_id: ua.NodeId, *details: object) -> bytes:
    h = hashlib.blake2b(digest_size=8)
    h.update(node_id.to_string().encode())
    for item in details:
        h.update(b"\x00")
        h.update(repr(item).encode())
    return h.digest()


# --- values on the wire -------------------------------------------------------------------------
_HISTORY_DATA_ID = ua.NodeId(ua.ObjectIds.HistoryData_Encoding_DefaultBinary)
_DOUBLE = ua.VariantType.Double.value
# DataValue EncodingMask bits (OPC 10000-6 5.2.2.17)
_M_VALUE, _M_STATUS, _M_SOURCE, _M_SERVER = 0x01, 0x02, 0x04, 0x08


class _Encoder:
    """DataValues of one Double as OPC UA binary, for one TimestampsToReturn."""

    def __init__(self, timestamps: ua.TimestampsToReturn) -> None:
        both = timestamps == ua.TimestampsToReturn.Both
        ts_mask = {ua.TimestampsToReturn.Source: _M_SOURCE, ua.TimestampsToReturn.Server: _M_SERVER}.get(
            timestamps, _M_SOURCE | _M_SERVER)
        self.both = both
        stamps = "qq" if both else "q"
        self.good = struct.Struct("<BBd" + stamps)
        self.good_mask = _M_VALUE | ts_mask
        self.status = struct.Struct("<BBdI" + stamps)
        self.status_mask = _M_VALUE | _M_STATUS | ts_mask
        self.null = struct.Struct("<BI" + stamps)
        self.null_mask = _M_STATUS | ts_mask

    def encode(self, values: Sequence[raw.Value]) -> bytes:
        epoch = _TICKS_AT_UNIX_EPOCH
        parts = [struct.pack("<i", len(values))]
        append = parts.append
        good, status, null = self.good.pack, self.status.pack, self.null.pack
        gm, sm, nm = self.good_mask, self.status_mask, self.null_mask
        if self.both:
            for t, v, s in values:
                ticks = t * 10 + epoch
                if v is None:
                    append(null(nm, s, ticks, ticks))
                elif s:
                    append(status(sm, _DOUBLE, v, s, ticks, ticks))
                else:
                    append(good(gm, _DOUBLE, v, ticks, ticks))
        else:
            for t, v, s in values:
                ticks = t * 10 + epoch
                if v is None:
                    append(null(nm, s, ticks))
                elif s:
                    append(status(sm, _DOUBLE, v, s, ticks))
                else:
                    append(good(gm, _DOUBLE, v, ticks))
        return b"".join(parts)


def _datetime(us: int) -> datetime:
    return ua.win_epoch_to_datetime(us * 10 + _TICKS_AT_UNIX_EPOCH)


def _data_values(values: Sequence[raw.Value], timestamps: ua.TimestampsToReturn) -> list[ua.DataValue]:
    source = timestamps != ua.TimestampsToReturn.Server
    server = timestamps != ua.TimestampsToReturn.Source
    out = []
    for t, v, s in values:
        when = _datetime(t)
        out.append(ua.DataValue(Value=None if v is None else ua.Variant(v, ua.VariantType.Double),
                                StatusCode=ua.StatusCode(s), SourceTimestamp=when if source else None,
                                ServerTimestamp=when if server else None))
    return out


def _us(dt: datetime | None) -> int | None:
    """A request's DateTime in Unix microseconds; None for "not given" (MinValue, null)."""
    if dt is None:
        return None
    ticks = ua.datetime_to_win_epoch(dt)
    if ticks <= 0:
        return None
    return (ticks - _TICKS_AT_UNIX_EPOCH) // 10


# --- the service --------------------------------------------------------------------------------
#: A details handler: (service, params, session) -> one result per node
DetailsHandler = Callable[["HistoryService", ua.HistoryReadParameters, Any], Awaitable[list[ua.HistoryReadResult]]]


class _Job:
    """One node of a request, resolved."""

    __slots__ = ("index", "node_id", "meter", "converter", "state", "fingerprint", "page", "error")

    def __init__(self, index: int, node_id: ua.NodeId) -> None:
        self.index = index
        self.node_id = node_id
        self.meter: str | None = None
        self.converter: RowConverter | None = None
        self.state: ContinuationState | None = None
        self.fingerprint = b""
        self.page: Any = None
        self.error: int | None = None


class HistoryService(HistoryManager):
    """``iserver.history_manager`` of a gateway: history from a :class:`HistoryStore`."""

    def __init__(self, iserver: Any, store: HistoryStore | None, nodes: Mapping[ua.NodeId, tuple[str, Quantity]], *,
                 max_values: int = MAX_RETURN_DATA_VALUES,
                 max_continuation_points: int = MAX_CONTINUATION_POINTS) -> None:
        super().__init__(iserver)
        if max_values < 1:
            raise ValueError("max_values must be >= 1")
        self.store = store
        self.max_values = max_values
        self.points = ContinuationPoints(max_continuation_points)
        converters = {q.code: RowConverter(q) for q in DATALOG_QUANTITIES}
        #: node id -> (meter, converter) of every historized variable
        self.nodes: dict[ua.NodeId, tuple[str, RowConverter]] = {
            node_id: (meter, converters[q.code]) for node_id, (meter, q) in nodes.items()}
        self._handlers: dict[type, DetailsHandler] = {
            ua.ReadRawModifiedDetails: HistoryService._read_raw,
            ua.ReadAtTimeDetails: HistoryService._read_at_time,
            # the aggregates engine (emu_opcua.history.aggregates) registers ReadProcessedDetails,
            # logbook events ReadEventDetails; until then both are unsupported
            ua.ReadProcessedDetails: HistoryService._unsupported,
            ua.ReadEventDetails: HistoryService._unsupported,
        }
        self._encoders = {t: _Encoder(t) for t in (ua.TimestampsToReturn.Source, ua.TimestampsToReturn.Server,
                                                   ua.TimestampsToReturn.Both)}
        # store reads leave the event loop; one thread keeps them in order and off the poller's way
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-read")

    def register(self, details_type: type, handler: DetailsHandler) -> None:
        """Serve HistoryRead requests whose details are ``details_type`` with ``handler``
        (``await handler(service, params, session)`` -> one HistoryReadResult per node).
        Helpers for handlers: :meth:`resolve`, :meth:`source`, :meth:`run`, :meth:`take_point`,
        :meth:`new_point`, :meth:`history_data`."""
        self._handlers[details_type] = handler

    async def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        await super().stop()

    def forget_session(self, session: Any) -> None:
        """A session closed: its continuation points are gone."""
        self.points.forget(session)

    # --- the seam ------------------------------------------------------------------------------
    async def read_history(self, params: ua.HistoryReadParameters, session: Any = None) -> list[ua.HistoryReadResult]:
        if params.TimestampsToReturn not in self._encoders:
            raise ua.uaerrors.BadTimestampsToReturnInvalid()
        if not params.NodesToRead:
            raise ua.uaerrors.BadNothingToDo()
        if params.ReleaseContinuationPoints:
            # the points are freed; no data is returned (OPC 10000-4 5.10.3)
            results = []
            for rv in params.NodesToRead:
                ok = not rv.ContinuationPoint or self.points.take(session, rv.ContinuationPoint)
                results.append(ua.HistoryReadResult(
                    StatusCode=_status(StatusCodes.GOOD if ok else _SC.BadContinuationPointInvalid)))
            return results
        handler = self._handlers.get(type(params.HistoryReadDetails))
        if handler is None:
            return [ua.HistoryReadResult(StatusCode=_status(_SC.BadHistoryOperationInvalid))
                    for _ in params.NodesToRead]
        return await handler(self, params, session)

    async def _unsupported(self, params: ua.HistoryReadParameters, session: Any) -> list[ua.HistoryReadResult]:
        return [ua.HistoryReadResult(StatusCode=_status(_SC.BadHistoryOperationUnsupported))
                for _ in params.NodesToRead]

    # --- helpers for handlers ------------------------------------------------------------------
    def resolve(self, node_id: ua.NodeId) -> tuple[str, RowConverter] | int:
        """(meter, converter) of a historized node, or the StatusCode why it has no history."""
        found = self.nodes.get(node_id)
        if found is not None:
            return found
        if node_id not in self.iserver.aspace:
            return _SC.BadNodeIdUnknown
        return _SC.BadHistoryOperationUnsupported

    def take_point(self, session: Any, point: bytes, kind: int, fingerprint: bytes) -> ContinuationState | None:
        """The state of a continuation point handed to this session for this request, used
        up; None when it is not valid (unknown, used, dropped, another node's or request's)."""
        if not self.points.take(session, point):
            return None
        try:
            state = raw.decode_continuation(point)
        except ValueError:
            return None
        if state.kind != kind or state.fingerprint != fingerprint:
            return None
        return state

    def new_point(self, session: Any, state: ContinuationState) -> bytes:
        point = raw.encode_continuation(state)
        self.points.add(session, point)
        return point

    def history_data(self, values: Sequence[raw.Value], timestamps: ua.TimestampsToReturn,
                     session: Any) -> ua.ExtensionObject | ua.HistoryData:
        if session is None:  # the server's internal session: objects, not bytes
            return ua.HistoryData(DataValues=_data_values(values, timestamps))
        return ua.ExtensionObject(TypeId=_HISTORY_DATA_ID, Body=self._encoders[timestamps].encode(values))

    def source(self, meter: str, columns: Sequence[int] | None = None) -> raw.RowSource:
        """``meter``'s rows as a :class:`~emu_opcua.history.raw.RowSource` (call it in a worker
        thread: :meth:`run`); ``columns``: only these raw columns are needed."""
        read = self.store.read
        if columns is not None:
            def only(start: int, end: int, *, after=None, limit=None, reverse=False):
                return read(meter, start, end, after=after, limit=limit, reverse=reverse, columns=columns)

            return only

        return raw.StoreRows(self.store, meter)  # rows, or tuples of only the columns a read needs

    def _prepare(self, params: ua.HistoryReadParameters, session: Any, kind: int,
                 details_key: tuple) -> list[_Job]:
        jobs = []
        for i, rv in enumerate(params.NodesToRead):
            job = _Job(i, rv.NodeId)
            jobs.append(job)
            found = self.resolve(rv.NodeId)
            if isinstance(found, int):
                job.error = found
                continue
            job.meter, job.converter = found
            job.fingerprint = _fingerprint(rv.NodeId, kind, *details_key)
            if rv.ContinuationPoint:
                job.state = self.take_point(session, rv.ContinuationPoint, kind, job.fingerprint)
                if job.state is None:
                    job.error = _SC.BadContinuationPointInvalid
        return jobs

    def _results(self, jobs: Sequence[_Job], params: ua.HistoryReadParameters, session: Any,
                 kind: int) -> list[ua.HistoryReadResult]:
        results = []
        timestamps = params.TimestampsToReturn
        for job in jobs:
            if job.error is not None:
                results.append(ua.HistoryReadResult(StatusCode=_status(job.error)))
                continue
            values, next_state = job.page
            point = None
            if next_state is not None:
                cursor, offset = next_state
                point = self.new_point(session, ContinuationState(kind, cursor, offset, job.fingerprint,
                                                                  secrets.token_bytes(8)))
            status = StatusCodes.GOOD_NO_DATA if not values and point is None else StatusCodes.GOOD
            results.append(ua.HistoryReadResult(StatusCode=_status(status), ContinuationPoint=point,
                                                HistoryData=self.history_data(values, timestamps, session)))
        return results

    async def run(self, work: Callable[[], None]) -> None:
        """Run ``work`` (store reads) in the history read thread."""
        await asyncio.get_running_loop().run_in_executor(self._executor, work)

    # --- ReadRaw -------------------------------------------------------------------------------
    async def _read_raw(self, params: ua.HistoryReadParameters, session: Any) -> list[ua.HistoryReadResult]:
        details: ua.ReadRawModifiedDetails = params.HistoryReadDetails
        if details.IsReadModified:
            return await self._unsupported(params, session)
        try:
            request = RawRequest(_us(details.StartTime), _us(details.EndTime), int(details.NumValuesPerNode or 0),
                                 bool(details.ReturnBounds))
        except RequestError as exc:
            code = getattr(_SC, exc.code)
            return [ua.HistoryReadResult(StatusCode=_status(code)) for _ in params.NodesToRead]
        jobs = self._prepare(params, session, KIND_RAW,
                             (request.start, request.end, request.max_values, request.bounds))
        max_values = self.max_values

        def work() -> None:
            for job in jobs:
                if job.error is None:
                    cursor = job.state.cursor if job.state is not None else None
                    page = raw.read_raw(self.source(job.meter), job.converter, request,
                                        page_size=max_values, cursor=cursor)
                    job.page = (page.values, None if page.cursor is None else (page.cursor, 0))

        await self.run(work)
        return self._results(jobs, params, session, KIND_RAW)

    # --- ReadAtTime ----------------------------------------------------------------------------
    async def _read_at_time(self, params: ua.HistoryReadParameters, session: Any) -> list[ua.HistoryReadResult]:
        details: ua.ReadAtTimeDetails = params.HistoryReadDetails
        times = [_us(t) for t in details.ReqTimes or ()]
        if not times or any(t is None for t in times):
            code = _SC.BadHistoryOperationInvalid  # no times, or one not given
            return [ua.HistoryReadResult(StatusCode=_status(code)) for _ in params.NodesToRead]
        simple = bool(details.UseSimpleBounds)
        jobs = self._prepare(params, session, KIND_AT_TIME, (tuple(times), simple))
        max_values = self.max_values

        def work() -> None:
            for job in jobs:
                if job.error is None:
                    offset = job.state.offset if job.state is not None else 0
                    chunk = times[offset:offset + max_values]
                    values = raw.read_at_time(self.source(job.meter), job.converter, chunk, simple_bounds=simple)
                    following = offset + len(chunk)
                    job.page = (values, (None, following) if following < len(times) else None)

        await self.run(work)
        return self._results(jobs, params, session, KIND_AT_TIME)

    # --- HA Configuration: the archive's start, per meter ---------------------------------------
    def archive_start(self, node_id: ua.NodeId, _attr: ua.AttributeIds) -> ua.DataValue:
        """Value of StartOfArchive / StartOfOnlineArchive: the meter's oldest stored row."""
        meter = str(node_id.Identifier).partition(".")[0]
        extent = self.store.extent(meter)
        if extent is None:
            return ua.DataValue(Value=ua.Variant(None, ua.VariantType.DateTime),
                                StatusCode=ua.StatusCode(_SC.BadNoData))
        return ua.DataValue(Value=ua.Variant(_datetime(extent[0].timestamp * US), ua.VariantType.DateTime))


class HistorySessionMixin:
    """For the server's client-session class: HistoryRead with per-session continuation
    points, freed when the session closes. Put it before ``InternalSession`` in the bases."""

    async def history_read(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        manager = self.iserver.history_manager  # type: ignore[attr-defined]
        if isinstance(manager, HistoryService):
            return await manager.read_history(params, session=self)
        return await super().history_read(params)  # type: ignore[misc]

    async def close_session(self, delete_subs: bool = True) -> None:
        await super().close_session(delete_subs)  # type: ignore[misc]
        manager = self.iserver.history_manager  # type: ignore[attr-defined]
        if isinstance(manager, HistoryService):
            manager.forget_session(self)


# --- installing ---------------------------------------------------------------------------------
_CAPABILITIES: dict[int, tuple[object, ua.VariantType]] = {

    ua.ObjectIds.HistoryServerCapabilities_AccessHistoryEventsCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_MaxReturnEventValues: (0, ua.VariantType.UInt32),
    ua.ObjectIds.HistoryServerCapabilities_InsertDataCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_ReplaceDataCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_UpdateDataCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_DeleteRawCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_DeleteAtTimeCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_InsertEventCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_ReplaceEventCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_UpdateEventCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_DeleteEventCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_InsertAnnotationCapability: (False, ua.VariantType.Boolean),
    ua.ObjectIds.HistoryServerCapabilities_ServerTimestampSupported: (True, ua.VariantType.Boolean),
}


async def install(server: Server, model: MeterModel, store: HistoryStore | None, *,
                  max_values: int = MAX_RETURN_DATA_VALUES,
                  max_continuation_points: int = MAX_CONTINUATION_POINTS) -> HistoryService:
    """Serve history from ``store`` for ``model`` (built with ``history=True``): replaces
    the server's history manager, fills in the capabilities, hooks up StartOfArchive.
    Without a store no node has history (every HistoryRead is answered so)."""
    iserver = server.iserver
    nodes: dict[ua.NodeId, tuple[str, Quantity]] = {}
    for meter, meter_nodes in (model.meters.items() if store is not None else ()):
        for code, node_id in meter_nodes.quantities.items():
            if code in HISTORIZED:
                nodes[node_id] = (meter, _QUANTITY[code])
    service = HistoryService(iserver, store, nodes, max_values=max_values,
                             max_continuation_points=max_continuation_points)
    processed.register(service)
    old = iserver.history_manager
    service.storage = old.storage
    iserver.history_manager = service
    values = dict(_CAPABILITIES)
    values[ua.ObjectIds.HistoryServerCapabilities_AccessHistoryDataCapability] = (store is not None,
                                                                                  ua.VariantType.Boolean)
    values[ua.ObjectIds.HistoryServerCapabilities_MaxReturnDataValues] = (max_values, ua.VariantType.UInt32)
    values[ua.ObjectIds.Server_ServerCapabilities_MaxHistoryContinuationPoints] = (
        max_continuation_points, ua.VariantType.UInt16)
    for node, (value, vt) in values.items():
        await server.write_attribute_value(ua.NodeId(node), ua.DataValue(ua.Variant(value, vt)))
    if store is not None:  # Server's AggregateFunctions folders: what ReadProcessed computes
        results = await server.get_objects_node().session.add_references(processed.server_function_references())
        for result in results:
            if not result.is_good() and result.value != ua.StatusCodes.BadDuplicateReferenceNotAllowed:
                raise ValueError(f"cannot list the aggregate functions: {result.name}")
    # the archive-start properties of the first meter are every meter's (their attributes
    # are shared by the model's template); one callback answers for all, by node id
    if model.meters and store is not None:
        first = next(iter(model.meters.values()))
        aspace = iserver.aspace
        for config in set(first.history.values()):
            for name in ARCHIVE_START:
                aspace.set_attribute_value_callback(ua.NodeId(f"{config.Identifier}.{name}", config.NamespaceIndex),
                                                    ua.AttributeIds.Value, service.archive_start)
    return service


_QUANTITY: dict[str, Quantity] = {q.code: q for q in DATALOG_QUANTITIES}
