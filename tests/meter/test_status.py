import json
from datetime import datetime, timezone

import pytest

from emu_opcua.errors import ParseError
from emu_opcua.meter.status import MeterStatus, format_status, parse_status

from .manual_examples import STATUS_JSON


def manual() -> dict:
    return json.loads(STATUS_JSON)


def test_manual_example():
    s = parse_status(STATUS_JSON)
    assert s == MeterStatus(
        dhcp_enabled=False, ip="**.*.*.*.*", netmask="**.*.*.*.*", gateway="**.*.*.*.*",
        dns="**.*.*.*.*", modbus_enabled=True, modbus_port=502, ntp_enabled=True,
        ntp_server="pool.ntp.org", serial="22350000", factory_number=0, meter_time=None,
        mac="10:2C:EF:**:**:**", firmware_version="1.0.14", online_update_allowed=True,
    )


def test_bytes_input_and_meter_time():
    doc = manual() | {"meterdatetime": 1681808392}
    s = parse_status(json.dumps(doc).encode())
    assert s.meter_time == datetime(2023, 4, 18, 8, 59, 52, tzinfo=timezone.utc)


def test_unknown_keys_ignored():
    doc = manual() | {"networkdns2": "8.8.8.8", "somethingnew": [1, 2]}
    assert parse_status(json.dumps(doc)) == parse_status(STATUS_JSON)


@pytest.mark.parametrize("key", list(json.loads(STATUS_JSON)))
def test_missing_key_named(key):
    doc = manual()
    del doc[key]
    with pytest.raises(ParseError, match=f"'{key}'.*missing"):
        parse_status(json.dumps(doc))


@pytest.mark.parametrize(
    "key, value",
    [
        ("meterserial", 22350000),  # the meter sends a string
        ("mbport", "502"),
        ("mbport", True),  # JSON true is not an integer
        ("networkdhcactive", 0),
        ("networkip", None),
        ("meterdatetime", 1.5),
        ("updateractive", "true"),
    ],
)
def test_wrong_type_named(key, value):
    doc = manual() | {key: value}
    with pytest.raises(ParseError) as info:
        parse_status(json.dumps(doc))
    assert f"'{key}'" in str(info.value)
    assert key in info.value.where


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"x"', b"\xff\xfe{}"])
def test_malformed_json(text):
    with pytest.raises(ParseError, match="status.json"):
        parse_status(text)


def test_round_trip_and_key_order():
    s = parse_status(STATUS_JSON)
    out = format_status(s)
    assert isinstance(out, bytes)
    assert list(json.loads(out)) == list(manual())
    assert json.loads(out) == manual()
    later = parse_status(json.dumps(manual() | {"meterdatetime": 1700000000}))
    assert parse_status(format_status(later)) == later
