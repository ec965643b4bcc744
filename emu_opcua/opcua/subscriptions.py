"""Data-change monitored items as OPC 10000-4 5.13 / 7.22.2 and OPC 10000-8 7.2 define them.

asyncua 2.1's ``MonitoredItemService`` gets three things wrong for a gateway of meters,
all fixed here, in one place:

- **AbsoluteDeadband** is measured against the previous *sample*, not against the last
  value sent to the client (7.22.2: "the last cached value is defined as the last value
  pushed to the queue"): a ramp in steps smaller than the deadband is never reported.
- **PercentDeadband** is accepted with Good and ignored. Here it is
  ``PercentDeadband / 100 * (EURange.High - EURange.Low)``, and invalid filters are
  refused (CreateMonitoredItems / ModifyMonitoredItems operation results):
  a filter on another attribute than Value, or a deadband on a non-numeric
  variable -> BadFilterNotAllowed; Percent outside 0-100, a negative Absolute, an
  unknown DeadbandType -> BadDeadbandFilterInvalid; Percent on a variable without
  EURange -> BadMonitoredItemFilterUnsupported (what the OPC Foundation's compliance
  test and node-opcua expect; OPC 10000-8's table allows BadDeadbandFilterInvalid too).
- **revisedSamplingInterval** is the subscription's publishing interval whatever was
  asked. Here it is no faster than the variable's MinimumSamplingInterval (its poll
  group's interval, see ``sampling.py``): a faster request (and 0, "as fast as
  possible") is revised up to it, -1 means the publishing interval, a slower request is
  honoured: such an item takes at most one sample per interval, the newest value.

The seam: :func:`install` gives the server's ``SubscriptionService`` a subclass whose
``create_subscription`` hands every new subscription a :class:`DataChangeMonitor`
instead of asyncua's own service (a subclass: event items, deletion, monitoring modes
stay asyncua's). What it relies on in asyncua is pinned by
``tests/opcua/test_subscriptions.py::test_asyncua_internals_we_rely_on``.

Hot path: a meter value written by the publisher calls :meth:`DataChangeMonitor.
datachange_callback` once per monitored item of that node. It compares plain Python
values (no deepcopy of the DataValue, no Variant comparison, as asyncua did) and sends
the DataValue it was given.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from asyncua import Server, ua
from asyncua.server.address_space import AddressSpace
from asyncua.server.internal_subscription import InternalSubscription
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.server.subscription_service import SubscriptionService
from asyncua.ua import uaprotocol_auto

#: ``ua.DataChangeFilter`` is a subclass (with another default trigger) of the class
#: asyncua decodes from the wire: test for the base.
_DATA_CHANGE_FILTER = uaprotocol_auto.DataChangeFilter

_VALUE = ua.AttributeIds.Value
_STATUS_VALUE = ua.DataChangeTrigger.StatusValue
_STATUS_VALUE_TIMESTAMP = ua.DataChangeTrigger.StatusValueTimestamp
_STATUS_ONLY = ua.DataChangeTrigger.Status
_DISABLED = ua.MonitoringMode.Disabled
_NUMBER = ua.NodeId(ua.ObjectIds.Number)
_HAS_SUBTYPE = ua.NodeId(ua.ObjectIds.HasSubtype)
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
_EURANGE = ua.QualifiedName("EURange", 0)


class FilterRefused(Exception):
    """A monitored item's filter cannot be applied; ``code`` is the operation result."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Watch:
    """What one data-change item reports: its trigger, deadband and the last value sent.

    ``passes(dv)`` says whether ``dv`` is to be queued, and if so remembers it as the
    last value sent (the deadband's reference, OPC 10000-4 7.22.2)."""

    __slots__ = ("trigger", "deadband", "sent", "sent_status", "sent_time", "started")

    def __init__(self, trigger: ua.DataChangeTrigger = _STATUS_VALUE, deadband: float | None = None) -> None:
        self.trigger = trigger
        self.deadband = deadband  # in the value's units; None: no deadband
        self.sent: Any = None
        self.sent_status: ua.StatusCode | None = None
        self.sent_time: Any = None
        self.started = False  # something was sent

    def passes(self, dv: ua.DataValue) -> bool:
        variant = dv.Value
        value = variant.Value if variant is not None else None
        if not self.started or dv.StatusCode != self.sent_status:
            pass  # the first value, or a status change: always reported
        elif self.trigger is _STATUS_ONLY:
            return False
        elif self.deadband is not None:
            if not _exceeds(self.sent, value, self.deadband):
                return False
        elif value == self.sent and type(value) is type(self.sent):
            # unchanged (True == 1 == 1.0: a changed type is a change); NaN != NaN, but
            # a value staying NaN is reported once (OPC 10000-4 7.10)
            if self.trigger is not _STATUS_VALUE_TIMESTAMP or dv.SourceTimestamp == self.sent_time:
                return False
        elif _both_nan(value, self.sent):
            if self.trigger is not _STATUS_VALUE_TIMESTAMP or dv.SourceTimestamp == self.sent_time:
                return False
        self.started = True
        self.sent, self.sent_status, self.sent_time = value, dv.StatusCode, dv.SourceTimestamp
        return True


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and a != a and b != b


def _exceeds(sent: Any, value: Any, deadband: float) -> bool:
    """|value - last sent| > deadband, element-wise for arrays (any element: the whole array)."""
    if isinstance(value, (int, float)) and isinstance(sent, (int, float)) \
            and not isinstance(value, bool) and not isinstance(sent, bool):
        if math.isnan(value) or math.isnan(sent):
            return not _both_nan(float(value), float(sent))  # entering or leaving NaN
        return abs(value - sent) > deadband
    if isinstance(value, list) and isinstance(sent, list):
        return len(value) != len(sent) or any(_exceeds(s, v, deadband) for s, v in zip(sent, value))
    return value != sent  # null, or a type without arithmetic: any change


class DataChangeMonitor(MonitoredItemService):
    """asyncua's MonitoredItemService with the data-change rules of this module's docstring."""

    def __init__(self, isub: InternalSubscription, aspace: AddressSpace) -> None:
        super().__init__(isub, aspace)
        #: data-change monitored item id -> its sampling state and Watch
        self._sampling: dict[int, _Sampler] = {}
        self._enqueuing: set[asyncio.Future] = set()

    # --- create / modify ------------------------------------------------------------
    async def _create_data_change_monitored_item(
        self, params: ua.MonitoredItemCreateRequest
    ) -> ua.MonitoredItemCreateResult:
        item = params.ItemToMonitor
        requested = params.RequestedParameters
        try:
            watch = self._watch(item, requested.Filter)
        except FilterRefused as refused:
            return ua.MonitoredItemCreateResult(StatusCode=ua.StatusCode(refused.code))
        result, mdata = self._make_monitored_item_common(params)
        result.RevisedSamplingInterval, minimum = self._revise_sampling(item, requested.SamplingInterval)
        result.StatusCode, handle = self.aspace.add_datachange_callback(
            item.NodeId, item.AttributeId, self.datachange_callback)
        mdata.callback_handle = handle
        self._commit_monitored_item(result, mdata)
        if result.StatusCode.is_good():
            mid = result.MonitoredItemId
            self._monitored_datachange[handle] = mid
            self._sampling[mid] = _Sampler(watch, _gap(result.RevisedSamplingInterval, minimum))
            if mdata.mode != _DISABLED:
                await self.trigger_datachange(handle, item.NodeId, item.AttributeId)
        return result

    def _modify_monitored_item(self, params: ua.MonitoredItemModifyRequest) -> ua.MonitoredItemModifyResult:
        mid = params.MonitoredItemId
        sampler = self._sampling.get(mid)
        mdata = self._monitored_items.get(mid)
        if sampler is None or mdata is None:
            if mdata is not None:  # an event item: asyncua's
                return super()._modify_monitored_item(params)
            return ua.MonitoredItemModifyResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadMonitoredItemIdInvalid))
        requested = params.RequestedParameters
        item = mdata.read_value_id
        try:
            watch = self._watch(item, requested.Filter)
        except FilterRefused as refused:
            return ua.MonitoredItemModifyResult(StatusCode=ua.StatusCode(refused.code))
        result = ua.MonitoredItemModifyResult()
        result.RevisedSamplingInterval, minimum = self._revise_sampling(item, requested.SamplingInterval)
        result.RevisedQueueSize = self._revise_queue_size(requested.QueueSize)
        # the value last sent stays the deadband's reference
        watch.started, watch.sent, watch.sent_status, watch.sent_time = (
            sampler.watch.started, sampler.watch.sent, sampler.watch.sent_status, sampler.watch.sent_time)
        sampler.watch, sampler.gap = watch, _gap(result.RevisedSamplingInterval, minimum)
        mdata.filter = requested.Filter
        mdata.queue_size = result.RevisedQueueSize
        mdata.client_handle = requested.ClientHandle
        return result

    def _delete_monitored_items(self, mid: int) -> ua.StatusCode:
        sampler = self._sampling.pop(mid, None)
        if sampler is not None and sampler.timer is not None:
            sampler.timer.cancel()
            sampler.timer = None
        return super()._delete_monitored_items(mid)

    def _watch(self, item: ua.ReadValueId, flt: Any) -> Watch:
        """The item's Watch from its filter, or FilterRefused with the operation result."""
        if not flt:  # None, or the empty ExtensionObject a client sends for "no filter"
            return Watch()
        if not isinstance(flt, _DATA_CHANGE_FILTER):
            if isinstance(flt, ua.EventFilter):
                raise FilterRefused(ua.StatusCodes.BadFilterNotAllowed)
            raise FilterRefused(ua.StatusCodes.BadMonitoredItemFilterUnsupported)
        if item.AttributeId != _VALUE:
            raise FilterRefused(ua.StatusCodes.BadFilterNotAllowed)
        try:
            trigger = ua.DataChangeTrigger(flt.Trigger)
        except ValueError:
            raise FilterRefused(ua.StatusCodes.BadMonitoredItemFilterInvalid) from None
        kind, amount = flt.DeadbandType, flt.DeadbandValue
        if kind == ua.DeadbandType.None_:
            return Watch(trigger)
        if kind not in (ua.DeadbandType.Absolute, ua.DeadbandType.Percent):
            raise FilterRefused(ua.StatusCodes.BadDeadbandFilterInvalid)
        if not self._is_number(item.NodeId):
            raise FilterRefused(ua.StatusCodes.BadFilterNotAllowed)
        if not amount >= 0.0 or math.isinf(amount):  # also NaN
            raise FilterRefused(ua.StatusCodes.BadDeadbandFilterInvalid)
        if kind == ua.DeadbandType.Absolute:
            return Watch(trigger, float(amount))
        if amount > 100.0:
            raise FilterRefused(ua.StatusCodes.BadDeadbandFilterInvalid)
        eu_range = self._eu_range(item.NodeId)
        if eu_range is None:
            raise FilterRefused(ua.StatusCodes.BadMonitoredItemFilterUnsupported)
        return Watch(trigger, amount / 100.0 * abs(eu_range.High - eu_range.Low))

    def _is_number(self, node_id: ua.NodeId) -> bool:
        """Is the variable's DataType Number or a subtype of it (Double, UInt32, ...)?"""
        dv = self.aspace.read_attribute_value(node_id, ua.AttributeIds.DataType)
        datatype = dv.Value.Value if dv.Value is not None else None
        seen = set()
        while isinstance(datatype, ua.NodeId) and datatype not in seen:
            if datatype == _NUMBER:
                return True
            seen.add(datatype)
            try:
                refs = self.aspace[datatype].references
            except KeyError:
                return False
            datatype = next((r.NodeId for r in refs if not r.IsForward and r.ReferenceTypeId == _HAS_SUBTYPE), None)
        return False

    def _eu_range(self, node_id: ua.NodeId) -> ua.Range | None:
        try:
            refs = self.aspace[node_id].references
        except KeyError:
            return None
        for ref in refs:
            if ref.IsForward and ref.ReferenceTypeId == _HAS_PROPERTY and ref.BrowseName == _EURANGE:
                dv = self.aspace.read_attribute_value(ref.NodeId, _VALUE)
                value = dv.Value.Value if dv.Value is not None else None
                return value if isinstance(value, ua.Range) else None
        return None

    def _revise_sampling(self, item: ua.ReadValueId, requested: float) -> tuple[float, float]:
        """(revised sampling interval, the node's MinimumSamplingInterval or 0), in ms."""
        minimum = 0.0
        if item.AttributeId == _VALUE:
            dv = self.aspace.read_attribute_value(item.NodeId, ua.AttributeIds.MinimumSamplingInterval)
            value = dv.Value.Value if dv.Value is not None else None
            if isinstance(value, (int, float)) and value > 0:
                minimum = float(value)
        if requested is None or requested < 0 or math.isnan(requested):
            requested = self.isub.data.RevisedPublishingInterval  # -1: the publishing interval
        return max(float(requested), minimum), minimum

    # --- the hot path ---------------------------------------------------------------
    async def datachange_callback(self, handle: int, value: ua.DataValue, error: ua.StatusCode | None = None) -> None:
        if error:
            await super().datachange_callback(handle, value, error)
            return
        mid = self._monitored_datachange[handle]
        mdata = self._monitored_items[mid]
        if mdata.mode == _DISABLED:
            return
        sampler = self._sampling[mid]
        if sampler.gap:
            loop = asyncio.get_running_loop()
            now = loop.time()
            if sampler.timer is not None or now < sampler.sampled_at + sampler.gap:
                sampler.pending = value  # sampled at the next sampling instant
                if sampler.timer is None:
                    sampler.timer = loop.call_at(sampler.sampled_at + sampler.gap, self._sample_pending, mid)
                return
            sampler.sampled_at = now
        if sampler.watch.passes(value):
            await self.isub.enqueue_datachange_event(
                mid, ua.MonitoredItemNotification(ClientHandle=mdata.client_handle, Value=value), mdata.queue_size)

    def _sample_pending(self, mid: int) -> None:
        sampler = self._sampling.get(mid)
        mdata = self._monitored_items.get(mid)
        if sampler is None or mdata is None:
            return
        value, sampler.pending, sampler.timer = sampler.pending, None, None
        sampler.sampled_at = asyncio.get_running_loop().time()
        if value is not None and mdata.mode != _DISABLED and sampler.watch.passes(value):
            task = asyncio.ensure_future(self.isub.enqueue_datachange_event(
                mid, ua.MonitoredItemNotification(ClientHandle=mdata.client_handle, Value=value), mdata.queue_size))
            self._enqueuing.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(self._enqueuing.discard)


class _Sampler:
    """Per data-change item: its Watch, and for items sampled slower than their node
    changes, the sampling grid (``gap`` seconds) and the newest value not yet sampled."""

    __slots__ = ("watch", "gap", "sampled_at", "pending", "timer")

    def __init__(self, watch: Watch, gap: float) -> None:
        self.watch = watch
        self.gap = gap  # 0: every change is a sample
        self.sampled_at = float("-inf")
        self.pending: ua.DataValue | None = None
        self.timer: asyncio.TimerHandle | None = None


def _gap(revised_ms: float, minimum_ms: float) -> float:
    """Seconds between samples of an item sampled slower than its node changes, else 0.

    Slower by more than half the node's own interval: polls jitter around their grid,
    and a client asking for the node's own rate must get every poll."""
    if minimum_ms <= 0 or revised_ms <= 1.5 * minimum_ms:
        return 0.0
    return revised_ms / 1000.0


class EmuSubscriptionService(SubscriptionService):
    """asyncua's SubscriptionService whose subscriptions monitor data changes with
    :class:`DataChangeMonitor`."""

    async def create_subscription(self, params, callback, session_id, request_callback=None):
        result = await super().create_subscription(params, callback, session_id, request_callback)
        subscription = self.subscriptions[result.SubscriptionId]
        # no item exists yet: the service can be swapped before any client uses it
        subscription.monitored_item_srv = DataChangeMonitor(subscription, self.aspace)
        return result


def install(server: Server) -> None:
    """Make ``server``'s subscriptions follow this module's rules (before it starts)."""
    service = server.iserver.subscription_service
    if not isinstance(service, EmuSubscriptionService):
        # The class of the one instance asyncua made, not a new instance: the internal
        # session, event generators and every later session hold this very object.
        service.__class__ = EmuSubscriptionService

