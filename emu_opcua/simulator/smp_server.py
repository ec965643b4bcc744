"""The simulated module's mcumgr SMP server on UDP, built on the ``smp`` package's models.

Requests are parsed with ``XxxRequest.loads`` and answered with the matching response
models (error replies with the ``smp`` header model and CBOR, as the device sends
them); the flash behaviour is :class:`~emu_opcua.simulator.mcuboot.ModuleFirmware`.
Faults a real link shows are switchable: datagram loss, late answers, a reboot in the
middle of an upload. A reset is acknowledged first and then handed to ``on_reset`` (the
simulated meter goes off the network for its reboot time).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import attrs
import cbor2
from smp import header as smphdr
from smp import image_management as img
from smp import os_management as os_mgmt

from emu_opcua.simulator.mcuboot import ENOTSUP, ModuleFirmware, ReplyStyle, SmpError, UploadProgress

log = logging.getLogger(__name__)

#: What the module reports as its SMP buffer (mcumgr parameters): one buffer of this many
#: bytes, header included. The Go mcumgr of the manual sends 512-byte chunks.
BUF_SIZE = 1024
BUF_COUNT = 4

_G = smphdr.GroupId
_IMG = smphdr.CommandId.ImageManagement
_OS = smphdr.CommandId.OSManagement


@attrs.define
class SmpFaults:
    """Switches of the SMP link; ``random`` is seeded for repeatable tests."""

    drop_requests: float = 0.0  # probability a request datagram is lost
    drop_replies: float = 0.0  # probability a reply datagram is lost
    reply_delay: float = 0.0  # seconds every reply is held back (late answers)
    reboot_after_upload_bytes: int | None = None  # reboot once an upload passes this offset
    random: random.Random = attrs.field(factory=lambda: random.Random(1337))


def _frame(op: smphdr.OP, version: smphdr.Version, group: int, sequence: int, command: int, body: dict) -> bytes:
    payload = cbor2.dumps(body, canonical=True)
    header = smphdr.Header(op=op, version=version, flags=smphdr.Flag(0), length=len(payload),
                           group_id=group, sequence=sequence, command_id=command)
    return bytes(header) + payload


class SmpServer(asyncio.DatagramProtocol):
    """One simulated module's SMP endpoint."""

    def __init__(self, firmware: ModuleFirmware, *, style: ReplyStyle = ReplyStyle.V2,
                 faults: SmpFaults | None = None, on_reset: Callable[[str], None] | None = None) -> None:
        self.firmware = firmware
        self.style = style
        self.faults = faults or SmpFaults()
        self.on_reset = on_reset
        self.online = True  # False while the module reboots: datagrams are not answered
        self.requests = 0  # datagrams handled (after loss), for tests and benchmarks
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        faults = self.faults
        if not self.online or (faults.drop_requests and faults.random.random() < faults.drop_requests):
            return
        self.requests += 1
        try:
            reply = self.handle(data)
        except Exception:  # a malformed request must not kill the module's server
            log.exception("SMP request could not be handled: %s", data[:32].hex())
            return
        if reply is None:
            return
        if faults.drop_replies and faults.random.random() < faults.drop_replies:
            return
        if faults.reply_delay:
            asyncio.get_running_loop().call_later(faults.reply_delay, self._send, reply, addr)
        else:
            self._send(reply, addr)

    def _send(self, reply: bytes, addr) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    # --- requests -------------------------------------------------------------------------
    def handle(self, data: bytes) -> bytes | None:
        header = smphdr.Header.loads(data[:smphdr.Header.SIZE])
        key = (header.group_id, header.command_id, header.op)
        seq, version = header.sequence, header.version
        if key == (_G.OS_MANAGEMENT, _OS.MCUMGR_PARAMETERS, smphdr.OP.READ):
            return os_mgmt.MCUMgrParametersReadResponse(sequence=seq, version=version, buf_size=BUF_SIZE,
                                                         buf_count=BUF_COUNT).BYTES
        if key == (_G.OS_MANAGEMENT, _OS.ECHO, smphdr.OP.WRITE):
            request = os_mgmt.EchoWriteRequest.loads(data)
            return os_mgmt.EchoWriteResponse(sequence=seq, version=version, r=request.d).BYTES
        if key == (_G.OS_MANAGEMENT, _OS.RESET, smphdr.OP.WRITE):
            os_mgmt.ResetWriteRequest.loads(data)
            reply = os_mgmt.ResetWriteResponse(sequence=seq, version=version).BYTES
            asyncio.get_running_loop().call_soon(self.reboot)  # the answer leaves first
            return reply
        if key == (_G.IMAGE_MANAGEMENT, _IMG.STATE, smphdr.OP.READ):
            return img.ImageStatesReadResponse(sequence=seq, version=version,
                                               images=self.firmware.image_states()).BYTES
        if key == (_G.IMAGE_MANAGEMENT, _IMG.STATE, smphdr.OP.WRITE):
            request = img.ImageStatesWriteRequest.loads(data)
            outcome = (self.firmware.confirm(request.hash) if request.confirm
                       else self.firmware.test(request.hash))
            if outcome is not None:
                return self._error(header, outcome)
            return img.ImageStatesWriteResponse(sequence=seq, version=version,
                                                images=self.firmware.image_states()).BYTES
        if key == (_G.IMAGE_MANAGEMENT, _IMG.UPLOAD, smphdr.OP.WRITE):
            request = img.ImageUploadWriteRequest.loads(data)
            outcome = self.firmware.upload(request.off, request.data, length=request.len, sha=request.sha,
                                           image=request.image)
            if isinstance(outcome, SmpError):
                return self._error(header, outcome)
            limit = self.faults.reboot_after_upload_bytes
            if limit is not None and outcome.off >= limit:
                self.faults.reboot_after_upload_bytes = None
                asyncio.get_running_loop().call_soon(self.reboot)
                return None  # the reply is lost with the reboot
            return self._upload_reply(header, outcome)
        if key == (_G.IMAGE_MANAGEMENT, _IMG.ERASE, smphdr.OP.WRITE):
            request = img.ImageEraseRequest.loads(data)
            outcome = self.firmware.erase(request.slot)
            if outcome is not None:
                return self._error(header, outcome)
            if self.style is ReplyStyle.V1:  # the 2021 generation: success as {"rc": 0}
                return _frame(smphdr.OP.WRITE_RSP, version, header.group_id, seq, header.command_id, {"rc": 0})
            return img.ImageEraseResponse(sequence=seq, version=version).BYTES
        return self._error(header, SmpError(ENOTSUP, f"group {header.group_id} command {header.command_id}"))

    def _upload_reply(self, header: smphdr.Header, progress: UploadProgress) -> bytes:
        fields = {"off": progress.off}
        if progress.match is not None:
            fields["match"] = progress.match
        if self.style is ReplyStyle.V1:
            fields["rc"] = 0
        return img.ImageUploadWriteResponse(sequence=header.sequence, version=header.version, **fields).BYTES

    def _error(self, header: smphdr.Header, error: SmpError) -> bytes:
        log.info("SMP refused (rc %d): %s", error.rc, error.reason)
        op = smphdr.OP.WRITE_RSP if header.op == smphdr.OP.WRITE else smphdr.OP.READ_RSP
        if self.style is ReplyStyle.V1:
            # (an upload error then parses as a success reply with ``rc`` set)
            body = {"rc": error.rc}
        else:
            body = {"err": {"group": int(header.group_id), "rc": error.rc}}
        return _frame(op, header.version, header.group_id, header.sequence, header.command_id, body)

    # --- reboot ---------------------------------------------------------------------------
    def reboot(self) -> None:
        outcome = self.firmware.reset()
        log.info("module reboot: %s", outcome)
        if self.on_reset is not None:
            self.on_reset(outcome)


async def start_smp_server(server: SmpServer, host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.DatagramTransport, int]:
    """Bind ``server`` on UDP; returns the transport and the bound port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=(host, port))
    return transport, transport.get_extra_info("sockname")[1]
