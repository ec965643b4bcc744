"""Many meters in one process: distinct ports and serials, consecutive ports, ports file."""

import json
import socket

import httpx
from pymodbus.client import AsyncModbusTcpClient

from emu_opcua.meter.meterdata import parse_meterdata
from emu_opcua.meter.status import parse_status
from sim_helpers import base_url


async def test_fleet_distinct_ports_and_serials(make_fleet, tmp_path):
    fleet = await make_fleet(meters=5, serial_base=22350100)
    ports = fleet.ports()
    assert [p.serial for p in ports] == [str(22350100 + i) for i in range(5)]
    all_ports = [p.http_port for p in ports] + [p.modbus_port for p in ports] + [fleet.control_port]
    assert len(set(all_ports)) == 11 and 0 not in all_ports
    values = []
    async with httpx.AsyncClient(timeout=5) as c:
        for meter in fleet.meters:
            status = parse_status((await c.get(base_url(meter) + "/status.json")).content)
            assert status.serial == meter.serial and status.modbus_port == meter.modbus_port
            values.append(parse_meterdata((await c.get(base_url(meter) + "/meterdata.json")).content).values)
    assert len({v["active_energy_import_total"] for v in values}) == 5  # each meter its own load
    for meter in fleet.meters:
        client = AsyncModbusTcpClient("127.0.0.1", port=meter.modbus_port, timeout=3, retries=0)
        await client.connect()
        rr = await client.read_holding_registers(4999, count=2, device_id=1)
        client.close()
        assert (rr.registers[0] << 16 | rr.registers[1]) == int(meter.serial)
    path = tmp_path / "ports.json"
    fleet.write_ports_file(path)
    doc = json.loads(path.read_text())
    assert doc["control_port"] == fleet.control_port
    assert [(m["serial"], m["http_port"], m["modbus_port"]) for m in doc["meters"]] == [
        (p.serial, p.http_port, p.modbus_port) for p in ports]
    table = fleet.ports_table()
    assert all(p.serial in table and str(p.http_port) in table for p in ports)


def _free_port_run(n: int) -> int:
    """A base port with ``n`` consecutive free ports (best effort, from the ephemeral range)."""
    for base in range(42000, 60000, 97):
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


async def test_consecutive_ports(make_fleet):
    http = _free_port_run(6)
    fleet = await make_fleet(meters=3, http_port=http, modbus_port=http + 3, history_days=0)
    assert [m.http_port for m in fleet.meters] == [http, http + 1, http + 2]
    assert [m.modbus_port for m in fleet.meters] == [http + 3, http + 4, http + 5]
    async with httpx.AsyncClient(timeout=5) as c:
        for meter in fleet.meters:
            assert (await c.get(base_url(meter) + "/status.json")).status_code == 200


async def test_time_acceleration(make_fleet, monotonic):
    fleet = await make_fleet(speed=3600.0, history_days=0)  # an hour per second
    meter = fleet.meters[0]
    meter.advance()
    assert meter.physics.row_count == 0
    monotonic.advance(24.0)  # a day of meter time
    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(base_url(meter) + "/data/")).text
    assert len(text.strip().splitlines()) - 1 == meter.physics.row_count
    assert meter.physics.row_count in (96, 97)
