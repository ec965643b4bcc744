"""MeterHttpTransport on real sockets (127.0.0.1, ephemeral ports).

The simulator covers the meter's documents; small raw servers here produce the wire
cases a meter's embedded web server may send and the simulator does not: chunked and
close-delimited bodies, an idle keep-alive connection closed by the server, garbage,
silence.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.clients.http_transport import MeterHttpTransport
from emu_opcua.errors import MeterTimeout, MeterUnreachable
from emu_opcua.simulator.fleet import Fleet, FleetConfig

HOST = "127.0.0.1"


class RawServer:
    """A TCP server answering each request with the next canned reply (bytes), or
    running ``handler(reader, writer)`` when given one. Counts connections."""

    def __init__(self, replies: list[bytes] | None = None, handler=None) -> None:
        self.replies = list(replies or [])
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.handler is not None:
                await self.handler(reader, writer)
                return
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                reply = self.replies.pop(0)
                if reply == b"CLOSE":
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def get(port: int, path: str = "/", transport: MeterHttpTransport | None = None, **timeouts) -> httpx.Response:
    transport = transport or MeterHttpTransport()
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0, **timeouts)) as client:
        return await client.get(f"http://{HOST}:{port}{path}")


async def test_documents_from_the_simulator_over_one_kept_alive_connection():
    async with Fleet(FleetConfig(meters=1, history_days=0.2, control_port=None, password="secret")) as fleet:
        meter = fleet.meters[0]
        async with MeterHttpClient(HOST, meter.http_port, password="secret") as client:
            status = await client.status()
            data = await client.meterdata()
            rows = await client.datalog(last=5)
            again = await client.meterdata()
        assert status.serial == meter.serial
        assert data.values and again.values
        assert len(rows) == 5
        assert [r.index for r in rows] == sorted((r.index for r in rows), reverse=True)


async def test_keep_alive_reuses_the_connection():
    async with RawServer([ok(b"one"), ok(b"two"), ok(b"three")]) as srv:
        transport = MeterHttpTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport) as client:
            bodies = [(await client.get(f"http://{HOST}:{srv.port}/x")).content for _ in range(3)]
        assert bodies == [b"one", b"two", b"three"]
        assert srv.connections == 1
        assert srv.requests[0].startswith(b"GET /x HTTP/1.1\r\n")


async def test_chunked_body():
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    async with RawServer([reply]) as srv:
        response = await get(srv.port)
    assert response.status_code == 200
    assert response.content == b"hello world"


async def test_close_delimited_body():
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nno length, ended by close")
        await writer.drain()

    async with RawServer(handler=handler) as srv:
        response = await get(srv.port)
    assert response.content == b"no length, ended by close"


async def test_connection_close_header_opens_a_new_connection_next_time():
    # a server that answers once per connection and asks to close
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(b"once", b"Connection: close\r\n"))
        await writer.drain()

    async with RawServer(handler=handler) as srv:
        transport = MeterHttpTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport) as client:
            bodies = [(await client.get(f"http://{HOST}:{srv.port}/")).content for _ in range(3)]
        assert bodies == [b"once"] * 3
        assert srv.connections == 3


async def test_idle_connection_closed_by_the_server_is_noticed():
    async def handler(reader, writer):  # one answer per connection, then close
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(b"hello"))
        await writer.drain()

    async with RawServer(handler=handler) as srv:
        transport = MeterHttpTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                assert (await client.get(f"http://{HOST}:{srv.port}/")).content == b"hello"
                await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert srv.connections == 3


async def test_kept_alive_connection_closed_as_the_request_arrives_is_retried_on_a_fresh_one():
    # The race a keep-alive client cannot avoid: the meter closes an idle connection
    # just as the next request goes out. GETs are idempotent: send it again, once.
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(b"conn %d" % srv.connections))
        await writer.drain()
        if srv.connections == 1:
            await reader.readuntil(b"\r\n\r\n")  # the second request: hang up unanswered
            return
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b"conn %d" % srv.connections))
            await writer.drain()

    async with RawServer(handler=handler) as srv:
        transport = MeterHttpTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport) as client:
            url = f"http://{HOST}:{srv.port}/"
            bodies = [(await client.get(url)).content for _ in range(3)]
        assert bodies == [b"conn 1", b"conn 2", b"conn 2"]
        assert srv.connections == 2


async def test_close_without_answer_on_a_fresh_connection_is_an_error():
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")  # read the request, then hang up

    async with RawServer(handler=handler) as srv:
        with pytest.raises(httpx.ReadError):
            await get(srv.port)
        assert srv.connections == 1  # not retried: the meter saw the request and failed it


async def test_silent_server_read_timeout():
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    async with RawServer(handler=handler) as srv:
        with pytest.raises(httpx.ReadTimeout):
            await get(srv.port, read=0.2)


async def test_slow_but_steady_body_is_not_a_timeout():
    # the read timeout bounds each wait for data, not the whole transfer (like httpx)
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for ch in b"abcdef":
            await asyncio.sleep(0.1)
            writer.write(bytes([ch]))
            await writer.drain()

    async with RawServer(handler=handler) as srv:
        response = await get(srv.port, read=0.3)
    assert response.content == b"abcdef"


async def test_garbage_is_a_protocol_error_and_the_client_maps_it():
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with RawServer(handler=handler) as srv:
        with pytest.raises(httpx.RemoteProtocolError):
            await get(srv.port)
        async with MeterHttpClient(HOST, srv.port, timeout=2) as client:
            with pytest.raises(MeterUnreachable, match="connection dropped"):
                await client.get("/status.json")


async def test_refused_connection():
    async with RawServer() as srv:
        port = srv.port
    with pytest.raises(httpx.ConnectError):
        await get(port)
    async with MeterHttpClient(HOST, port, timeout=1) as client:
        with pytest.raises(MeterUnreachable, match="cannot connect"):
            await client.status()


async def test_pool_limit_serialises_and_pool_timeout():
    release = asyncio.Event()

    async def handler(reader, writer):
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await release.wait()
            writer.write(ok(b"done"))
            await writer.drain()

    async with RawServer(handler=handler) as srv:
        transport = MeterHttpTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, pool=0.2)) as client:
            url = f"http://{HOST}:{srv.port}/"
            first = asyncio.create_task(client.get(url))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await client.get(url)  # the only connection is busy
            second = asyncio.create_task(client.get(url, timeout=5.0))
            await asyncio.sleep(0.05)
            release.set()
            assert (await first).content == b"done"
            assert (await second).content == b"done"
        assert srv.connections == 1


async def test_cancelled_request_does_not_poison_the_connection():
    async def handler(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"/slow" in head:
                await asyncio.sleep(0.5)
            writer.write(ok(head.split(b" ")[1]))
            await writer.drain()

    async with RawServer(handler=handler) as srv:
        transport = MeterHttpTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport) as client:
            task = asyncio.create_task(client.get(f"http://{HOST}:{srv.port}/slow"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # the late answer to /slow must not be taken for the answer to /fast
            response = await client.get(f"http://{HOST}:{srv.port}/fast")
        assert response.content == b"/fast"
        assert srv.connections == 2


async def test_meter_timeout_through_the_client():
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    async with RawServer(handler=handler) as srv:
        async with MeterHttpClient(HOST, srv.port, timeout=0.2) as client:
            with pytest.raises(MeterTimeout, match="waiting for the answer"):
                await client.status()


def test_max_connections_must_be_positive():
    with pytest.raises(ValueError, match="max_connections"):
        MeterHttpTransport(max_connections=0)


async def test_requests_leave_no_reference_cycles():
    # Cyclic garbage is what makes the collector pause a busy gateway (bench_gateway,
    # "GC per generation"); httpx.AsyncClient.send and a self-referencing timer closure
    # each left one cycle per request.
    import gc

    async with Fleet(FleetConfig(meters=1, history_days=0.1, control_port=None, password="pw")) as fleet:
        meter = fleet.meters[0]
        async with MeterHttpClient(HOST, meter.http_port, password="pw") as client:
            await client.meterdata()
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                for _ in range(20):
                    await client.meterdata()
                    await client.datalog(last=2)
                gc.collect()
                ours = [o for o in gc.garbage
                        if getattr(o, "__module__", type(o).__module__).startswith(("httpx", "h11", "emu_opcua"))]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
    assert ours == []


async def test_https_meter_behind_tls(tmp_path):
    # A meter behind a TLS proxy: verified against a given context, refused against the
    # system trust store (self-signed), accepted with verification off.
    import ssl

    from cryptography.hazmat.primitives import serialization

    from emu_opcua.opcua.security import generate_certificate

    cert, key = generate_certificate("urn:test:meter", ["127.0.0.1", "localhost"], "meter")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)

    async def handler(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(ok(b'{"over": "tls"}'))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, HOST, 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        trusting = ssl.create_default_context(cafile=str(cert_file))
        async with MeterHttpClient(HOST, port, scheme="https", verify=trusting) as client:
            assert await client.get("/x") == b'{"over": "tls"}'
            assert await client.get("/y") == b'{"over": "tls"}'  # same connection, kept alive
        async with MeterHttpClient(HOST, port, scheme="https", verify=False) as client:
            assert await client.get("/x") == b'{"over": "tls"}'
        async with MeterHttpClient(HOST, port, scheme="https", timeout=2) as client:
            with pytest.raises(MeterUnreachable, match="TLS handshake failed"):
                await client.get("/x")
    finally:
        server.close()
        await server.wait_closed()


async def test_an_endless_answer_is_cut_off(monkeypatch):
    from emu_opcua.clients import http_transport

    monkeypatch.setattr(http_transport, "MAX_BODY", 1 << 20)

    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        try:
            for _ in range(200):  # 12.8 MB, far beyond the limit
                writer.write(b"\0" * 65536)
                await writer.drain()
        except ConnectionError:
            pass

    async with RawServer(handler=handler) as srv:
        with pytest.raises(httpx.RemoteProtocolError, match="larger than 1048576 bytes"):
            await get(srv.port)
