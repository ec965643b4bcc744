"""MeterSmpClient: mcumgr SMP over UDP to the meter's TCP module, on smpclient.

smpclient 7.3 is the wire layer; this adapter adds what a field link needs and
smpclient leaves out (each measured against it, see tests/clients/test_smp_client.py):

- the port is pinned per meter (smpclient's UDP transport always dials 1337);
- the receive queue is emptied before each request and replies with another sequence
  number are skipped, so one late answer does not leave every later reply one behind
  (smpclient issue #104);
- a request without an answer is sent again, after a retransmission timeout that
  follows the measured round trip (RFC 6298 in small: a lost datagram costs a few
  round trips, not a whole timeout); upload chunks name their offset, so a retransmit
  is harmless (the module answers with the offset it expects), and an upload resumes
  from the module's offset;
- v1 and v2 reply styles: the 2021 generation reports upload errors inside a success
  reply (``rc``) and a successful erase as an error with ``rc`` 0;
- errors become :mod:`emu_opcua.errors` classes with the module's code kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from smp import header as smphdr
from smpclient import SMPClient
from smpclient.generics import error, success
from smpclient.requests.image_management import ImageErase, ImageStatesRead, ImageStatesWrite, ImageUploadWrite
from smpclient.requests.os_management import EchoWrite, ResetWrite
from smpclient.transport.udp import SMPUDPTransport

from emu_opcua.firmware.update import SlotState
from emu_opcua.errors import MeterTimeout, MeterUnreachable, ParseError, SmpCommandRefused

log = logging.getLogger(__name__)

DEFAULT_PORT = 1337
#: Link MTU the datagrams are sized for: 628 - 28 bytes of IP/UDP = 600-byte datagrams,
#: what the manual's Go mcumgr sends (512-byte chunks) and so what meters are proven
#: to take. Larger datagrams are not proven on these modules.
DEFAULT_MTU = 628


class _PinnedUdpTransport(SMPUDPTransport):
    """smpclient's UDP transport, dialling the meter's configured port."""

    def __init__(self, port: int, mtu: int) -> None:
        super().__init__(mtu=mtu)
        self._port = port

    async def connect(self, address: str, timeout_s: float, port: int | None = None) -> None:  # noqa: ARG002
        await super().connect(address, timeout_s, self._port)

    def drain(self) -> int:
        """Drop datagrams waiting in the receive queue (late answers to earlier requests)."""
        queue = self._client._protocol.receive_queue
        dropped = 0
        while not queue.empty():
            queue.get_nowait()
            dropped += 1
        return dropped

    def pending_error(self) -> Exception | None:
        queue = self._client._protocol.error_queue
        error_ = None
        while not queue.empty():
            error_ = queue.get_nowait()
        return error_


class _Client(SMPClient):
    """SMPClient whose requests drain first, skip stale replies and retransmit."""

    def __init__(self, transport: _PinnedUdpTransport, address: str, timeout_s: float, retries: int,
                 min_rto: float) -> None:
        super().__init__(transport, address, timeout_s)
        self._pinned = transport
        self.retries = retries
        self.min_rto = min_rto
        self.retransmits = 0  # requests sent again after a timeout (diagnostics, benchmarks)
        self._srtt: float | None = None  # smoothed round-trip time of answered first sends

    def _rto(self, timeout_s: float, attempt: int) -> float:
        """How long to wait before sending again: TCP's idea (RFC 6298) in small. A lost
        datagram costs a few round trips, not a whole timeout; doubled per retry, never
        above ``timeout_s``; no estimate yet: ``timeout_s``."""
        if self._srtt is None:
            return timeout_s
        return min(timeout_s, max(self.min_rto, 4 * self._srtt) * 2 ** attempt)

    async def request(self, request, timeout_s: float | None = None):
        timeout_s = timeout_s if timeout_s is not None else self._timeout_s
        attempts = self.retries + 1
        sequence = request.header.sequence
        loop = asyncio.get_running_loop()
        for attempt in range(attempts):
            dropped = self._pinned.drain()
            if dropped:
                log.debug("dropped %d late SMP replies before %s", dropped, type(request).__name__)
            sent = loop.time()
            await self._pinned.send(request.BYTES)
            try:
                async with asyncio.timeout(self._rto(timeout_s, attempt) if attempt < attempts - 1 else timeout_s):
                    while True:
                        frame = await self._pinned.receive()
                        header = smphdr.Header.loads(frame[:smphdr.Header.SIZE])
                        if header.sequence == sequence:
                            break
                        # a late answer to an earlier request: ours may still come
                        log.debug("skipped an SMP reply with sequence %d (waiting for %d)",
                                  header.sequence, sequence)
            except TimeoutError:
                problem = self._pinned.pending_error()
                if isinstance(problem, ConnectionRefusedError):
                    raise MeterUnreachable(f"SMP: {self._address} refused (ICMP port unreachable)") from None
                if attempt + 1 < attempts:
                    self.retransmits += 1
                    log.debug("SMP %s timed out, sending again (%d/%d)", type(request).__name__,
                              attempt + 1, self.retries)
                    continue
                raise MeterTimeout(f"SMP {type(request).__name__}: no answer from {self._address} "
                                   f"after {attempts} tries (the last of {timeout_s:g} s)") from None
            if attempt == 0:  # Karn: only answers to a first send measure the round trip
                rtt = loop.time() - sent
                self._srtt = rtt if self._srtt is None else 0.875 * self._srtt + 0.125 * rtt
            return _parse(request, frame)
        raise AssertionError("unreachable")


def _parse(request, frame: bytes):
    """The reply as the request's success, v1 error or v2 error model (smpclient's order)."""
    problems = []
    for model in (request._Response, request._ErrorV1, request._ErrorV2):
        try:
            return model.loads(frame)
        except (ValidationError, ValueError, TypeError) as exc:
            problems.append(f"{model.__name__}: {exc.__class__.__name__}")
    raise ParseError(f"SMP {type(request).__name__}: reply not understood ({'; '.join(problems)}): "
                     f"{frame[:64].hex()}")


def _check(response: Any, command: str) -> Any:
    """The success reply, or :class:`SmpCommandRefused` with the module's code (v1 and v2)."""
    if error(response):
        err = getattr(response, "err", None)
        if err is not None:  # v2
            raise SmpCommandRefused(f"SMP {command} refused: rc {int(err.rc)} (group {int(err.group)})",
                                    command=command, rc=int(err.rc), group=int(err.group))
        rc = int(response.rc)
        if rc == 0:  # v1: a successful erase (and others) answered as an "error" with rc 0
            return response
        reason = f" ({response.rsn})" if getattr(response, "rsn", None) else ""
        raise SmpCommandRefused(f"SMP {command} refused: rc {rc}{reason}", command=command, rc=rc)
    if success(response):
        rc = getattr(response, "rc", None)
        if rc:  # v1: an upload error inside a success reply
            raise SmpCommandRefused(f"SMP {command} refused: rc {rc}", command=command, rc=int(rc))
        return response
    raise ParseError(f"SMP {command}: unexpected reply {response!r}")


class MeterSmpClient:
    """One meter's TCP module over SMP/UDP. ``async with MeterSmpClient(host, port):``."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, mtu: int = DEFAULT_MTU, timeout: float = 2.5,
                 retries: int = 5, first_chunk_timeout: float = 20.0, min_rto: float = 0.05) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.first_chunk_timeout = first_chunk_timeout  # the first chunk may erase slot 1 first
        self._transport = _PinnedUdpTransport(port, mtu)
        self._client = _Client(self._transport, host, timeout, retries, min_rto)
        self._connected = False

    @property
    def retransmits(self) -> int:
        return self._client.retransmits

    async def __aenter__(self) -> MeterSmpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        try:
            # only the socket: SMPClient.connect would also ask the module's buffer
            # size, which the UDP transport ignores (the MTU sizes the datagrams)
            await self._transport.connect(self.host, self.timeout)
        except OSError as exc:
            raise MeterUnreachable(f"SMP {self.host}:{self.port}: {exc}") from exc
        self._connected = True

    async def close(self) -> None:
        if self._connected:
            self._connected = False
            await self._client.disconnect()

    async def _request(self, request, command: str, timeout: float | None = None):
        return _check(await self._client.request(request, timeout), command)

    # --- commands -------------------------------------------------------------------------
    async def echo(self, text: str = "emu-opcua") -> str:
        return (await self._request(EchoWrite(d=text), "echo")).r

    async def image_states(self) -> tuple[SlotState, ...]:
        response = await self._request(ImageStatesRead(), "image list")
        return tuple(_slot_state(s) for s in response.images)

    async def test(self, image_hash: bytes) -> tuple[SlotState, ...]:
        response = await self._request(ImageStatesWrite(hash=image_hash), "image test")
        return tuple(_slot_state(s) for s in getattr(response, "images", ()) or ())

    async def confirm(self, image_hash: bytes | None = None) -> tuple[SlotState, ...]:
        response = await self._request(ImageStatesWrite(hash=image_hash, confirm=True), "image confirm")
        return tuple(_slot_state(s) for s in getattr(response, "images", ()) or ())

    async def erase(self, slot: int = 1) -> None:
        await self._request(ImageErase(slot=slot), "image erase")

    async def reset(self) -> None:
        """Ask the module to reboot. A module that reboots before its answer leaves is
        fine: the caller waits for it to come back, whatever the answer."""
        try:
            await self._request(ResetWrite(), "reset", timeout=self.timeout)
        except MeterTimeout:
            log.info("SMP reset: no answer from %s (rebooted before answering?)", self.host)

    async def upload(self, image: bytes, *, progress: Callable[[int, int], None] | None = None) -> None:
        """Upload ``image`` into slot 1, resuming from the module's offset; a chunk that
        gets no answer is sent again (``retries`` times) before :class:`MeterTimeout`."""
        total = len(image)
        sha = hashlib.sha256(image).digest()  # names the upload session (resume), not the image
        offset = 0
        while True:
            if offset == 0:  # the first chunk announces the upload (again, after a reboot)
                request = ImageUploadWrite(off=0, data=b"", image=0, len=total, sha=sha)
                timeout = self.first_chunk_timeout
            else:
                request = ImageUploadWrite(off=offset, data=b"")
                timeout = None
            response = await self._request(self._client._maximize_upload_packet(request, image),
                                           "image upload", timeout=timeout)
            offset = _offset(response)
            if progress is not None:
                progress(offset, total)
            if offset >= total:
                break
        if getattr(response, "match", None) is False:
            raise SmpCommandRefused("SMP image upload: the module reports the data does not match its sha",
                                    command="image upload", rc=-1)


def _offset(response) -> int:
    off = getattr(response, "off", None)
    if off is None:
        raise ParseError(f"SMP image upload: reply without an offset: {response!r}")
    return int(off)


def _slot_state(state) -> SlotState:
    return SlotState(
        slot=state.slot, version=state.version, hash=bytes(state.hash) if state.hash is not None else None,
        active=bool(state.active), confirmed=bool(state.confirmed), pending=bool(state.pending),
        permanent=bool(state.permanent), bootable=bool(state.bootable),
    )
