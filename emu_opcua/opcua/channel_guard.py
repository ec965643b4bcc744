"""What asyncua 2.1 lets through on a secure channel, and the guard that stops it.

asyncua's server, as shipped:

- accepts a SecurityPolicy None channel from anyone (right: OPC 10000-4 5.4 lets clients
  call GetEndpoints without security) and then lets that channel create and activate a
  session and read everything, even when the configuration offers no None endpoint;
- lets a channel open with any client certificate and checks it only at CreateSession
  (OPC 10000-4 5.5.2: the server validates it when the channel opens);
- accepts a clear-text password where the endpoint's user token policy demands an
  encrypted one;
- limits neither the sessions (a second CreateSession on a channel orphans the first,
  150 of them on one channel were accepted) nor the monitored items.

None of this can be reached through asyncua's public seams: the decisions are made in
``UaProcessor``, per connection, with the channel at hand. So this module holds the one
subclass of it (:class:`GuardedUaProcessor`) and the two classes that make the binary
server use it, and :class:`GuardedServer`, the ``asyncua.Server`` that starts them. These
depend on asyncua internals (pinned by ``tests/opcua/test_channel_guard.py``; asyncua's
version is bounded in pyproject.toml).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import Buffer, ServiceError
from asyncua.crypto import security_policies
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import SessionState
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary, uatcp_to_binary
from cryptography import x509

from emu_opcua.opcua.security import CHANNEL_POLICY_URI, NONE_POLICY_URI

log = logging.getLogger(__name__)

#: Requests a channel may send whatever its security (discovery, OPC 10000-4 5.4).
_DISCOVERY = frozenset(ua.NodeId(i) for i in (
    ua.ObjectIds.GetEndpointsRequest_Encoding_DefaultBinary,
    ua.ObjectIds.FindServersRequest_Encoding_DefaultBinary,
    ua.ObjectIds.FindServersOnNetworkRequest_Encoding_DefaultBinary,
))
_CREATE_SESSION = ua.NodeId(ua.ObjectIds.CreateSessionRequest_Encoding_DefaultBinary)
_ACTIVATE_SESSION = ua.NodeId(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary)
_CREATE_SUBSCRIPTION = ua.NodeId(ua.ObjectIds.CreateSubscriptionRequest_Encoding_DefaultBinary)
_CREATE_MONITORED_ITEMS = ua.NodeId(ua.ObjectIds.CreateMonitoredItemsRequest_Encoding_DefaultBinary)

#: The password encryption each user token SecurityPolicy demands (OPC 10000-7).
PASSWORD_ENCRYPTION: dict[str, str] = {
    cls.URI: cls.AsymmetricEncryptionURI
    for cls in (security_policies.SecurityPolicyBasic256Sha256,
                security_policies.SecurityPolicyAes256Sha256RsaPss,
                security_policies.SecurityPolicyAes128Sha256RsaOaep)
}


class SessionCounters:
    """What ServerDiagnosticsSummary reports; counted where the guard decides."""

    def __init__(self) -> None:
        self.cumulated_sessions = 0
        self.security_rejected_sessions = 0
        self.rejected_sessions = 0
        self.session_aborts = 0
        self.session_timeouts = 0
        self.cumulated_subscriptions = 0
        self.security_rejected_requests = 0
        self.rejected_requests = 0


class SessionGuard:
    """The server-wide decisions: which channels may hold sessions, how many, the limits.

    ``certificate_check`` is awaited with each client certificate when a secured channel
    opens (``None``: every certificate is accepted, ``trust_all_clients``).
    """

    def __init__(self, iserver: InternalServer, *, max_sessions: int = 100,
                 max_monitored_items: int = 100_000) -> None:
        self.iserver = iserver
        self.max_sessions = max_sessions
        self.max_monitored_items = max_monitored_items
        self.certificate_check: Any = None
        self.counters = SessionCounters()

    # channels -------------------------------------------------------------------------
    def endpoint_for(self, policy: Any) -> ua.EndpointDescription | None:
        for endpoint in self.iserver.endpoints:
            if endpoint.SecurityPolicyUri == policy.URI and endpoint.SecurityMode == policy.Mode:
                return endpoint
        return None

    def refuse_channel(self, policy: Any) -> None:
        """Raise unless an endpoint of this channel's policy and mode is configured."""
        if self.endpoint_for(policy) is not None:
            return
        self.counters.security_rejected_requests += 1
        if any(e.SecurityPolicyUri == policy.URI for e in self.iserver.endpoints):
            raise ServiceError(ua.StatusCodes.BadSecurityModeRejected)
        raise ServiceError(ua.StatusCodes.BadSecurityPolicyRejected)

    async def check_channel_certificate(self, policy: Any) -> None:
        """OPC 10000-4 5.5.2: validate the client certificate of a secured channel at once."""
        if policy.URI == NONE_POLICY_URI or self.certificate_check is None:
            return
        der = policy.peer_certificate
        if not der:
            raise ServiceError(ua.StatusCodes.BadCertificateInvalid)
        await self.certificate_check(x509.load_der_x509_certificate(der))

    # sessions -------------------------------------------------------------------------
    def live_sessions(self) -> int:
        return len(self.iserver._external_sessions)

    def admit_session(self, *, replacing: bool = False) -> None:
        """``replacing``: the channel's current session is closed for the new one."""
        if self.live_sessions() - replacing >= self.max_sessions:
            self.counters.rejected_sessions += 1
            log.warning("CreateSession refused: %d sessions open (max_sessions)", self.max_sessions)
            raise ServiceError(ua.StatusCodes.BadTooManySessions)
        self.counters.cumulated_sessions += 1

    def check_identity_token(self, policy: Any, body: Any) -> None:
        """Refuse a clear-text (or otherwise encrypted) password where the token policy
        demands an encryption (asyncua decrypts what it gets, or takes it as it is)."""
        params = struct_from_binary(ua.ActivateSessionParameters, body)
        token = params.UserIdentityToken
        if not isinstance(token, ua.UserNameIdentityToken):
            return
        endpoint = self.endpoint_for(policy)
        token_policies = [t for t in (endpoint.UserIdentityTokens if endpoint else [])
                          if t.TokenType == ua.UserTokenType.UserName]
        token_policy = next((t for t in token_policies if t.PolicyId == token.PolicyId),
                            token_policies[0] if token_policies else None)
        if token_policy is None:
            raise ServiceError(ua.StatusCodes.BadIdentityTokenInvalid)
        # an empty SecurityPolicyUri means: the channel's own policy (OPC 10000-4 7.41)
        uri = token_policy.SecurityPolicyUri or policy.URI
        required = PASSWORD_ENCRYPTION.get(uri)
        if required is not None and token.EncryptionAlgorithm != required:
            self.counters.security_rejected_sessions += 1
            log.warning("ActivateSession refused: user %r sent its password %s; the token policy "
                        "demands %s", token.UserName,
                        f"encrypted with {token.EncryptionAlgorithm}" if token.EncryptionAlgorithm
                        else "in clear text", required)
            raise ServiceError(ua.StatusCodes.BadIdentityTokenInvalid)

    # subscriptions ----------------------------------------------------------------------
    def monitored_items(self) -> int:
        return sum(len(sub.monitored_item_srv._monitored_items)
                   for sub in self.iserver.subscription_service.subscriptions.values())

    def monitored_item_room(self) -> int:
        return max(0, self.max_monitored_items - self.monitored_items())


class GuardedUaProcessor(UaProcessor):
    """asyncua's per-connection processor, asking the :class:`SessionGuard` first."""

    def __init__(self, iserver: InternalServer, transport: Any, limits: Any, guard: SessionGuard) -> None:
        super().__init__(iserver, transport, limits)
        self._guard = guard
        self._opening: tuple[Any, Any, Any] | None = None
        self._channel_allowed = False  # set once: a channel keeps its policy and mode
        self._refused_items = 0  # monitored items the next CreateMonitoredItemsResponse refuses

    def send_response(self, requesthandle: Any, seqhdr: Any, response: Any,
                      msgtype: ua.MessageType = ua.MessageType.SecureMessage) -> None:
        if self._refused_items and isinstance(response, ua.CreateMonitoredItemsResponse):
            response.Results.extend(
                ua.MonitoredItemCreateResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadTooManyMonitoredItems))
                for _ in range(self._refused_items))
            self._refused_items = 0
        super().send_response(requesthandle, seqhdr, response, msgtype)

    def open_secure_channel(self, algohdr: Any, seqhdr: Any, body: Any) -> None:
        # asyncua opens the channel and answers in this synchronous call; the certificate
        # check is asynchronous (the trust list is re-read from disk), so ``process``
        # opens the channel once the certificate passed. Renewals are not checked again.
        if self._connection.is_open():
            super().open_secure_channel(algohdr, seqhdr, body)
        else:
            self._opening = (algohdr, seqhdr, body)

    async def process(self, header: Any, body: Any) -> bool:
        opening = header.MessageType == ua.MessageType.SecureOpen and not self._connection.is_open()
        try:
            keep = await super().process(header, body)
        except ua.UaError as exc:
            if not opening:
                raise
            # asyncua raises "No matching policy" and leaves the client waiting for an answer
            return self._refuse_channel(ua.StatusCodes.BadSecurityPolicyRejected, exc)
        if self._opening is None:
            return keep
        algohdr, seqhdr, request = self._opening
        self._opening = None
        try:
            await self._guard.check_channel_certificate(self._connection.security_policy)
            super().open_secure_channel(algohdr, seqhdr, request)
        except ServiceError as exc:
            return self._refuse_channel(exc.code, exc)
        except ua.UaError as exc:  # the policy is configured, but not in this mode
            return self._refuse_channel(ua.StatusCodes.BadSecurityModeRejected, exc)
        return keep

    def _refuse_channel(self, code: int, why: Exception) -> bool:
        """Answer OpenSecureChannel with an Error message; the connection is then closed."""
        self._guard.counters.security_rejected_requests += 1
        status = ua.StatusCode(code)
        log.warning("secure channel from %s refused: %s (%s)", self.name, status.name, why)
        self._transport.write(uatcp_to_binary(ua.MessageType.Error, ua.ErrorMessage(status, status.name)))
        return False

    async def _process_message(self, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        guard = self._guard
        policy = self._connection.security_policy
        if not self._channel_allowed and typeid not in _DISCOVERY:
            try:
                guard.refuse_channel(policy)
                self._channel_allowed = True
            except ServiceError:
                if typeid in (_CREATE_SESSION, _ACTIVATE_SESSION):
                    guard.counters.security_rejected_sessions += 1
                log.warning("%s from %s refused: no endpoint with %s / %s is configured",
                            "CreateSession" if typeid == _CREATE_SESSION else "request", self.name,
                            policy.URI.rsplit("#", 1)[-1], policy.Mode.name)
                raise
        if typeid == _CREATE_SESSION:
            guard.admit_session(replacing=self.session is not None)
            if self.session is not None:
                # asyncua serves one session per channel: a second CreateSession would
                # orphan the first for good (never timed out, still counted).
                if self._session_watchdog_task is not None:
                    self._session_watchdog_task.cancel()  # asyncua starts one per CreateSession
                await self.session.close_session(True)
                self.session = None
        elif typeid == _ACTIVATE_SESSION:
            guard.check_identity_token(policy, body.copy())
        elif typeid == _CREATE_MONITORED_ITEMS and self.session is not None:
            params = struct_from_binary(ua.CreateMonitoredItemsParameters, body.copy())
            room = guard.monitored_item_room()
            if len(params.ItemsToCreate) > room:
                # the items beyond the limit get BadTooManyMonitoredItems each (an
                # operation-level result, OPC 10000-4 5.13.2.4); asyncua creates the rest
                self._refused_items = len(params.ItemsToCreate) - room
                guard.counters.rejected_requests += 1
                params.ItemsToCreate = params.ItemsToCreate[:room]
                body = Buffer(struct_to_binary(params))
        token = CHANNEL_POLICY_URI.set(policy.URI)
        try:
            result = await super()._process_message(typeid, requesthdr, seqhdr, body)
        finally:
            CHANNEL_POLICY_URI.reset(token)
            self._refused_items = 0  # a request that failed sent no CreateMonitoredItemsResponse
        if typeid == _CREATE_SUBSCRIPTION:
            guard.counters.cumulated_subscriptions += 1
        return result

    async def close(self) -> None:
        session = self.session
        if session is not None and not self._closing and session.state is not SessionState.Created:
            # without CloseSession: idle too long (asyncua's session or processor watchdog,
            # whichever came first), or the connection went
            idle = time.monotonic() - (self.session_last_activity or time.monotonic())
            if session.session_timeout and idle > session.session_timeout:
                self._guard.counters.session_timeouts += 1
            elif session.is_activated():
                self._guard.counters.session_aborts += 1
        await super().close()


class _GuardedProtocol(OPCUAProtocol):
    guard: SessionGuard
    processor_class: type[GuardedUaProcessor]

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # None: refused (asyncua's max_connections)
            # asyncua made a plain processor; nothing ran on it yet (its message loop
            # looks ``self.processor`` up per message)
            self.processor = self.processor_class(self.iserver, self.transport, self.limits, self.guard)
            self.processor.set_policies(self.policies)


class _GuardedBinaryServer(BinaryServer):
    def __init__(self, *args: Any, guard: SessionGuard, processor: type[GuardedUaProcessor], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._processor = processor

    def _make_protocol(self) -> OPCUAProtocol:
        protocol = _GuardedProtocol(iserver=self.iserver, policies=self._policies, clients=self.clients,
                                    closing_tasks=self.closing_tasks, limits=self.limits)
        protocol.guard = self._guard
        protocol.processor_class = self._processor
        return protocol


class GuardedServer(Server):
    """``asyncua.Server`` whose connections go through a :class:`SessionGuard`.

    ``processor_class``: the per-connection processor, a :class:`GuardedUaProcessor`
    (``services.OpcUaServer`` adds our Read/Write/Browse/Call on top of the guard)."""

    processor_class: type[GuardedUaProcessor] = GuardedUaProcessor

    def __init__(self) -> None:
        super().__init__()
        self.guard = SessionGuard(self.iserver)

    async def start(self) -> None:
        # asyncua 2.1's Server.start, with our binary server (the pinning test compares)
        from asyncua.crypto import uacrypto
        import socket

        if self.iserver.certificate is not None:
            uacrypto.check_certificate(self.iserver.certificate, self._application_uri, socket.gethostname())
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            hostname, port = self._get_bind_socket_info()
            self.bserver = _GuardedBinaryServer(self.iserver, hostname, port, self.limits, guard=self.guard,
                                                processor=self.processor_class)
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise
