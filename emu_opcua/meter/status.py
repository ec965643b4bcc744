"""``/status.json`` <-> :class:`MeterStatus` (the meter's network and module settings).

Keys as the manual shows them (``networkdhcactive`` is spelled so by the meter). Unknown
extra keys are ignored; a missing key, or one of the wrong JSON type, is a
:class:`ParseError` naming the key. ``meterdatetime`` 0 (clock not set) becomes ``None``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from attrs import frozen

from emu_opcua.errors import ParseError

DOCUMENT = "status.json"

#: (JSON key, attribute, JSON type) in the order the meter sends them.
_FIELDS: tuple[tuple[str, str, type], ...] = (
    ("networkdhcactive", "dhcp_enabled", bool),
    ("networkip", "ip", str),
    ("networknm", "netmask", str),
    ("networkgw", "gateway", str),
    ("networkdns1", "dns", str),
    ("mbactive", "modbus_enabled", bool),
    ("mbport", "modbus_port", int),
    ("ntpactive", "ntp_enabled", bool),
    ("ntp1", "ntp_server", str),
    ("meterserial", "serial", str),
    ("meterfactorynr", "factory_number", int),
    ("meterdatetime", "meter_time", int),
    ("networkmac", "mac", str),
    ("softwareversion", "firmware_version", str),
    ("updateractive", "online_update_allowed", bool),
)


@frozen
class MeterStatus:
    dhcp_enabled: bool
    ip: str
    netmask: str
    gateway: str
    dns: str
    modbus_enabled: bool
    modbus_port: int
    ntp_enabled: bool
    ntp_server: str
    serial: str
    factory_number: int
    meter_time: datetime | None  # None when the meter reports 0 (clock not set)
    mac: str
    firmware_version: str
    online_update_allowed: bool


def load_json_object(data: bytes | str, *, document: str) -> dict:
    """``data`` parsed as a JSON object; anything else is a ParseError."""
    try:
        obj = json.loads(data)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ParseError(f"malformed JSON: {exc}", where=document) from None
    if not isinstance(obj, dict):
        raise ParseError(f"expected a JSON object, got {type(obj).__name__}", where=document)
    return obj


def _typed(obj: dict, key: str, kind: type, document: str):
    if key not in obj:
        raise ParseError("missing", where=f"{document} key {key!r}")
    value = obj[key]
    # bool is an int in Python, but not in JSON: keep them apart
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ParseError(
            f"expected a JSON {_JSON_NAMES[kind]}, got {value!r}", where=f"{document} key {key!r}"
        )
    return value


_JSON_NAMES = {bool: "boolean", int: "integer", str: "string"}


def epoch_to_datetime(seconds: int, *, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ParseError(f"epoch seconds out of range: {seconds!r}", where=where) from None


def datetime_to_epoch(t: datetime) -> int:
    if t.utcoffset() is None:
        raise ValueError(f"timestamp must be tz-aware, got {t!r}")
    return int(t.timestamp())


def parse_status(data: bytes | str) -> MeterStatus:
    obj = load_json_object(data, document=DOCUMENT)
    kwargs = {}
    for key, attr, kind in _FIELDS:
        value = _typed(obj, key, kind, DOCUMENT)
        if attr == "meter_time":
            value = None if value == 0 else epoch_to_datetime(value, where=f"{DOCUMENT} key {key!r}")
        kwargs[attr] = value
    return MeterStatus(**kwargs)


def format_status(status: MeterStatus) -> bytes:
    """The JSON a meter sends for ``status`` (keys in the manual's order)."""
    obj = {}
    for key, attr, _kind in _FIELDS:
        value = getattr(status, attr)
        if attr == "meter_time":
            value = 0 if value is None else datetime_to_epoch(value)
        obj[key] = value
    return json.dumps(obj, indent=2).encode("utf-8")
