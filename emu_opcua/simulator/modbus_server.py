"""The simulated meter's Modbus TCP server (pymodbus 3.16, non-deprecated SimDevice API).

Holding registers (function 03) at unit id 1, answering from the meter's physics through
``emu_opcua.meter.registers.encode_registers`` and the register map (default:
``RegisterMap.default()``). Decisions where the meter's documentation is silent:

- Refresh: the register image is re-encoded from the physics when a request arrives and
  the last refresh is older than ``refresh_interval`` seconds (default 1 s; a real meter
  refreshes every 5-10 s). No timer task per meter, so 200 meters cost nothing idle.
- Address space: every 100-register page (by 1-based document number, e.g. documents
  9000-9099 = wire 8999-9098) holding a mapped register answers; its unmapped registers
  read as 0, as on devices that expose whole register banks. Anything outside those pages
  is an Illegal Data Address exception (02). So a planned read spanning small gaps works,
  while a read into empty space fails the way most meters fail it.
- Only reads of holding registers are served: any other function code (including writes)
  is an Illegal Function exception (01). Unit ids other than 1 get a Device Failure
  exception (04) from pymodbus (the meter is not a gateway).
- Exception replies follow the Modbus application protocol (V1.1b3, 7): the function
  code echoed with its high bit set, then the exception code. pymodbus answers every
  request it cannot decode with ``80 01`` (function code 0); :class:`SpecDecoder`
  instead answers a known function with an illegal quantity (e.g. FC 3 or 4 reading 0 or
  more than 125 registers) ``0x80|fc 03`` (Illegal Data Value) and an unknown function
  code ``0x80|fc 01`` (Illegal Function).
- Faults: ``delay`` waits before answering; ``drop_modbus`` closes the connection the
  request came on (no reply); ``modbus_disabled`` and ``refuse_connections`` close the
  listener (the owner calls :meth:`MeterModbusServer.stop` / :meth:`start`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from pymodbus.constants import ExcCodes
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from emu_opcua.meter.registers import RegisterMap, encode_registers
from emu_opcua.simulator.faults import Faults

log = logging.getLogger(__name__)

UNIT_ID = 1
PAGE = 100
READ_HOLDING_REGISTERS = 3


def register_pages(register_map: RegisterMap) -> list[tuple[int, int]]:
    """(first wire address, count) of every 100-register document page the map touches."""
    pages: set[int] = set()
    for src in register_map.entries.values():
        for address in range(src.address, src.address + src.count):
            pages.add((address + 1) // PAGE * PAGE - 1)
    return [(max(p, 0), PAGE if p >= 0 else PAGE - 1) for p in sorted(pages)]


class RejectedRequest(ModbusPDU):
    """A request answered with an exception as soon as it is decoded."""

    def __init__(self, function_code: int, exception_code: int) -> None:
        super().__init__()
        self.function_code = function_code
        self.exception_code = exception_code

    async def datastore_update(self, _context, _device_id) -> ExceptionResponse:
        return ExceptionResponse(self.function_code, self.exception_code)


class SpecDecoder(DecodePDU):
    """pymodbus's request decoder, with the specification's exception codes for
    requests it cannot decode (see the module docstring)."""

    def decode(self, frame: bytes) -> ModbusPDU | None:
        function_code = frame[0] if frame else 0
        if function_code & 0x80:  # 128..255 are exception replies, never requests
            return RejectedRequest(function_code, ExcCodes.ILLEGAL_FUNCTION)
        pdu = super().decode(frame)
        if pdu is not None:
            return pdu
        known = function_code in self.pdu_table
        return RejectedRequest(function_code, ExcCodes.ILLEGAL_VALUE if known else ExcCodes.ILLEGAL_FUNCTION)


class MeterModbusServer:
    """One meter's Modbus TCP listener; start/stop as often as faults require."""

    def __init__(
        self,
        values: Callable[[], Mapping[str, float]],
        faults: Callable[[], Faults],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        register_map: RegisterMap | None = None,
        refresh_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._values = values
        self._faults = faults
        self.host = host
        self.port = port  # the bound port once started (fixed from then on)
        self.register_map = register_map or RegisterMap.default()
        self.unit_id = self.register_map.unit_id  # 1 in the default map
        self.refresh_interval = refresh_interval
        self._monotonic = monotonic
        self._last_refresh = float("-inf")
        self._pages = register_pages(self.register_map)
        self._mapped = frozenset(a for src in self.register_map.entries.values()
                                 for a in range(src.address, src.address + src.count))
        self._server: ModbusTcpServer | None = None
        self.requests = 0

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _device(self) -> SimDevice:
        simdata = [SimData(a, count=n, values=0, datatype=DataType.REGISTERS) for a, n in self._pages]
        return SimDevice(self.unit_id, simdata=simdata, action=self._action)

    async def start(self) -> int:
        """Listen (on the same port as before after a stop); returns the port."""
        if self._server is not None:
            return self.port
        server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        server.decoder = SpecDecoder(True)  # each connection's framer takes it from here
        await server.serve_forever(background=True)
        sockets = server.transport.sockets  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        self._server = server
        self._last_refresh = float("-inf")  # a fresh device: its image is all zeros
        return self.port

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    def invalidate(self) -> None:
        """Re-encode the register image at the next request (the state changed now)."""
        self._last_refresh = float("-inf")

    def drop_connections(self) -> int:
        """Close every open connection (the listener stays); returns how many."""
        if self._server is None:
            return 0
        conns = list(self._server.active_connections.values())
        for conn in conns:
            conn.close()
        return len(conns)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values) -> ExcCodes | None:
        self.requests += 1
        if function_code != READ_HOLDING_REGISTERS or set_values:
            return ExcCodes.ILLEGAL_FUNCTION
        faults = self._faults()
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.drop_modbus:
            self.drop_connections()
            return ExcCodes.DEVICE_FAILURE  # never sent: the connection is closed
        if faults.strict_addresses and any(a not in self._mapped for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        now = self._monotonic()
        if now - self._last_refresh >= self.refresh_interval:
            self._last_refresh = now
            for wire, value in encode_registers(self.register_map, self._values()).items():
                offset = wire - start_address
                if 0 <= offset < len(registers):
                    registers[offset] = value
        return None
