"""The Modbus TCP interface over real sockets, against meterdata.json."""

import asyncio
import socket
import struct

import httpx
import pytest
from pymodbus.client import AsyncModbusTcpClient

from emu_opcua.meter.crosscheck import cross_check
from emu_opcua.meter.meterdata import parse_meterdata
from emu_opcua.meter.registers import RegisterMap, decode_registers, plan_reads
from sim_helpers import base_url

RMAP = RegisterMap.default()


@pytest.fixture
async def modbus(meter):
    client = AsyncModbusTcpClient("127.0.0.1", port=meter.modbus_port, timeout=3, retries=0)
    assert await client.connect()
    yield client
    client.close()


async def read_all(client) -> dict[str, float]:
    blocks = {}
    for block in plan_reads(RMAP):
        rr = await client.read_holding_registers(block.address, count=block.count, device_id=1)
        assert not rr.isError(), rr
        blocks[block.address] = rr.registers
    return decode_registers(RMAP, blocks)


async def test_modbus_values_match_meterdata(meter, modbus):
    values = await read_all(modbus)
    async with httpx.AsyncClient() as http:
        data = parse_meterdata((await http.get(base_url(meter) + "/meterdata.json")).content)
    result = cross_check(values, data, serial=meter.serial)
    assert result.ok, result.summary()
    assert result.compared >= 15
    assert values["meter_serial"] == 22350000
    assert values["power_fail_count"] == meter.physics.power_fail_count
    assert values["active_energy_import_total"] == data.values["active_energy_import_total"]
    assert values["active_power_total"] == pytest.approx(data.values["active_power_total"], abs=0.0005)


async def test_registers_refresh_from_the_physics(meter, modbus, monotonic):
    first = await read_all(modbus)
    monotonic.advance(3600)  # an hour of meter time later
    second = await read_all(modbus)
    assert second["active_energy_import_total"] + second["active_energy_export_total"] > (
        first["active_energy_import_total"] + first["active_energy_export_total"])
    assert second["active_power_total"] != first["active_power_total"]


async def test_refresh_interval_holds_values(make_fleet, monotonic):
    fleet = await make_fleet(refresh_interval=5.0)
    client = AsyncModbusTcpClient("127.0.0.1", port=fleet.meters[0].modbus_port, timeout=3, retries=0)
    await client.connect()
    try:
        a = await read_all(client)
        monotonic.advance(2.0)
        b = await read_all(client)
        assert a == b  # within the refresh interval: the same image
        monotonic.advance(600.0)
        c = await read_all(client)
        assert c != a
    finally:
        client.close()


async def test_unmapped_registers(modbus):
    # inside a page that holds mapped registers: zeros
    rr = await modbus.read_holding_registers(9007, count=2, device_id=1)
    assert rr.registers == [0, 0]
    rr = await modbus.read_holding_registers(6050, count=10, device_id=1)
    assert rr.registers == [0] * 10
    # far from any mapped register: Illegal Data Address
    rr = await modbus.read_holding_registers(100, count=2, device_id=1)
    assert rr.isError() and rr.exception_code == 2
    rr = await modbus.read_holding_registers(7500, count=2, device_id=1)
    assert rr.isError() and rr.exception_code == 2


async def test_only_holding_registers_are_served(modbus):
    rr = await modbus.read_input_registers(8999, count=2, device_id=1)
    assert rr.isError() and rr.exception_code == 1
    rr = await modbus.write_register(8999, 1, device_id=1)
    assert rr.isError() and rr.exception_code == 1


def _raw_request(port: int, pdu: bytes, transaction: int) -> bytes:
    """One Modbus TCP request as bytes on a plain socket; the reply's bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(struct.pack(">HHHB", transaction, 0, len(pdu) + 1, 1) + pdu)
        reply = b""
        while len(reply) < 7 or len(reply) < 6 + struct.unpack(">H", reply[4:6])[0]:
            chunk = s.recv(256)
            if not chunk:
                break
            reply += chunk
        return reply


@pytest.mark.parametrize("pdu, expected", [
    pytest.param("03 2327 0000", "83 03", id="FC3 quantity 0"),
    pytest.param("03 2327 007e", "83 03", id="FC3 quantity 126"),
    pytest.param("04 2327 0000", "84 03", id="FC4 quantity 0"),
    pytest.param("04 2327 00c8", "84 03", id="FC4 quantity 200"),
    pytest.param("04 2327 0002", "84 01", id="FC4 not served"),
    pytest.param("41 0000", "c1 01", id="unknown FC 0x41"),
    pytest.param("64", "e4 01", id="unknown FC 100"),
    pytest.param("06 2327 0001", "86 01", id="FC6 write"),
    pytest.param("03 0063 0002", "83 02", id="FC3 address outside the map"),
])
async def test_exception_replies_follow_the_specification(meter, pdu, expected):
    transaction = 0x1234
    reply = await asyncio.to_thread(_raw_request, meter.modbus_port, bytes.fromhex(pdu), transaction)
    body = bytes.fromhex(expected)
    assert reply == struct.pack(">HHHB", transaction, 0, len(body) + 1, 1) + body


def _rejected_then_good(port: int) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(bytes.fromhex("0001 0000 0006 01 03 2327 0000"))
        first = s.recv(64)
        s.sendall(bytes.fromhex("0002 0000 0006 01 03 1387 0002"))  # the serial, 2 registers
        return first, s.recv(64)


async def test_a_good_raw_request_after_a_rejected_one(meter):
    first, reply = await asyncio.to_thread(_rejected_then_good, meter.modbus_port)
    assert first == bytes.fromhex("0001 0000 0003 01 83 03")
    assert reply[:9] == bytes.fromhex("0002 0000 0007 01 03 04")
    assert struct.unpack(">I", reply[9:13])[0] == int(meter.serial)
