"""The HTTP interface over real sockets: endpoints, formats, paging, caps, auth."""

import httpx
import pytest

from emu_opcua.meter.catalogue import WITH_EXTREMES
from emu_opcua.meter.datalog import parse_datalog
from emu_opcua.meter.logbook import parse_logbook
from emu_opcua.meter.meterdata import parse_meterdata
from emu_opcua.meter.status import parse_status
from emu_opcua.simulator.http_app import BadQuery, select_indices

from sim_helpers import START, base_url


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


async def test_status_json(meter, client):
    r = await client.get(base_url(meter) + "/status.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    status = parse_status(r.content)
    assert status.serial == "22350000"
    assert status.modbus_enabled and status.modbus_port == meter.modbus_port
    assert status.mac.startswith("10:2C:EF:")
    assert int(status.meter_time.timestamp()) == int(START)


async def test_meterdata_json_with_min_max(meter, client):
    r = await client.get(base_url(meter) + "/meterdata.json")
    assert r.status_code == 200
    raw = r.json()
    assert raw["showMinMax"] is True and isinstance(raw["p_L123_act_e"], str)
    assert isinstance(raw["ts_p_max_L123_e"], int)
    data = parse_meterdata(r.content)
    assert set(data.extremes) == {q.code for q in WITH_EXTREMES}
    for code, e in data.extremes.items():
        assert e.minimum.value <= data.values[code] <= e.maximum.value, code
    assert data.values["active_energy_import_t1"] + data.values["active_energy_import_t2"] == pytest.approx(
        data.values["active_energy_import_total"], abs=0.0015)


async def test_no_min_max_below_serial_22350000(make_fleet, client):
    fleet = await make_fleet(serial_base=22340000)
    r = await client.get(base_url(fleet.meters[0]) + "/meterdata.json")
    assert r.json()["showMinMax"] is False
    assert parse_meterdata(r.content).extremes is None


async def test_datalog_default_is_newest_first(meter, client):
    r = await client.get(base_url(meter) + "/data/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = parse_datalog(r.content)
    assert len(rows) == 192  # two days of quarter hours
    assert [row.index for row in rows] == list(range(192, 0, -1))
    assert all(row.serial == "22350000" for row in rows)
    assert r.text.splitlines()[0].startswith("Timestamp;Index;Status;Serial;")


async def test_datalog_last_and_ranges(meter, client):
    url = base_url(meter) + "/data/"
    rows = parse_datalog((await client.get(url, params={"last": 96})).content)
    assert [r.index for r in rows] == list(range(192, 96, -1))
    rows = parse_datalog((await client.get(url, params={"from": 1, "to": 100})).content)
    assert [r.index for r in rows] == list(range(1, 101))
    rows = parse_datalog((await client.get(url, params={"from": 20, "to": 1})).content)
    assert [r.index for r in rows] == list(range(20, 0, -1))
    rows = parse_datalog((await client.get(url, params={"from": 55, "to": 55})).content)
    assert [r.index for r in rows] == [55]
    # beyond the record: clipped; entirely outside: header only
    rows = parse_datalog((await client.get(url, params={"from": 180, "to": 500})).content)
    assert [r.index for r in rows] == list(range(180, 193))
    rows = parse_datalog((await client.get(url, params={"from": 900, "to": 1000})).content)
    assert rows == ()
    rows = parse_datalog((await client.get(url, params={"from": 190})).content)
    assert [r.index for r in rows] == [190, 191, 192]


@pytest.mark.parametrize("params", [
    {"last": "x"}, {"last": "0"}, {"last": "-1"}, {"from": "1", "to": "b"}, {"to": "5"},
    {"last": "5", "from": "1", "to": "3"}, {"from": "1.5", "to": "3"},
])
async def test_bad_query_is_400(meter, client, params):
    r = await client.get(base_url(meter) + "/data/", params=params)
    assert r.status_code == 400
    r = await client.get(base_url(meter) + "/logbook/", params=params)
    assert r.status_code == 400


async def test_datalog_caps_at_3000(make_fleet, client):
    fleet = await make_fleet(datalog_interval=60, history_days=2.5)  # 3600 rows
    m = fleet.meters[0]
    url = base_url(m) + "/data/"
    rows = parse_datalog((await client.get(url)).content)
    assert len(rows) == 3000 and rows[0].index == 3600 and rows[-1].index == 601
    rows = parse_datalog((await client.get(url, params={"last": 5000})).content)
    assert len(rows) == 3000
    rows = parse_datalog((await client.get(url, params={"from": 1, "to": 3600})).content)
    assert [r.index for r in rows] == list(range(1, 3001))
    rows = parse_datalog((await client.get(url, params={"from": 3600, "to": 1})).content)
    assert [r.index for r in rows] == list(range(3600, 600, -1))
    assert all(r.timestamp.timestamp() % 60 == 0 for r in rows)


async def test_logbook_paging_and_cap(meter, client):
    for k in range(2100):
        meter.physics.change_pulse(length_ms=20 + k % 50)
    total = meter.physics.logbook_count
    assert total == 2101
    url = base_url(meter) + "/logbook/"
    r = await client.get(url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    entries = parse_logbook(r.content)
    assert len(entries) == 2048 and entries[0].index == total and entries[-1].index == total - 2047
    entries = parse_logbook((await client.get(url, params={"from": 1, "to": 10})).content)
    assert [e.index for e in entries] == list(range(1, 11))
    assert entries[0].ct_primary == 100 and entries[0].ct_primary_before == 5
    entries = parse_logbook((await client.get(url, params={"last": 3})).content)
    assert [e.index for e in entries] == [total, total - 1, total - 2]
    assert all(e.serial == "22350000" for e in entries)


async def test_no_logbook_on_the_non_lp_variant(make_fleet, client):
    fleet = await make_fleet(logbook=False)
    r = await client.get(base_url(fleet.meters[0]) + "/logbook/")
    assert r.status_code == 404


async def test_html_page(meter, client):
    r = await client.get(base_url(meter) + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "22350000" in r.text and "Wirkleistung total" in r.text


async def test_auth(make_fleet, client):
    fleet = await make_fleet(password="s3cret")
    url = base_url(fleet.meters[0])
    for path in ("/", "/status.json", "/meterdata.json", "/data/", "/logbook/"):
        r = await client.get(url + path)
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert (await client.get(url + path, auth=("admin", "wrong"))).status_code == 401
        assert (await client.get(url + path, auth=("root", "s3cret"))).status_code == 401
        assert (await client.get(url + path, auth=("admin", "s3cret"))).status_code == 200
    # no simulator routes on a meter's port: they need the password like any path, and
    # with it there is nothing there
    assert (await client.get(url + "/_sim/faults")).status_code == 401
    assert (await client.get(url + "/_sim/faults", auth=("admin", "s3cret"))).status_code == 404


def test_select_indices_rules():
    q = select_indices
    assert list(q({}, 5, 3000)) == [5, 4, 3, 2, 1]
    assert list(q({}, 0, 3000)) == []
    assert list(q({"last": "2"}, 5, 3000)) == [5, 4]
    assert list(q({"from": "0", "to": "2"}, 5, 3000)) == [1, 2]
    assert list(q({"from": "9", "to": "3"}, 5, 3000)) == [5, 4, 3]
    assert list(q({"from": "1", "to": "10"}, 10, 4)) == [1, 2, 3, 4]
    assert list(q({"from": "10", "to": "1"}, 10, 4)) == [10, 9, 8, 7]
    with pytest.raises(BadQuery):
        q({"last": "²"}, 5, 3000)
