"""Every fault, switched on and off while the meter runs; methods and control endpoints."""

import asyncio
import struct

import httpx
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from emu_opcua.errors import ParseError, TruncatedDataError
from emu_opcua.meter.datalog import parse_datalog
from emu_opcua.meter.logbook import parse_logbook
from emu_opcua.meter.meterdata import parse_meterdata
from emu_opcua.meter.status import parse_status
from emu_opcua.simulator.faults import Faults
from sim_helpers import base_url, control_url


async def modbus_read(meter, timeout=3.0):
    client = AsyncModbusTcpClient("127.0.0.1", port=meter.modbus_port, timeout=timeout, retries=0)
    try:
        if not await client.connect():
            raise ConnectionRefusedError
        rr = await client.read_holding_registers(8999, count=2, device_id=1)
        if rr.isError():
            raise ModbusException(str(rr))
        return rr.registers
    finally:
        client.close()


async def http_get(meter, path="/meterdata.json", **kw):
    async with httpx.AsyncClient(timeout=kw.pop("timeout", 5.0)) as c:
        return await c.get(base_url(meter) + path, **kw)


async def test_refuse_connections(meter):
    await meter.refuse_connections()
    with pytest.raises(httpx.ConnectError):
        await http_get(meter)
    with pytest.raises((ConnectionRefusedError, ModbusException)):
        await modbus_read(meter)
    await meter.refuse_connections(False)
    assert (await http_get(meter)).status_code == 200
    assert len(await modbus_read(meter)) == 2


async def test_refuse_closes_open_keep_alive_connections(meter):
    async with httpx.AsyncClient(timeout=5) as c:
        assert (await c.get(base_url(meter) + "/status.json")).status_code == 200
        await meter.refuse_connections()
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.TransportError):
            await c.get(base_url(meter) + "/status.json")
    await meter.clear_faults()


async def test_slow_responses(meter):
    await meter.slow_responses(2.0)
    with pytest.raises(httpx.ReadTimeout):
        await http_get(meter, timeout=0.3)
    with pytest.raises(ModbusException):
        await modbus_read(meter, timeout=0.3)
    await meter.slow_responses(0)
    assert (await http_get(meter, timeout=5)).status_code == 200
    assert len(await modbus_read(meter)) == 2


async def test_dropped_modbus_connections(meter):
    await meter.drop_modbus_connections()
    with pytest.raises(ModbusException):
        await modbus_read(meter)
    assert (await http_get(meter)).status_code == 200  # HTTP unaffected
    await meter.drop_modbus_connections(False)
    assert len(await modbus_read(meter)) == 2


async def test_http_500(meter):
    await meter.http_errors()
    for path in ("/status.json", "/meterdata.json", "/data/", "/logbook/", "/"):
        assert (await http_get(meter, path)).status_code == 500
    assert len(await modbus_read(meter)) == 2  # Modbus unaffected
    await meter.http_errors(False)
    assert (await http_get(meter)).status_code == 200


async def test_malformed_json(meter):
    await meter.malformed_json()
    for path, parse in (("/meterdata.json", parse_meterdata), ("/status.json", parse_status)):
        r = await http_get(meter, path)
        assert r.status_code == 200
        with pytest.raises(ParseError):
            parse(r.content)
    await meter.malformed_json(False)
    parse_meterdata((await http_get(meter)).content)


async def test_truncated_csv(meter):
    await meter.truncated_csv()
    with pytest.raises(TruncatedDataError):
        parse_datalog((await http_get(meter, "/data/", params={"last": 5})).content)
    with pytest.raises(TruncatedDataError):
        parse_logbook((await http_get(meter, "/logbook/")).content)
    await meter.truncated_csv(False)
    assert len(parse_datalog((await http_get(meter, "/data/", params={"last": 5})).content)) == 5


async def test_wrong_password(make_fleet):
    fleet = await make_fleet(password="right")
    meter = fleet.meters[0]
    assert (await http_get(meter, auth=("admin", "right"))).status_code == 200
    await meter.demand_wrong_password("other")
    assert (await http_get(meter, auth=("admin", "right"))).status_code == 401
    await meter.demand_wrong_password(None)
    assert (await http_get(meter, auth=("admin", "right"))).status_code == 200


async def test_wrong_password_without_a_configured_one(meter):
    await meter.demand_wrong_password()
    assert (await http_get(meter)).status_code == 401
    await meter.clear_faults()
    assert (await http_get(meter)).status_code == 200


async def test_modbus_disabled(meter):
    await meter.disable_modbus()
    assert parse_status((await http_get(meter, "/status.json")).content).modbus_enabled is False
    with pytest.raises((ConnectionRefusedError, ModbusException)):
        await modbus_read(meter)
    await meter.disable_modbus(False)
    assert parse_status((await http_get(meter, "/status.json")).content).modbus_enabled is True
    assert len(await modbus_read(meter)) == 2


async def test_unknown_or_bad_fault_is_rejected(meter):
    with pytest.raises(ValueError):
        await meter.apply_faults(explode=True)
    with pytest.raises(ValueError):
        await meter.apply_faults(delay=-1)
    assert meter.faults == Faults()


async def test_control_endpoints(fleet, monotonic):
    meter = fleet.meters[0]
    async with httpx.AsyncClient(base_url=control_url(fleet) + "/0", timeout=5) as c:
        r = await c.put("/faults", json={"http_500": True, "delay": 0.01})
        assert r.status_code == 200 and r.json()["http_500"] is True
        assert (await http_get(meter)).status_code == 500
        assert (await c.get("/faults")).json()["delay"] == 0.01
        assert (await c.put("/faults", json={"nope": 1})).status_code == 400
        assert (await c.put("/faults", content=b"[")).status_code == 400
        assert (await c.delete("/faults")).json() == Faults().as_dict()
        assert (await http_get(meter)).status_code == 200
        # events
        index = meter.physics.last_index
        assert (await c.post("/events/power_outage")).status_code == 200
        assert (await c.post("/events/power_outage", params={"seconds": "-1"})).status_code == 400
        assert (await c.post("/events/ct_ratio", params={"primary": 300, "secondary": 5})).status_code == 200
        assert (await c.post("/events/ct_ratio", params={"primary": "x", "secondary": 5})).status_code == 400
        assert (await c.post("/events/bogus")).status_code == 404
        info = (await c.get("/info")).json()
        assert info["serial"] == "22350000" and info["modbus_port"] == meter.modbus_port
    monotonic.advance(900)  # a quarter hour later
    row = meter.datalog_rows([index + 1])[0]
    assert int(row.status) == 0x20 | 0x02
    entry = meter.logbook_entries([meter.physics.logbook_count])[0]
    assert (entry.ct_primary, entry.ct_primary_before) == (300, 100)


async def test_fleet_control_server_survives_refused_connections(make_fleet):
    fleet = await make_fleet(meters=2)
    meter = fleet.meters[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{fleet.control_port}", timeout=5) as c:
        doc = (await c.get("/_sim/meters")).json()
        assert [m["serial"] for m in doc["meters"]] == ["22350000", "22350001"]
        r = await c.post("/_sim/meters/22350001/faults", json={"refuse_connections": True})
        assert r.status_code == 200
        with pytest.raises(httpx.ConnectError):
            await http_get(meter)
        assert (await http_get(fleet.meters[0])).status_code == 200  # the other meter answers
        assert (await c.delete("/_sim/meters/1/faults")).status_code == 200
        assert (await http_get(meter)).status_code == 200
        assert (await c.get("/_sim/meters/7/faults")).status_code == 404


async def test_load_step_event_shows_at_once_on_both_interfaces(fleet, monotonic):
    meter = fleet.meters[0]
    meter.modbus.refresh_interval = 3600.0  # a slow meter: only an invalidation refreshes
    before = await modbus_read(meter)
    async with httpx.AsyncClient(timeout=5.0) as c:
        r = await c.post(control_url(fleet) + "/0/events/load", params={"watts": "4321"})
        assert r.status_code == 200
        md = parse_meterdata((await c.get(base_url(meter) + "/meterdata.json")).content)
    assert md.values["active_power_total"] == pytest.approx(4.321, abs=0.001)
    assert md.values["active_power_l1"] == pytest.approx(4.321 / 3, abs=0.001)
    after = await modbus_read(meter)
    assert after != before
    assert struct.unpack(">f", struct.pack(">HH", *after))[0] == pytest.approx(4321.0)
    async with httpx.AsyncClient(timeout=5.0) as c:
        assert (await c.post(control_url(fleet) + "/0/events/load", params={"watts": "x"})).status_code == 400
        assert (await c.post(control_url(fleet) + "/0/events/load")).status_code == 200
    assert meter.physics.load_override is None


async def test_no_control_routes_on_the_meters_port(make_fleet):
    """A real meter has no /_sim/ routes: nothing on its port switches faults or tells
    the password; the control server listens on 127.0.0.1 only."""
    fleet = await make_fleet(password="s3cret")
    meter = fleet.meters[0]
    async with httpx.AsyncClient(base_url=base_url(meter), timeout=5) as c:
        for path in ("/_sim/faults", "/_sim/info", "/_sim/meters"):
            assert (await c.get(path)).status_code == 401  # like any path: auth first
            assert (await c.get(path, auth=("admin", "s3cret"))).status_code == 404
        r = await c.put("/_sim/faults", json={"http_500": True}, auth=("admin", "s3cret"))
        assert r.status_code in (404, 405)
        assert (await c.post("/_sim/events/power_outage", auth=("admin", "s3cret"))).status_code in (404, 405)
    assert meter.faults == Faults() and meter.physics.powered
    async with httpx.AsyncClient(timeout=5) as c:
        for url in (control_url(fleet), control_url(fleet) + "/0/info", control_url(fleet) + "/0/faults"):
            r = await c.get(url)
            assert r.status_code == 200 and "s3cret" not in r.text
    assert "s3cret" not in fleet.ports_table() and "s3cret" not in str(fleet.ports_document())
    assert fleet._control.addresses[-1][0] == "127.0.0.1"
