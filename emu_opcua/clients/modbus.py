"""Modbus TCP client for one meter: planned block reads, decoded (pymodbus).

One TCP connection per meter, opened lazily by the first read. The client never retries
and never reconnects in the background (pymodbus's own retries and reconnect task are
switched off): after a timeout or a dropped connection it closes the connection and
raises; the next call connects afresh. *When* to call again is the caller's policy (see
:class:`emu_opcua.clients.backoff.Backoff`). The reasons, from the field: pymodbus's
automatic reconnect is unreliable after a device drops the connection, and after a
timeout the transaction ids can be out of step, so a fresh connection is the safe state.

Errors (translated at the boundary):

- cannot connect, connection dropped -> :class:`MeterUnreachable`
- no answer within ``timeout`` -> :class:`MeterTimeout`
- Modbus exception response (illegal address, device busy...) -> :class:`ModbusProtocolError`
  naming the function, address and count; the connection stays open (the device answered).

What to read comes from :func:`emu_opcua.meter.registers.plan_reads` (fewest requests
over the register map) and how to decode it from :func:`decode_registers`; both are
computed once per set of quantity codes and cached (:class:`RegisterDecoder`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from emu_opcua.errors import MeterTimeout, MeterUnreachable, ModbusProtocolError
from emu_opcua.meter.registers import (
    DEFAULT_MAX_GAP,
    MAX_READ_COUNT,
    ReadBlock,
    RegisterDecoder,
    RegisterMap,
    plan_reads,
)

__all__ = ["MeterModbusClient", "MODBUS_EXCEPTIONS"]

log = logging.getLogger(__name__)

#: Modbus exception codes (Modbus Application Protocol v1.1b3, section 7).
MODBUS_EXCEPTIONS: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class _Dropped(MeterUnreachable):
    """The meter closed the connection a request was on."""


class _Plan:
    """What to read for one set of codes, and how to decode it."""

    __slots__ = ("blocks", "decoder")

    def __init__(self, register_map: RegisterMap, blocks: tuple[ReadBlock, ...]) -> None:
        self.blocks = blocks
        self.decoder = RegisterDecoder(register_map, blocks)


#: How many unmapped registers a merged read may span, boldest first. The default map
#: needs 3 reads at the first level, 8 at the last. A meter that answers "illegal data
#: address" to a merged read makes its client step down a level for good.
GAP_LEVELS: tuple[int, ...] = (MAX_READ_COUNT, DEFAULT_MAX_GAP, 0)
ILLEGAL_DATA_ADDRESS = 2


class MeterModbusClient:
    """The Modbus TCP interface of one meter. Use as ``async with MeterModbusClient(...)``.

    ``register_map`` defaults to :meth:`RegisterMap.default`; ``unit_id`` defaults to the
    map's. ``timeout`` bounds connecting and each request.
    """

    def __init__(self, host: str, port: int = 502, *, register_map: RegisterMap | None = None,
                 unit_id: int | None = None, timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.register_map = register_map if register_map is not None else RegisterMap.default()
        self.unit_id = self.register_map.unit_id if unit_id is None else unit_id
        self.timeout = timeout
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        self._plans: dict[frozenset[str] | None, _Plan] = {}
        self._gap_level = 0  # index into GAP_LEVELS: how boldly reads are merged
        self._where = f"modbus://{host}:{port} unit {self.unit_id}"
        self._busy = False  # a request is waiting for its answer

    def __repr__(self) -> str:
        return f"MeterModbusClient({self.host!r}, {self.port})"

    async def __aenter__(self) -> MeterModbusClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def codes(self) -> tuple[str, ...]:
        """Every quantity code the register map can read."""
        return tuple(self.register_map.entries)

    # --- connection ----------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the connection now (reads do it lazily); raises :class:`MeterUnreachable`."""
        async with self._lock:
            await self._ensure_connected()

    async def close(self) -> None:
        """Close the connection; the next read reconnects."""
        self._drop()

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        client = self._client
        if client is not None and client.connected:
            return client
        self._drop()
        client = AsyncModbusTcpClient(
            self.host, port=self.port, name=f"{self.host}:{self.port}",
            timeout=self.timeout, retries=0,
            # 0 disables pymodbus's background reconnect task (3.16): we reconnect on
            # the next call, at the caller's pace.
            reconnect_delay=0, reconnect_delay_max=0,
        )
        try:
            ok = await client.connect()
        except (OSError, ModbusException, asyncio.TimeoutError) as exc:  # pragma: no cover - pymodbus returns False
            client.close()
            raise MeterUnreachable(f"{self._where}: cannot connect ({exc})") from exc
        if not ok or not client.connected:
            client.close()
            raise MeterUnreachable(
                f"{self._where}: cannot connect (refused, unreachable or no answer within {self.timeout:g} s)")
        # Fail a request in flight at once when the meter drops the connection, instead
        # of waiting for the timeout.
        client.ctx.trace_connect = lambda connected: self._on_connection_change(client, connected)
        self._client = client
        return client

    # --- reading -------------------------------------------------------------------------
    def plan(self, codes: Iterable[str] | None = None) -> tuple[ReadBlock, ...]:
        """The blocks read for ``codes`` (all of the map's codes when None)."""
        return self._plan_for(codes).blocks

    def _plan_for(self, codes: Iterable[str] | None) -> _Plan:
        key = None if codes is None else frozenset(codes)
        plan = self._plans.get(key)
        if plan is None:
            if key is None:
                register_map = self.register_map
            else:
                unknown = key - self.register_map.entries.keys()
                if unknown:
                    raise KeyError(f"not in the register map: {', '.join(sorted(unknown))}")
                register_map = self.register_map.with_entries(
                    {c: s for c, s in self.register_map.entries.items() if c in key})
            plan = _Plan(register_map, tuple(plan_reads(register_map, max_gap=GAP_LEVELS[self._gap_level])))
            self._plans[key] = plan
        return plan

    async def read_values(self, codes: Iterable[str] | None = None) -> dict[str, float]:
        """Read and decode the quantities ``codes`` (every mapped one when None).

        Values are in each quantity's served unit (kW, kWh...), keyed by quantity code.
        """
        while True:
            plan = self._plan_for(codes)
            try:
                blocks = await self.read_blocks(plan.blocks)
            except ModbusProtocolError as exc:
                if exc.exception_code != ILLEGAL_DATA_ADDRESS or self._gap_level == len(GAP_LEVELS) - 1:
                    raise
                self._gap_level += 1
                self._plans.clear()
                log.info("%s: merged read refused (%s); reading with at most %d unmapped registers per read",
                         self._where, exc, GAP_LEVELS[self._gap_level])
                continue
            return plan.decoder.decode(list(blocks.values()))

    async def read_blocks(self, blocks: Sequence[ReadBlock]) -> dict[int, list[int]]:
        """Read holding registers for each block: start address -> registers."""
        async with self._lock:
            out: dict[int, list[int]] = {}
            for i, block in enumerate(blocks):
                if i == 0:
                    out[block.address] = await self._first_read(block.address, block.count)
                else:
                    assert self._client is not None
                    out[block.address] = await self._read(self._client, block.address, block.count)
            return out

    async def read_registers(self, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers from wire address ``address`` (function 03)."""
        async with self._lock:
            return await self._first_read(address, count)

    async def _first_read(self, address: int, count: int) -> list[int]:
        """The first request of a call. On a kept-open connection that the meter closed
        while it was idle (the close not yet noticed), reconnect and send it once more,
        as HTTP clients do for stale keep-alive connections; a read is idempotent."""
        reused = self._client is not None and self._client.connected
        client = await self._ensure_connected()
        if not reused:
            return await self._read(client, address, count)
        try:
            return await self._read(client, address, count)
        except _Dropped:
            log.debug("%s: kept-open connection was closed by the meter; reconnecting", self._where)
            client = await self._ensure_connected()
            return await self._read(client, address, count)

    async def _read(self, client: AsyncModbusTcpClient, address: int, count: int) -> list[int]:
        what = f"{self._where}: reading {count} holding register(s) at address {address}"
        self._busy = True
        try:
            response = await client.read_holding_registers(address, count=count, device_id=self.unit_id)
        except ConnectionException as exc:
            self._drop()
            raise _Dropped(f"{what}: connection dropped") from exc
        except ModbusIOException as exc:
            # With retries=0 this is a request that got no answer in time (or whose
            # connection went away while waiting): start afresh on the next call.
            dropped = not client.connected
            self._drop()
            if dropped:
                raise _Dropped(f"{what}: connection dropped") from exc
            raise MeterTimeout(f"{what}: no answer within {self.timeout:g} s") from exc
        except asyncio.TimeoutError as exc:
            self._drop()
            raise MeterTimeout(f"{what}: no answer within {self.timeout:g} s") from exc
        except (OSError, ModbusException) as exc:
            self._drop()
            raise ModbusProtocolError(f"{what}: {exc}") from exc
        finally:
            self._busy = False
        if response.isError():
            code = getattr(response, "exception_code", 0)
            name = MODBUS_EXCEPTIONS.get(code, "unknown exception")
            raise ModbusProtocolError(f"{what}: Modbus exception {code} ({name})", exception_code=code)
        registers = response.registers
        if len(registers) != count:
            self._drop()
            raise ModbusProtocolError(f"{what}: got {len(registers)} registers instead of {count}")
        return registers

    def _on_connection_change(self, client: AsyncModbusTcpClient, connected: bool) -> None:
        """pymodbus ``trace_connect`` hook: fail the request in flight when the meter
        drops the connection (pymodbus itself would wait for the timeout)."""
        if connected or not self._busy or client is not self._client:
            return
        future = getattr(client.ctx, "response_future", None)
        if future is not None and not future.done():
            future.set_exception(ConnectionException("connection dropped by the meter"))
