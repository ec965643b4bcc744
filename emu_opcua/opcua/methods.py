"""The method-call seam: which methods the server offers, who may call them, and the calls.

asyncua hands a method handler the object id and the arguments, nothing about the caller;
and it shows every method of the standard nodeset (~460 nodes, 132 on instances) as
Executable to everyone, answering each call with BadNothingToDo. Here:

- a method exists for clients only when registered in the server's :class:`MethodRegistry`
  with a :class:`MethodRequirement` (the least role and the least security mode of the
  secure channel); every other method node is Executable = UserExecutable = false and a
  call is BadNotExecutable; a MethodId that is no method of the object is BadMethodInvalid;
- the requirement is checked in one place, :meth:`MethodRegistry.call`, before the
  handler runs: a channel below the mode is BadSecurityModeInsufficient, a role below the
  role BadUserAccessDenied (in that order: a client first learns to secure the channel,
  then to log in); the argument count and built-in types are checked against the method's
  InputArguments (BadArgumentsMissing, BadTooManyArguments, BadInvalidArgument);
- a handler is a coroutine function ``handler(context, object_id, arguments)`` that gets a
  :class:`MethodContext` (session, user, role, channel security) and returns the output
  arguments; raising a ``ua.UaStatusCodeError`` answers that code. Handlers run on the
  event loop: long work must be started in the background (a task), never awaited here,
  or the whole server waits with it;
- UserExecutable is answered per session from the same requirement (``services.
  ServiceSession.read``).

Example (what the firmware update builds on)::

    registry.register(install_node_id, install_firmware,
                      MethodRequirement(min_role="admin",
                                        min_security_mode=ua.MessageSecurityMode.SignAndEncrypt))

Server.GetMonitoredItems and Server.ResendData (OPC 10000-5 9.1, 9.2; clients call them
after reconnecting) are implemented by :class:`SubscriptionMethods` through this seam.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import attrs
from asyncua import Server, ua
from asyncua.server.address_space import AddressSpace
from asyncua.server.monitored_item_service import MonitoredItemData
from asyncua.server.subscription_service import SubscriptionService

from emu_opcua.opcua.security import Role, role_at_least

log = logging.getLogger(__name__)


@attrs.frozen
class MethodContext:
    """Who calls a method, over which secure channel."""

    session_id: ua.NodeId
    user: str | None  # None: anonymous
    role: Role
    security_policy_uri: str
    security_mode: ua.MessageSecurityMode


@attrs.frozen
class MethodRequirement:
    """What a caller needs to run a method."""

    min_role: Role = "operator"
    min_security_mode: ua.MessageSecurityMode = ua.MessageSecurityMode.None_

    def refusal(self, context: MethodContext) -> int | None:
        """Why ``context`` may not call the method (a StatusCode value), or None."""
        if context.security_mode < self.min_security_mode:
            return ua.StatusCodes.BadSecurityModeInsufficient
        if not role_at_least(context.role, self.min_role):
            return ua.StatusCodes.BadUserAccessDenied
        return None


MethodHandler = Callable[[MethodContext, ua.NodeId, Sequence[ua.Variant]], Awaitable[Sequence[ua.Variant] | None]]


@attrs.frozen
class _Method:
    handler: MethodHandler
    requirement: MethodRequirement


_METHOD_CLASS = ua.NodeClass.Method
_HAS_COMPONENT = ua.NodeId(ua.ObjectIds.HasComponent)
_HAS_TYPE_DEFINITION = ua.NodeId(ua.ObjectIds.HasTypeDefinition)
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)


def _code(code: int) -> ua.StatusCode:
    return ua.StatusCode(code)


def _result(code: int) -> ua.CallMethodResult:
    return ua.CallMethodResult(StatusCode=_code(code))


class MethodRegistry:
    """The methods clients may call, each with its requirement; one per server."""

    def __init__(self) -> None:
        self._methods: dict[ua.NodeId, _Method] = {}
        self._aspace: AddressSpace | None = None

    def register(self, method_id: ua.NodeId, handler: MethodHandler,
                 requirement: MethodRequirement = MethodRequirement()) -> None:
        """Offer the method node ``method_id``; ``handler`` runs once ``requirement`` is met."""
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"method handler {handler!r} must be a coroutine function (it runs on the event loop)")
        if method_id in self._methods:
            raise ValueError(f"method {method_id} is registered already")
        self._methods[method_id] = _Method(handler, requirement)
        if self._aspace is not None:
            _set_executable(self._aspace, method_id, True)

    def requirement(self, method_id: ua.NodeId) -> MethodRequirement | None:
        method = self._methods.get(method_id)
        return None if method is None else method.requirement

    def executable(self, method_id: ua.NodeId) -> bool:
        return method_id in self._methods

    def user_executable(self, method_id: ua.NodeId, context: MethodContext) -> bool:
        method = self._methods.get(method_id)
        return method is not None and method.requirement.refusal(context) is None

    async def install(self, server: Server) -> None:
        """Mark every method node of ``server`` executable or not (call once, before serving)."""
        aspace = server.iserver.aspace
        self._aspace = aspace
        for node_id in list(aspace.keys()):
            if _node_class(aspace, node_id) == _METHOD_CLASS:
                _set_executable(aspace, node_id, node_id in self._methods)

    # --- the Call service ---------------------------------------------------------------------
    async def call(self, context: MethodContext, requests: Iterable[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        return [await self._call(context, request) for request in requests]

    async def _call(self, context: MethodContext, request: ua.CallMethodRequest) -> ua.CallMethodResult:
        aspace = self._aspace
        if aspace is None:
            raise RuntimeError("MethodRegistry.install() was not called")
        obj = aspace.get(request.ObjectId)
        if obj is None:
            return _result(ua.StatusCodes.BadNodeIdUnknown)
        method_id = request.MethodId
        if _node_class(aspace, method_id) != _METHOD_CLASS or not _is_method_of(aspace, obj, method_id):
            return _result(ua.StatusCodes.BadMethodInvalid)
        method = self._methods.get(method_id)
        if method is None:
            return _result(ua.StatusCodes.BadNotExecutable)
        refusal = method.requirement.refusal(context)
        if refusal is not None:
            return _result(refusal)
        arguments = list(request.InputArguments or ())
        checked = _check_arguments(aspace, method_id, arguments)
        if checked is not None:
            return checked
        try:
            outputs = await method.handler(context, request.ObjectId, arguments)
        except ua.UaStatusCodeError as exc:
            return _result(exc.code)
        except Exception:
            log.exception("method %s failed", method_id)
            return _result(ua.StatusCodes.BadInternalError)
        return ua.CallMethodResult(StatusCode=_code(ua.StatusCodes.Good),
                                   InputArgumentResults=[_code(ua.StatusCodes.Good)] * len(arguments),
                                   OutputArguments=list(outputs or ()))


def _node_class(aspace: AddressSpace, node_id: ua.NodeId) -> Any:
    node = aspace.get(node_id)
    if node is None or ua.AttributeIds.NodeClass not in node.attributes:
        return None
    dv = node.attributes[ua.AttributeIds.NodeClass].value
    return dv.Value.Value if dv is not None and dv.Value is not None else None


def _is_method_of(aspace: AddressSpace, obj: Any, method_id: ua.NodeId) -> bool:
    """The method is a component of the object, or of the object's type (OPC 10000-4 5.12.2.2)."""
    for ref in obj.references:
        if ref.IsForward and ref.NodeId == method_id and ref.ReferenceTypeId == _HAS_COMPONENT:
            return True
    for ref in obj.references:
        if ref.IsForward and ref.ReferenceTypeId == _HAS_TYPE_DEFINITION:
            type_node = aspace.get(ref.NodeId)
            if type_node is not None and any(
                    r.IsForward and r.NodeId == method_id and r.ReferenceTypeId == _HAS_COMPONENT
                    for r in type_node.references):
                return True
    return False


def _set_executable(aspace: AddressSpace, node_id: ua.NodeId, executable: bool) -> None:
    node = aspace.get(node_id)
    if node is None:
        return
    for attr in (ua.AttributeIds.Executable, ua.AttributeIds.UserExecutable):
        if attr in node.attributes:
            node.attributes[attr].value = ua.DataValue(ua.Variant(executable, ua.VariantType.Boolean))


def _input_arguments(aspace: AddressSpace, method_id: ua.NodeId) -> list[ua.Argument]:
    node = aspace.get(method_id)
    for ref in node.references if node is not None else ():
        if ref.IsForward and ref.ReferenceTypeId == _HAS_PROPERTY and ref.BrowseName.Name == "InputArguments":
            dv = aspace.read_attribute_value(ref.NodeId, ua.AttributeIds.Value)
            if dv.Value is not None and isinstance(dv.Value.Value, list):
                return dv.Value.Value
    return []


def _check_arguments(aspace: AddressSpace, method_id: ua.NodeId,
                     arguments: Sequence[ua.Variant]) -> ua.CallMethodResult | None:
    declared = _input_arguments(aspace, method_id)
    if len(arguments) < len(declared):
        return _result(ua.StatusCodes.BadArgumentsMissing)
    if len(arguments) > len(declared):
        return _result(ua.StatusCodes.BadTooManyArguments)
    results = [_code(ua.StatusCodes.Good)] * len(arguments)
    for i, (argument, declaration) in enumerate(zip(arguments, declared)):
        expected = declaration.DataType
        # built-in types only; BaseDataType (24) takes any value (e.g. GenerateFileForWrite's options)
        if (expected.NamespaceIndex == 0 and isinstance(expected.Identifier, int)
                and 1 <= expected.Identifier <= 25 and expected.Identifier != ua.ObjectIds.BaseDataType
                and argument.VariantType.value != expected.Identifier):
            results[i] = _code(ua.StatusCodes.BadTypeMismatch)
    if any(not r.is_good() for r in results):
        return ua.CallMethodResult(StatusCode=_code(ua.StatusCodes.BadInvalidArgument), InputArgumentResults=results)
    return None


# --- Server.GetMonitoredItems, Server.ResendData --------------------------------------------
def _monitored_items(subscription: Any) -> Iterable[MonitoredItemData]:
    # asyncua keeps a subscription's items in its MonitoredItemService (no public accessor)
    return list(subscription.monitored_item_srv._monitored_items.values())


def _is_data_item(item: MonitoredItemData) -> bool:
    return item.read_value_id is not None and item.read_value_id.AttributeId != ua.AttributeIds.EventNotifier


class SubscriptionMethods:
    """Server.GetMonitoredItems and Server.ResendData over asyncua's subscriptions."""

    def __init__(self, subscriptions: SubscriptionService) -> None:
        self.subscriptions = subscriptions

    def register(self, registry: MethodRegistry) -> None:
        # any session may ask about its own subscriptions (anonymous ones too)
        anyone = MethodRequirement(min_role="reader")
        registry.register(ua.NodeId(ua.ObjectIds.Server_GetMonitoredItems), self.get_monitored_items, anyone)
        registry.register(ua.NodeId(ua.ObjectIds.Server_ResendData), self.resend_data, anyone)

    def _own_subscription(self, context: MethodContext, arguments: Sequence[ua.Variant]) -> Any:
        subscription = self.subscriptions.subscriptions.get(arguments[0].Value)
        if subscription is None:
            raise ua.uaerrors.BadSubscriptionIdInvalid()
        if subscription.session_id != context.session_id:
            raise ua.uaerrors.BadUserAccessDenied()
        return subscription

    async def get_monitored_items(self, context: MethodContext, object_id: ua.NodeId,
                                  arguments: Sequence[ua.Variant]) -> list[ua.Variant]:
        """OPC 10000-5 9.1: the server and client handles of every item of the subscription."""
        items = _monitored_items(self._own_subscription(context, arguments))
        return [ua.Variant([item.monitored_item_id for item in items], ua.VariantType.UInt32),
                ua.Variant([item.client_handle for item in items], ua.VariantType.UInt32)]

    async def resend_data(self, context: MethodContext, object_id: ua.NodeId,
                          arguments: Sequence[ua.Variant]) -> list[ua.Variant]:
        """OPC 10000-5 9.2: the current value of every data item in Reporting mode, with the next Publish."""
        subscription = self._own_subscription(context, arguments)
        aspace = self.subscriptions.aspace
        for item in _monitored_items(subscription):
            if not _is_data_item(item) or item.mode != ua.MonitoringMode.Reporting:
                continue
            value = aspace.read_attribute_value(item.read_value_id.NodeId, item.read_value_id.AttributeId)
            notification = ua.MonitoredItemNotification(ClientHandle=item.client_handle, Value=value)
            await subscription.enqueue_datachange_event(item.monitored_item_id, notification, item.queue_size)
        return []
