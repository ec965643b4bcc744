"""Fault injection switches of one simulated meter.

:class:`Faults` is plain, validated data; the meter (``fleet.SimulatedMeter``) reads it on
every request and reconciles its listeners when a switch that opens or closes a port
changes. Every switch can be flipped while the meter runs, from Python
(``await meter.apply_faults(delay=2.0)``) or over HTTP (``/_sim/faults``, see
``http_app``); the JSON form is :meth:`Faults.as_dict`.

=====================  =============================================================
switch                 effect
=====================  =============================================================
``refuse_connections`` both listeners closed: connecting fails with ECONNREFUSED
                       (the meter's TCP module is down; metering goes on)
``delay``              seconds to wait before every HTTP response and Modbus reply
``drop_modbus``        every Modbus request closes its TCP connection, no reply
``http_500``           every meter endpoint answers 500 Internal Server Error
``malformed_json``     ``status.json`` / ``meterdata.json`` are cut in the middle
``truncated_csv``      datalog / logbook CSV ends in the middle of its last row
``wrong_password``     the meter demands this password (not the configured one);
                       with no password configured, it starts demanding one
``modbus_disabled``    ``mbactive`` false in ``status.json`` and the Modbus port closed
=====================  =============================================================
"""

from __future__ import annotations

import math
from typing import Any

from attrs import asdict, define, field, fields


def _non_negative_delay(_inst, _attr, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"delay must be a finite number of seconds >= 0, got {value!r}")


def _bool(_inst, attr, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attr.name} must be true or false, got {value!r}")


def _password(_inst, _attr, value) -> None:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 20):
        raise ValueError(f"wrong_password must be null or a string of 1..20 characters, got {value!r}")


@define(slots=True)
class Faults:
    refuse_connections: bool = field(default=False, validator=_bool)
    delay: float = field(default=0.0, validator=_non_negative_delay)
    drop_modbus: bool = field(default=False, validator=_bool)
    http_500: bool = field(default=False, validator=_bool)
    malformed_json: bool = field(default=False, validator=_bool)
    truncated_csv: bool = field(default=False, validator=_bool)
    wrong_password: str | None = field(default=None, validator=_password)
    modbus_disabled: bool = field(default=False, validator=_bool)
    #: Answer "illegal data address" to any read that touches an unmapped register, as
    #: some meters do (a client must then read mapped registers only).
    strict_addresses: bool = field(default=False, validator=_bool)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, changes: dict[str, Any]) -> Faults:
        """A copy with ``changes`` applied; an unknown name or a bad value is ValueError."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(self.names())}")
        merged = {**self.as_dict(), **changes}
        if isinstance(merged["delay"], int) and not isinstance(merged["delay"], bool):
            merged["delay"] = float(merged["delay"])
        return Faults(**merged)

    @property
    def active(self) -> bool:
        return self != Faults()

    def http_listening(self) -> bool:
        return not self.refuse_connections

    def modbus_listening(self) -> bool:
        return not (self.refuse_connections or self.modbus_disabled)


def truncate_json(body: bytes) -> bytes:
    """``body`` cut in the middle (no longer valid JSON)."""
    return body[: max(1, len(body) // 2)]


def truncate_csv(text: str) -> str:
    """``text`` cut in the middle of its last line (no final newline)."""
    stripped = text.rstrip("\n")
    start = stripped.rfind("\n") + 1
    last = stripped[start:]
    return stripped[: start + max(1, len(last) // 2)]
