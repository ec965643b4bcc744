"""``/meterdata.json`` <-> :class:`MeterData` (live values, min/max with their times).

Every live value is a decimal string (``"306.722"``) already in the quantity's served
unit; which key carries which quantity is the catalogue's ``Quantity.meterdata``.
``meterdatetime`` is epoch seconds. When ``showMinMax`` is true the document also carries,
for every quantity in ``WITH_EXTREMES``, its minimum and maximum (``Quantity.extreme_key``)
and the epoch second each occurred (``"ts_" + key``; 0 or missing -> ``None``).

Tolerant of what does not matter, strict about what does:

- unknown keys are ignored (newer firmware may add some);
- a catalogue key that is absent is simply absent from ``values`` (and a quantity whose
  min or max is absent from ``extremes``): the publisher marks it bad rather than the
  whole document failing;
- malformed JSON, a missing/ill-typed ``meterdatetime`` or ``showMinMax``, or a value that
  is not a finite decimal number is a :class:`ParseError` naming the key.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Mapping

from attrs import field, frozen

from emu_opcua.errors import ParseError
from emu_opcua.meter.catalogue import BY_METERDATA_KEY, CATALOGUE, WITH_EXTREMES, Quantity
from emu_opcua.meter.status import datetime_to_epoch, epoch_to_datetime, load_json_object

DOCUMENT = "meterdata.json"
TIME_KEY = "meterdatetime"
MINMAX_KEY = "showMinMax"
TIMESTAMP_PREFIX = "ts_"

#: Decimals the meter writes per quantity group (manual's example document).
DECIMALS: dict[str, int] = {
    "energy": 3, "power": 3, "current": 3, "voltage": 1, "power_factor": 2, "frequency": 1,
}
#: Groups whose minimum the meter lists before the maximum (manual's example order).
_MIN_FIRST = frozenset({"voltage", "frequency"})

_DECIMAL = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")


def _frozen_mapping(value) -> Mapping:
    return value if isinstance(value, MappingProxyType) else MappingProxyType(dict(value))


def _frozen_optional_mapping(value) -> Mapping | None:
    return None if value is None else _frozen_mapping(value)


_ZERO = timedelta(0)


def _check_utc(_inst, attribute, value) -> None:
    if value is None or (type(value) is datetime and value.tzinfo is UTC):
        return  # the common case, checked cheaply: parsing creates many of these
    if not isinstance(value, datetime) or value.utcoffset() != _ZERO:
        raise ValueError(f"{attribute.name} must be a tz-aware UTC datetime, got {value!r}")


@frozen
class Extreme:
    value: float
    time: datetime | None = field(validator=_check_utc)  # None when the meter reports no time


@frozen
class Extremes:
    minimum: Extreme
    maximum: Extreme


@frozen
class MeterData:
    meter_time: datetime = field(validator=_check_utc)
    #: quantity code -> value in ``quantity.unit``
    values: Mapping[str, float] = field(converter=_frozen_mapping)
    #: quantity code -> min/max; None when ``showMinMax`` is false or absent
    extremes: Mapping[str, Extremes] | None = field(default=None, converter=_frozen_optional_mapping)


def _number(obj: dict, key: str) -> float:
    value = obj[key]
    if type(value) is str and _DECIMAL.fullmatch(value):
        number = float(value)  # the regex admits no nan/inf, but a huge exponent overflows
        if math.isfinite(number):
            return number
    return _number_slow(value, key)


def _number_slow(value: object, key: str) -> float:
    where = f"{DOCUMENT} key {key!r}"
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ParseError(f"not a decimal number: {value!r}", where=where)
        number = float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)  # tolerate a JSON number where a string is expected
    else:
        raise ParseError(f"expected a decimal string, got {value!r}", where=where)
    if not math.isfinite(number):
        raise ParseError(f"not a finite number: {value!r}", where=where)
    return number


#: epoch second -> datetime: min/max times repeat from one poll to the next, so a
#: gateway parsing meterdata.json every few seconds for many meters converts each once.
_EPOCHS: dict[int, datetime] = {}
_EPOCHS_MAX = 1 << 16


def _epoch(obj: dict, key: str, *, required: bool) -> datetime | None:
    value = obj.get(key)
    if type(value) is int:  # the common case
        if value == 0 and not required:
            return None
        t = _EPOCHS.get(value)
        if t is None:
            if len(_EPOCHS) >= _EPOCHS_MAX:
                _EPOCHS.clear()
            t = _EPOCHS[value] = epoch_to_datetime(value, where=f"{DOCUMENT} key {key!r}")
        return t
    where = f"{DOCUMENT} key {key!r}"
    if key not in obj:
        if required:
            raise ParseError("missing", where=where)
        return None
    raise ParseError(f"expected epoch seconds (integer), got {value!r}", where=where)


#: (code, min key, max key, min time key, max time key) of every quantity with extremes
_EXTREME_KEYS = tuple(
    (q.code, q.extreme_key("min"), q.extreme_key("max"),
     TIMESTAMP_PREFIX + q.extreme_key("min"), TIMESTAMP_PREFIX + q.extreme_key("max"))
    for q in WITH_EXTREMES
)


def parse_meterdata(data: bytes | str) -> MeterData:
    obj = load_json_object(data, document=DOCUMENT)
    meter_time = _epoch(obj, TIME_KEY, required=True)
    values = {q.code: _number(obj, key) for key, q in BY_METERDATA_KEY.items() if key in obj}
    show = obj.get(MINMAX_KEY, False)
    if not isinstance(show, bool):
        raise ParseError(f"expected a JSON boolean, got {show!r}", where=f"{DOCUMENT} key {MINMAX_KEY!r}")
    extremes = None
    if show:
        extremes = {}
        for code, lo, hi, ts_lo, ts_hi in _EXTREME_KEYS:
            if lo not in obj or hi not in obj:
                continue
            extremes[code] = Extremes(
                Extreme(_number(obj, lo), _epoch(obj, ts_lo, required=False)),
                Extreme(_number(obj, hi), _epoch(obj, ts_hi, required=False)),
            )
    return MeterData(meter_time, values, extremes)


def _format_number(q: Quantity, value: float) -> str:
    return f"{value:.{DECIMALS.get(q.group, 3)}f}"


def _extreme_order() -> tuple[tuple[Quantity, str], ...]:
    """(quantity, "min"/"max") in the manual's order: per key stem (p, q, i, u, pf, f) in
    catalogue order, max before min (min first for voltage and frequency), phases L1..L3
    before the total."""
    stems: dict[str, list[Quantity]] = {}
    for q in WITH_EXTREMES:
        stems.setdefault(q.extremes.split("_", 1)[0], []).append(q)
    order = []
    for qs in stems.values():
        qs = sorted(qs, key=lambda q: q.code.endswith("_total"))
        for which in (("min", "max") if qs[0].group in _MIN_FIRST else ("max", "min")):
            order.extend((q, which) for q in qs)
    return tuple(order)


_EXTREME_ORDER = _extreme_order()
_VALUE_ORDER = tuple(q for q in CATALOGUE if q.meterdata)


def format_meterdata(data: MeterData) -> bytes:
    """The JSON a meter sends for ``data``: ``meterdatetime``, the live values,
    ``showMinMax``, then (when ``extremes`` is not None) min/max values and their ``ts_``
    times (0 for no time), in the manual's order. Values missing from ``data`` are left out."""
    obj: dict[str, object] = {TIME_KEY: datetime_to_epoch(data.meter_time)}
    for q in _VALUE_ORDER:
        if q.code in data.values:
            obj[q.meterdata] = _format_number(q, data.values[q.code])
    obj[MINMAX_KEY] = data.extremes is not None
    if data.extremes is not None:
        present = [(q, w) for q, w in _EXTREME_ORDER if q.code in data.extremes]
        for q, which in present:
            ext = data.extremes[q.code]
            obj[q.extreme_key(which)] = _format_number(q, (ext.minimum if which == "min" else ext.maximum).value)
        for q, which in present:
            ext = data.extremes[q.code]
            t = (ext.minimum if which == "min" else ext.maximum).time
            obj[TIMESTAMP_PREFIX + q.extreme_key(which)] = 0 if t is None else datetime_to_epoch(t)
    return json.dumps(obj, indent=2).encode("utf-8")

