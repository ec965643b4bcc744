"""Meter events over OPC UA: live notifications and HistoryRead with ReadEventDetails.

The events are :class:`~emu_opcua.history.events.MeterEvent` values (derived and stored
by sync, or the gateway's own), each of one EmuMeter event type (``nodeset.EVENT_TYPES``).

- **Notifiers.** Every meter object has EventNotifier SubscribeToEvents | HistoryRead;
  the Meters folder SubscribeToEvents; HasNotifier references Server -> Meters -> each
  meter. asyncua delivers an event only to items monitoring its ``emitting_node``, so an
  event is triggered once per notifier on the chain (meter, folder, Server): a client
  subscribed to Server sees every meter's events, one subscribed to a meter only that
  meter's, each exactly once.
- **Stable EventIds.** asyncua's EventGenerator gives each event a random EventId (and
  rewrites the notifier's EventNotifier byte); we trigger through the subscription
  service with our own event object (:class:`EventFields`), whose EventId is the
  event's hash (:attr:`MeterEvent.event_id`): the same live and from history.
- **Fields.** BaseEventType's (EventId, EventType, SourceNode, SourceName, Time,
  ReceiveTime, Message, Severity) and the event type's properties; a select clause
  names them by browse path, optionally restricted by TypeDefinitionId (a field of
  another type is null). ReceiveTime: when the gateway stored the event is not kept, so
  it is the event's Time from history, the moment of emission live.
- **Where clauses** are evaluated by asyncua's WhereClauseEvaluator, with OfType
  answering for subtypes too (:class:`SubtypeWhereClauseEvaluator`; asyncua compares the
  type for equality, so ``OfType(EmuMeterEventType)`` would never match). For live
  subscriptions asyncua builds its evaluator by name in ``monitored_item_service``:
  :func:`install` puts ours there (the one patch of asyncua for events; pinned by
  ``tests/opcua/test_events_history.py``).
- **History** (OPC 10000-11 6.5.4): a meter object's events from the store, start and
  end time (end before start: newest first), or one of them with NumValuesPerNode;
  at most ``max_values`` (MaxReturnEventValues) per answer, continuation points in the
  history service's per-session table (opaque: the position of the last event sent).
  The Meters folder and Server answer Bad_HistoryOperationUnsupported (ask each meter).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import struct
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from asyncua import Server, ua
from asyncua.server.monitored_item_service import WhereClauseEvaluator

from emu_opcua.history.events import KINDS, MeterEvent
from emu_opcua.history.store import EventPosition, HistoryStore
from emu_opcua.opcua import nodeset as ns

if TYPE_CHECKING:
    from emu_opcua.opcua.history import HistoryService
    from emu_opcua.opcua.model import MeterModel

log = logging.getLogger(__name__)

#: Default cap on the events of one node in one HistoryRead answer (MaxReturnEventValues).
MAX_RETURN_EVENT_VALUES = 10_000

_VT = ua.VariantType
_SC = ua.StatusCodes
_NOTIFIER_METER = ua.EventNotifier.SubscribeToEvents.mask | ua.EventNotifier.HistoryRead.mask
_NOTIFIER_FOLDER = ua.EventNotifier.SubscribeToEvents.mask
_BASE_EVENT_TYPE = ua.NodeId(ua.ObjectIds.BaseEventType)

#: Variant type of each property data type of ours
_PROPERTY_VT = {ns.I_BOOLEAN: _VT.Boolean, ns.I_BYTE: _VT.Byte, ns.I_UINT16: _VT.UInt16, ns.I_UINT32: _VT.UInt32,
                ns.I_UINT64: _VT.UInt64, ns.I_DOUBLE: _VT.Double, ns.I_STRING: _VT.String,
                ns.I_UTCTIME: _VT.DateTime}
_BASE_FIELDS = {"EventId": _VT.ByteString, "EventType": _VT.NodeId, "SourceNode": _VT.NodeId,
                "SourceName": _VT.String, "Time": _VT.DateTime, "ReceiveTime": _VT.DateTime,
                "Message": _VT.LocalizedText, "Severity": _VT.UInt16}


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class EventTypes:
    """Our event types in one server's address space: node ids, fields, subtypes."""

    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.node_ids = {t.browse_name: ua.NodeId(t.browse_name, idx) for t in ns.EVENT_TYPES}
        #: kind -> (type node id, {property: variant type, converter})
        self.kinds: dict[str, tuple[ua.NodeId, dict[str, tuple[ua.VariantType, bool]]]] = {}
        for kind, type_name in KINDS.items():
            t = ns.EVENT_TYPE_BY_NAME[type_name]
            props = {p.browse_name: (_PROPERTY_VT[p.datatype], p.datatype == ns.I_UTCTIME)
                     for p in ns.event_type_properties(t)}
            self.kinds[kind] = (self.node_ids[type_name], props)
        #: every type of ours -> the set of types it is (itself and its ancestors, ns=0 too)
        self.ancestors: dict[ua.NodeId, frozenset[ua.NodeId]] = {}
        for t in ns.EVENT_TYPES:
            chain = {self.node_ids[t.browse_name]}
            parent: int | str = t.parent
            while isinstance(parent, str):
                chain.add(self.node_ids[parent])
                parent = ns.EVENT_TYPE_BY_NAME[parent].parent
            chain |= {ua.NodeId(parent), ua.NodeId(ua.ObjectIds.BaseEventType)}
            self.ancestors[self.node_ids[t.browse_name]] = frozenset(chain)

    def is_a(self, event_type: ua.NodeId, of: ua.NodeId) -> bool:
        return of in self.ancestors.get(event_type, (event_type,))


class EventFields:
    """One event as asyncua's subscription service and WhereClauseEvaluator take it:
    ``emitting_node``, ``EventType``, the fields as attributes, ``to_event_fields``."""

    def __init__(self, types: EventTypes, event: MeterEvent, source: ua.NodeId, receive_time: datetime) -> None:
        type_id, props = types.kinds[event.kind]
        self._types = types
        self.emitting_node = source
        self.data_types: dict[str, ua.VariantType] = dict(_BASE_FIELDS)
        self.EventId = event.event_id
        self.EventType = type_id
        self.SourceNode = source
        self.SourceName = event.meter
        self.Time = _utc(event.time)
        self.ReceiveTime = receive_time
        self.Message = ua.LocalizedText(event.message, "en")
        self.Severity = event.severity
        fields = event.fields
        for name, (vt, is_time) in props.items():
            value = fields.get(name)
            if value is not None and is_time:
                value = _utc(int(value))
            elif value is not None and vt is _VT.Double:
                value = float(value)
            setattr(self, name, value)
            self.data_types[name] = vt

    def _field(self, clause: ua.SimpleAttributeOperand) -> ua.Variant:
        type_id = clause.TypeDefinitionId
        if type_id is not None and not type_id.is_null() and type_id != _BASE_EVENT_TYPE \
                and not self._types.is_a(self.EventType, type_id):
            return ua.Variant()
        if not clause.BrowsePath:
            return ua.Variant()  # the ConditionId (NodeId attribute): we have no conditions
        if clause.AttributeId not in (ua.AttributeIds.Value, None):
            return ua.Variant()
        name = "/".join(q.Name for q in clause.BrowsePath)
        vt = self.data_types.get(name)
        value = getattr(self, name, None) if vt is not None else None
        return ua.Variant() if value is None else ua.Variant(value, vt)

    def to_event_fields(self, select_clauses: Sequence[ua.SimpleAttributeOperand]) -> list[ua.Variant]:
        return [self._field(c) for c in select_clauses]


def is_subtype(aspace: Any, type_id: ua.NodeId, of: ua.NodeId) -> bool:
    """Whether ``type_id`` is ``of`` or a subtype of it (HasSubtype in the address space)."""
    for _ in range(64):  # type hierarchies are shallow; a loop in one is not ours to follow
        if type_id == of:
            return True
        if type_id not in aspace:
            return False
        parent = next((r.NodeId for r in aspace[type_id].references
                       if not r.IsForward and r.ReferenceTypeId == _HAS_SUBTYPE), None)
        if parent is None:
            return False
        type_id = parent
    return False


_HAS_SUBTYPE = ua.NodeId(ua.ObjectIds.HasSubtype)


class SubtypeWhereClauseEvaluator(WhereClauseEvaluator):
    """asyncua's evaluator with OfType true for subtypes too (OPC 10000-4 7.7.3), and
    quiet where an operand is a field the event does not have or a null compared: no
    match (asyncua logs a traceback for each such event)."""

    def eval(self, event: Any) -> bool:
        if not self.elements:
            return True
        try:
            return bool(self._eval_el(0, event))
        except (AttributeError, TypeError):
            return False

    def _eval_el(self, index: int, event: Any) -> Any:
        el = self.elements[index]
        if el.FilterOperator == ua.FilterOperator.OfType:
            return is_subtype(self._aspace, event.EventType, self._eval_op(el.FilterOperands[0], event))
        return super()._eval_el(index, event)


def patch_live_where_clauses() -> None:
    """Live event subscriptions evaluate OfType with subtypes (see the module docstring)."""
    from asyncua.server import monitored_item_service

    monitored_item_service.WhereClauseEvaluator = SubtypeWhereClauseEvaluator


# --- continuation points -------------------------------------------------------------------------
_POINT = struct.Struct("<4sBBqq8s8s")
_MAGIC = b"EMUe"
_VERSION = 1


def _fingerprint(node_id: ua.NodeId, *details: object) -> bytes:
    h = hashlib.blake2b(digest_size=8)
    h.update(node_id.to_string().encode())
    for item in details:
        h.update(b"\x00")
        h.update(repr(item).encode())
    return h.digest()


def _encode_point(position: EventPosition, fingerprint: bytes) -> bytes:
    return _POINT.pack(_MAGIC, _VERSION, 0, position.time, position.seq, fingerprint, secrets.token_bytes(8))


def _decode_point(point: bytes, fingerprint: bytes) -> EventPosition | None:
    if len(point) != _POINT.size:
        return None
    magic, version, _flags, t, seq, fp, _nonce = _POINT.unpack(point)
    if magic != _MAGIC or version != _VERSION or fp != fingerprint:
        return None
    return EventPosition(t, seq)


def _us(dt: datetime | None) -> int | None:
    if dt is None:
        return None
    ticks = ua.datetime_to_win_epoch(dt)
    if ticks <= 0:
        return None
    return (ticks - 116_444_736_000_000_000) // 10


# --- the service ---------------------------------------------------------------------------------
class EventService:
    """Live events and event history of a gateway's meters (see the module docstring)."""

    def __init__(self, server: Server, model: MeterModel, store: HistoryStore | None, *,
                 max_values: int = MAX_RETURN_EVENT_VALUES) -> None:
        self.server = server
        self.model = model
        self.store = store
        self.max_values = max_values
        self.types = EventTypes(model.namespace_index)
        self.meter_nodes: dict[str, ua.NodeId] = {name: n.object for name, n in model.meters.items()}
        self.by_node: dict[ua.NodeId, str] = {node: name for name, node in self.meter_nodes.items()}
        self.notifiers = (model.folder, ua.NodeId(ua.ObjectIds.Server))
        self.emitted = 0  # events triggered (tests, benchmarks)

    # --- live ----------------------------------------------------------------------------------
    async def emit(self, events: Sequence[MeterEvent]) -> None:
        """Notify subscribers of ``events``: on the meter, the Meters folder and Server."""
        subscriptions = self.server.iserver.subscription_service
        now = datetime.now(timezone.utc)
        for event in events:
            source = self.meter_nodes.get(event.meter)
            if source is None:
                continue
            fields = EventFields(self.types, event, source, now)
            for notifier in (source, *self.notifiers):
                fields.emitting_node = notifier
                await subscriptions.trigger_event(fields)
            self.emitted += 1

    # --- history -------------------------------------------------------------------------------
    async def read_events(self, service: HistoryService, params: ua.HistoryReadParameters,
                          session: Any) -> list[ua.HistoryReadResult]:
        details: ua.ReadEventDetails = params.HistoryReadDetails
        start, end = _us(details.StartTime), _us(details.EndTime)
        count = int(details.NumValuesPerNode or 0)
        event_filter = details.Filter
        n = len(params.NodesToRead)
        if (start is None) + (end is None) + (count == 0) > 1:
            return [ua.HistoryReadResult(StatusCode=ua.StatusCode(_SC.BadInvalidTimestampArgument))] * n
        if event_filter is None or not event_filter.SelectClauses:
            return [ua.HistoryReadResult(StatusCode=ua.StatusCode(_SC.BadEventFilterInvalid))] * n
        # bounds in whole seconds (events have whole-second times): lo <= t < hi
        never, ceil = 1 << 62, (lambda us: -(-us // 1_000_000))
        if start is None:  # only an end and a count: newest first, before the end
            reverse, lo, hi = True, -never, ceil(end)
        elif end is None:  # only a start and a count
            reverse, lo, hi = False, ceil(start), never
        elif end < start:  # newest first from start (included) down to end (excluded)
            reverse, lo, hi = True, end // 1_000_000 + 1, start // 1_000_000 + 1
        else:
            reverse, lo, hi = False, ceil(start), ceil(end)
        page = min(count, self.max_values) if count else self.max_values
        key = (start, end, count, repr(event_filter))
        evaluator = SubtypeWhereClauseEvaluator(log, self.server.iserver.aspace, event_filter.WhereClause)
        selects = event_filter.SelectClauses
        jobs = []
        for rv in params.NodesToRead:
            meter = self.by_node.get(rv.NodeId)
            if meter is None or self.store is None:
                known = rv.NodeId in self.server.iserver.aspace
                jobs.append(_SC.BadHistoryOperationUnsupported if known else _SC.BadNodeIdUnknown)
                continue
            fp = _fingerprint(rv.NodeId, *key)
            after = None
            if rv.ContinuationPoint:
                after = (_decode_point(rv.ContinuationPoint, fp)
                         if service.points.take(session, rv.ContinuationPoint) else None)
                if after is None:
                    jobs.append(_SC.BadContinuationPointInvalid)
                    continue
            jobs.append((meter, rv.NodeId, fp, after))
        store = self.store

        def work() -> None:
            for i, job in enumerate(jobs):
                if isinstance(job, int):
                    continue
                meter, node, fp, after = job
                found: list[Any] = []
                last = after
                more = False
                while len(found) < page:
                    batch = store.read_events(meter, lo, hi, after=last, limit=page, reverse=reverse)
                    for stored in batch:
                        fields = EventFields(self.types, stored.event, node, _utc(stored.event.time))
                        last = stored.position
                        if evaluator.eval(fields):
                            found.append(fields.to_event_fields(selects))
                            if len(found) == page:
                                break
                    if len(batch) < page:
                        break
                if len(found) == page and last is not None:
                    # more after the last one sent? (never hand out a point for an empty page)
                    more = bool(store.read_events(meter, lo, hi, after=last, limit=1, reverse=reverse))
                jobs[i] = (found, last if more else None, fp)

        await service.run(work)
        results = []
        for job in jobs:
            if isinstance(job, int):
                results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode(job)))
                continue
            found, last, fp = job
            point = None
            if last is not None:
                point = _encode_point(last, fp)
                service.points.add(session, point)
            status = _SC.GoodNoData if not found and point is None else _SC.Good
            history = ua.HistoryEvent(Events=[ua.HistoryEventFieldList(EventFields=f) for f in found])
            results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode(status), ContinuationPoint=point,
                                                HistoryData=history))
        return results


# --- installing ----------------------------------------------------------------------------------
async def install(server: Server, model: MeterModel, service: HistoryService, store: HistoryStore | None, *,
                  max_values: int = MAX_RETURN_EVENT_VALUES) -> EventService:
    """Make the meters event notifiers (HasNotifier chain Server -> Meters -> meter),
    register the ReadEventDetails handler with ``service``, fill in the event capabilities."""
    events = EventService(server, model, store, max_values=max_values)
    patch_live_where_clauses()
    aspace = server.iserver.aspace
    notifier = ua.AttributeIds.EventNotifier
    folder = model.folder
    await server.write_attribute_value(folder, ua.DataValue(ua.Variant(_NOTIFIER_FOLDER, _VT.Byte)), notifier)
    server_node = ua.NodeId(ua.ObjectIds.Server)
    # every meter object shares one EventNotifier value (the model's template shares attributes)
    shared = None
    for node_id in events.meter_nodes.values():
        attributes = aspace[node_id].attributes
        if shared is None:
            shared = attributes[notifier]
            # HistoryRead only where there is a store to read from
            shared.value = ua.DataValue(ua.Variant(_NOTIFIER_METER if store is not None else _NOTIFIER_FOLDER,
                                                   _VT.Byte))
        else:
            attributes[notifier] = shared
    has_notifier = ua.NodeId(ua.ObjectIds.HasNotifier)
    refs = [ua.AddReferencesItem(SourceNodeId=server_node, ReferenceTypeId=has_notifier, IsForward=True,
                                 TargetNodeId=folder, TargetNodeClass=ua.NodeClass.Object)]
    refs += [ua.AddReferencesItem(SourceNodeId=folder, ReferenceTypeId=has_notifier, IsForward=True,
                                  TargetNodeId=node_id, TargetNodeClass=ua.NodeClass.Object)
             for node_id in events.meter_nodes.values()]
    results = await server.get_objects_node().session.add_references(refs)
    for ref, result in zip(refs, results):
        if not result.is_good():
            raise ValueError(f"cannot add HasNotifier {ref.SourceNodeId} -> {ref.TargetNodeId}: {result.name}")
    service.register(ua.ReadEventDetails, events.read_events)
    for node, value, vt in (
            (ua.ObjectIds.HistoryServerCapabilities_AccessHistoryEventsCapability, store is not None, _VT.Boolean),
            (ua.ObjectIds.HistoryServerCapabilities_MaxReturnEventValues, max_values, _VT.UInt32)):
        await server.write_attribute_value(ua.NodeId(node), ua.DataValue(ua.Variant(value, vt)))
    return events


__all__ = ["EventFields", "EventService", "EventTypes", "MAX_RETURN_EVENT_VALUES", "SubtypeWhereClauseEvaluator",
           "install", "is_subtype", "patch_live_where_clauses"]
