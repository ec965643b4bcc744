"""MeterModbusClient against the simulator's Modbus TCP server on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest

from emu_opcua.clients.modbus import MeterModbusClient
from emu_opcua.errors import MeterTimeout, MeterUnreachable, ModbusProtocolError
from emu_opcua.meter.catalogue import BY_CODE, ModbusSource
from emu_opcua.meter.crosscheck import DEFAULT_TOLERANCE, cross_check
from emu_opcua.meter.meterdata import format_meterdata, parse_meterdata
from emu_opcua.meter.registers import RegisterMap

HOST = "127.0.0.1"


def client_for(meter, **kwargs) -> MeterModbusClient:
    kwargs.setdefault("timeout", 2.0)
    return MeterModbusClient(HOST, meter.modbus_port, **kwargs)


async def test_read_values_agree_with_meterdata(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    http_view = parse_meterdata(format_meterdata(meter.meterdata()))  # what the meter serves
    async with client_for(meter) as modbus:
        values = await modbus.read_values()
    assert set(values) == set(RegisterMap.default().entries)
    compared = 0
    for code, value in values.items():
        if code in http_view.values:
            tol = DEFAULT_TOLERANCE[BY_CODE[code].group]
            assert abs(value - http_view.values[code]) <= tol.allowed(http_view.values[code]), code
            compared += 1
    assert compared >= 20
    assert values["meter_serial"] == int(meter.serial)
    result = cross_check(values, http_view, serial=meter.serial)
    assert result.ok, result.summary()


async def test_a_subset_reads_only_its_blocks(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    codes = ("active_power_total", "voltage_l1", "frequency")
    async with client_for(meter) as modbus:
        full_plan = modbus.plan()
        plan = modbus.plan(codes)
        values = await modbus.read_values(codes)
        again = await modbus.read_values(list(codes))  # same set, cached plan
    assert set(values) == set(codes) == set(again)
    assert len(plan) < len(full_plan)
    expected = meter.meterdata().values
    assert values["voltage_l1"] == pytest.approx(expected["voltage_l1"], rel=1e-6)
    assert values["frequency"] == pytest.approx(expected["frequency"], rel=1e-6)


async def test_unknown_code_is_rejected(start_fleet):
    fleet = await start_fleet()
    async with client_for(fleet.meters[0]) as modbus:
        with pytest.raises(KeyError):
            await modbus.read_values(["no_such_quantity"])


async def test_exception_response_names_the_address(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    # a register where the meter has nothing: Illegal Data Address (02)
    bad_map = RegisterMap.default().with_entries(
        {**RegisterMap.default().entries, "power_fail_count": ModbusSource(29999, "uint16", None)})
    async with client_for(meter, register_map=bad_map) as modbus:
        with pytest.raises(ModbusProtocolError) as info:
            await modbus.read_values(["power_fail_count"])
        assert "address 29999" in str(info.value)
        assert "exception 2" in str(info.value)
        # the meter answered: the connection stays usable
        assert modbus.connected
        assert (await modbus.read_values(["frequency"]))["frequency"] > 45


async def test_dropped_connection_then_reconnect(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    async with client_for(meter) as modbus:
        assert "frequency" in await modbus.read_values()
        await meter.drop_modbus_connections()
        with pytest.raises(MeterUnreachable):
            await modbus.read_values()
        assert not modbus.connected
        await meter.drop_modbus_connections(False)
        values = await modbus.read_values()  # the next call reconnects
        assert values["meter_serial"] == int(meter.serial)
        assert modbus.connected


async def test_connection_closed_while_idle_is_reopened(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    async with client_for(meter) as modbus:
        await modbus.read_values(["frequency"])
        assert meter.modbus.drop_connections() == 1
        values = await modbus.read_values(["frequency", "meter_serial"])
    assert values["meter_serial"] == int(meter.serial)


async def test_timeout_then_recovery(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    async with client_for(meter, timeout=0.2) as modbus:
        await modbus.connect()
        await meter.slow_responses(30.0)
        with pytest.raises(MeterTimeout):
            await modbus.read_values(["frequency"])
        assert not modbus.connected  # dropped after the timeout
        await meter.slow_responses(0.0)
        values = await modbus.read_values(["frequency", "meter_serial"])
    assert values["meter_serial"] == int(meter.serial)


async def test_modbus_disabled(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    await meter.disable_modbus()
    assert meter.status().modbus_enabled is False
    async with client_for(meter) as modbus:
        with pytest.raises(MeterUnreachable):
            await modbus.read_values()
        await meter.disable_modbus(False)
        assert (await modbus.read_values(["meter_serial"]))["meter_serial"] == int(meter.serial)


async def test_nothing_listening_is_unreachable():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    async with MeterModbusClient(HOST, port, timeout=2.0) as modbus:
        with pytest.raises(MeterUnreachable):
            await modbus.read_values()
        with pytest.raises(MeterUnreachable):  # and again: no background reconnect state
            await modbus.connect()


async def test_merged_reads_step_down_when_the_meter_refuses_unmapped_registers(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    async with client_for(meter) as modbus:
        wide = modbus.plan()
        relaxed = await modbus.read_values()
        await meter.apply_faults(strict_addresses=True)
        strict = await modbus.read_values()  # steps down until no read touches a gap
        strict_plan = modbus.plan()
        again = await modbus.read_values()
    assert len(strict_plan) > len(wide)
    mapped = {a for s in RegisterMap.default().entries.values() for a in range(s.address, s.address + s.count)}
    assert all(a in mapped for b in strict_plan for a in range(b.address, b.end))
    assert set(strict) == set(relaxed) == set(again)
    assert strict["meter_serial"] == relaxed["meter_serial"] == int(meter.serial)


async def test_strict_meter_rejects_a_read_into_a_gap_with_a_clear_error(start_fleet):
    fleet = await start_fleet()
    meter = fleet.meters[0]
    await meter.apply_faults(strict_addresses=True)
    async with client_for(meter) as modbus:
        with pytest.raises(ModbusProtocolError, match="illegal data address") as info:
            await modbus.read_registers(5999, 24)  # import energy, gap, export energy
    assert info.value.exception_code == 2
