"""A lean httpx transport for meters: keep-alive HTTP/1.1 straight on asyncio (h11).

Why not httpx's default transport (httpcore over anyio)? Measured in the gateway
benchmark (1000 meters, ``meterdata.json`` every 5 s = 200 requests/s): httpcore's
connection pool, anyio's cancel scopes and socket attribute lookups cost about as much
CPU as the whole Modbus fast group and publishing together. A meter is a small embedded
web server: one host, GET requests, small answers, a connection or two. This transport
does just that, with ``h11`` (httpcore's own HTTP/1.1 parser) for the wire format, so
the HTTP semantics (chunked bodies, keep-alive, close-delimited bodies) stay correct.

It plugs in under ``httpx.AsyncClient(transport=...)``, so the client keeps httpx's
API, auth and errors: it raises the same httpx exceptions the default transport does
(``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``,
``PoolTimeout``, ``ReadError``, ``RemoteProtocolError``), taking the timeouts from the
request (``request.extensions["timeout"]``). Bodies are read whole (the largest meter
answer, a 3000-row datalog page, is about 300 kB).

A request sent on a kept-alive connection that the meter closed while idle (it closes
idle connections after a while) is sent once more on a fresh connection, as httpcore
does: every request the meter API knows is an idempotent GET.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any

import h11
import httpx

__all__ = ["MeterHttpTransport"]

_MAX_INCOMPLETE_EVENT = 64 * 1024  # longest status line + headers we accept
#: Largest answer body we accept. The largest a meter sends, a 3000-row datalog page, is
#: about 300 kB; a device streaming without end must not fill the gateway's memory.
MAX_BODY = 16 * 1024 * 1024


class _Stale(Exception):
    """A kept-alive connection was closed by the meter before it answered."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_INCOMPLETE_EVENT)
        self._transport: asyncio.Transport | None = None
        self._response: h11.Response | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._done: asyncio.Future[None] | None = None
        self._received = False  # any byte of the current answer arrived
        self._last_data = 0.0
        self._read_timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.requests = 0

    # --- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        done = self._done
        if done is not None and not done.done():
            if self._response is not None:
                try:
                    self._h11.receive_data(b"")  # end of stream: ends a close-delimited body
                    self._pump()
                except h11.RemoteProtocolError as error:
                    done.set_exception(httpx.RemoteProtocolError(str(error)))
                    return
            if not done.done():
                if not self._received and self.requests > 1:
                    done.set_exception(_Stale())
                else:
                    done.set_exception(httpx.ReadError(
                        f"the meter closed the connection ({exc})" if exc else
                        "the meter closed the connection before the answer was complete"))

    def data_received(self, data: bytes) -> None:
        self._received = True
        self._last_data = self._loop.time()
        done = self._done
        try:
            self._h11.receive_data(data)
            self._pump()
        except h11.RemoteProtocolError as error:
            if done is not None and not done.done():
                done.set_exception(httpx.RemoteProtocolError(f"bad HTTP answer: {error}"))
            self.close()

    def _pump(self) -> None:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self._response = event
            elif isinstance(event, h11.Data):
                self._body.append(bytes(event.data))
                self._body_size += len(event.data)
                if self._body_size > MAX_BODY:
                    raise h11.RemoteProtocolError(f"answer larger than {MAX_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                if self._done is not None and not self._done.done():
                    self._done.set_result(None)
                return
            elif isinstance(event, h11.ConnectionClosed):
                return
            # h11.InformationalResponse (1xx): skipped, the final answer follows

    # --- one exchange ------------------------------------------------------------------
    async def exchange(self, request: httpx.Request, body: bytes, read_timeout: float | None,
                       write_timeout: float | None) -> httpx.Response:
        transport = self._transport
        assert transport is not None
        self.requests += 1
        self._response, self._body, self._body_size, self._received = None, [], 0, False
        self._done = self._loop.create_future()
        headers = list(request.headers.raw)
        if body and not any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in headers):
            headers.append((b"Content-Length", str(len(body)).encode()))
        target = request.url.raw_path
        try:
            data = self._h11.send(h11.Request(method=request.method.encode(), target=target, headers=headers))
            if body:
                data += self._h11.send(h11.Data(data=body))
            data += self._h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError as error:
            raise httpx.LocalProtocolError(str(error)) from error
        transport.write(data)
        if transport.get_write_buffer_size() and write_timeout is not None:
            # a meter that stopped reading: rare, small requests fit the socket buffer
            await self._drain(write_timeout)
        self._last_data = self._loop.time()
        await self._wait_answer(read_timeout)
        response = self._response
        assert response is not None
        body_bytes = b"".join(self._body)
        self._body = []
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        else:  # the meter asked to close, or sent a close-delimited body
            self.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw_items(),
            stream=httpx.ByteStream(body_bytes),
            extensions={"http_version": b"HTTP/" + response.http_version, "reason_phrase": response.reason},
            request=request,
        )

    async def _drain(self, timeout: float) -> None:
        deadline = self._loop.time() + timeout
        while self._transport is not None and self._transport.get_write_buffer_size() and not self.closed:
            if self._loop.time() > deadline:
                self.close()
                raise httpx.WriteTimeout(f"could not send the request within {timeout:g} s")
            await asyncio.sleep(0.01)

    async def _wait_answer(self, timeout: float | None) -> None:
        """Wait for the whole answer; ``timeout`` bounds each wait for data (like httpx's
        read timeout), not the whole transfer."""
        done = self._done
        assert done is not None
        if timeout is None:
            await done
            return
        self._read_timeout = timeout
        self._timer = self._loop.call_later(timeout, self._check_idle)
        try:
            await done
        finally:
            self._timer.cancel()
            self._timer = None

    def _check_idle(self) -> None:
        # A method, not a closure: a closure naming its own timer is a reference cycle,
        # garbage for the cyclic collector on every request.
        done = self._done
        if done is None or done.done():
            return
        idle = self._loop.time() - self._last_data
        if idle >= self._read_timeout:
            done.set_exception(httpx.ReadTimeout(f"no answer within {self._read_timeout:g} s"))
            self.close()
        else:  # data arrived meanwhile: wait out the rest
            self._timer = self._loop.call_later(self._read_timeout - idle, self._check_idle)

    def reusable(self) -> bool:
        return (not self.closed and self._transport is not None and not self._transport.is_closing()
                and self._h11.our_state is h11.IDLE and self._h11.their_state is h11.IDLE)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class MeterHttpTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections to one or more origins, at most
    ``max_connections`` per origin, each carrying one request at a time.

    ``verify``: for https, True (system trust store), False (no verification, for
    meters with self-signed certificates) or an ``ssl.SSLContext``.
    """

    def __init__(self, *, max_connections: int = 2, verify: bool | ssl.SSLContext = True) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.max_connections = max_connections
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._pools: dict[tuple[bytes, bytes, int], _Pool] = {}
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if isinstance(self._verify, ssl.SSLContext):
                self._ssl = self._verify
            else:
                ctx = ssl.create_default_context()
                if not self._verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._ssl = ctx
        return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        key = (scheme, url.raw_host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self, url.host, port, scheme == b"https")
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = await request.aread()
        return await pool.request(request, body, timeouts)

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class _Pool:
    """The connections to one origin."""

    def __init__(self, owner: MeterHttpTransport, host: str, port: int, tls: bool) -> None:
        self._owner = owner
        self._host = host
        self._port = port
        self._tls = tls
        self._idle: list[_Connection] = []
        self._count = 0  # open or opening connections
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def request(self, request: httpx.Request, body: bytes, timeouts: dict[str, Any]) -> httpx.Response:
        for attempt in (1, 2):
            conn = await self._acquire(timeouts.get("pool"), timeouts.get("connect"))
            fresh = conn.requests == 0
            try:
                response = await conn.exchange(request, body, timeouts.get("read"), timeouts.get("write"))
            except _Stale:
                self._release(conn)
                if attempt == 2 or fresh:  # pragma: no cover - a fresh connection is never stale
                    raise httpx.ReadError("the meter closed the connection before answering") from None
                continue
            except BaseException:
                conn.close()  # state unknown (cancelled mid-answer, timed out): never reuse
                self._release(conn)
                raise
            self._release(conn)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self, pool_timeout: float | None, connect_timeout: float | None) -> _Connection:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if conn.reusable():
                    return conn
                self._count -= 1
            if self._count < self._owner.max_connections:
                self._count += 1
                try:
                    return await self._connect(connect_timeout)
                except BaseException:
                    self._count -= 1
                    self._wake_one()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                if pool_timeout is None:
                    await waiter
                else:
                    async with asyncio.timeout(pool_timeout):
                        await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, but leaving: pass the free connection on
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout(f"no free connection within {pool_timeout:g} s") from None
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {}
        if self._tls:
            kwargs = {"ssl": self._owner._ssl_context(), "server_hostname": self._host}
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Connection(loop), self._host, self._port, **kwargs)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection within {timeout:g} s") from None
        except ssl.SSLError as error:
            raise httpx.ConnectError(f"TLS handshake failed: {error}") from error
        except OSError as error:
            raise httpx.ConnectError(error.strerror or str(error)) from error
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.reusable():
            self._idle.append(conn)
        else:
            conn.close()
            self._count -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        self._count = 0
