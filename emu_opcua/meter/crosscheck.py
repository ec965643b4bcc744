"""Modbus values vs ``meterdata.json``: is the register map right?

The manufacturer's register document is not public (FIELD-EVIDENCE), so the gateway
checks at run time that what it decodes over Modbus agrees with what the meter's own
``meterdata.json`` says. Both are compared in the quantity's served unit (the decoder
already converted W -> kW, Wh -> kWh).

Tolerances are per quantity group, ``|modbus - http| <= absolute + relative * |http|``.
The meter refreshes its Modbus registers every 5-10 s and meterdata independently, so
instantaneous values may legitimately differ by what a load does in ten seconds; energy
counters only creep forward (12 kW for 10 s is 33 Wh). A wrong map is far outside these:
an address off by one or a word swap turns a float32 into garbage (or into a number
thousands of times off), an integer into one 65536 times too large or small. The
``~1 %`` error FIELD-EVIDENCE reports for one project's misreading is caught by the
energy tolerance (0.1 % + 0.05 kWh).

A quantity whose instantaneous value swings (a motor starting) can still miss once; the
caller should act on repeated failures, not on one (the poller's business, not this
module's).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Mapping

from attrs import field, frozen

from emu_opcua.meter.catalogue import BY_CODE, CATALOGUE
from emu_opcua.meter.meterdata import MeterData


@frozen
class Tolerance:
    absolute: float  # in the quantity's unit
    relative: float  # fraction of |meterdata value|

    def allowed(self, reference: float) -> float:
        return self.absolute + self.relative * abs(reference)


#: Per quantity group; serial numbers (``identity``) must match exactly.
DEFAULT_TOLERANCE: Mapping[str, Tolerance] = MappingProxyType({
    "energy": Tolerance(absolute=0.05, relative=0.001),  # kWh: 50 Wh or 0.1 %
    "power": Tolerance(absolute=0.05, relative=0.05),  # kW / kvar
    "current": Tolerance(absolute=0.1, relative=0.05),  # A
    "voltage": Tolerance(absolute=1.0, relative=0.01),  # V
    "power_factor": Tolerance(absolute=0.05, relative=0.0),
    "frequency": Tolerance(absolute=0.1, relative=0.0),  # Hz
})

#: Modbus quantity compared with ``status.json``'s serial instead of meterdata.json.
SERIAL_CODE = "meter_serial"


@frozen
class Mismatch:
    code: str
    modbus: float
    http: float  # the value the meter's HTTP interface reports: the expected value
    difference: float  # modbus - http
    allowed: float = 0.0  # largest difference the tolerance allows

    def describe(self) -> str:
        q = BY_CODE.get(self.code)
        unit = f" {q.unit.symbol}" if q is not None and q.unit is not None and q.unit.symbol else ""
        if q is None or q.unit is None:  # serial numbers and counts: whole numbers
            show = lambda v: f"{v:.0f}" if math.isfinite(v) else repr(v)  # noqa: E731
            return f"{self.code}: Modbus {show(self.modbus)}, expected {show(self.http)}"
        return (
            f"{self.code}: Modbus {self.modbus:.6g}{unit}, expected {self.http:.6g}{unit} "
            f"(difference {self.difference:+.6g}{unit}, allowed ±{self.allowed:.3g}{unit})"
        )


@frozen
class CrossCheckResult:
    ok: bool  # at least one quantity compared and no mismatch
    compared: int
    mismatches: tuple[Mismatch, ...] = field(converter=tuple)

    def summary(self) -> str:
        if self.compared == 0:
            return "register map not verified: no quantity present in both Modbus values and meterdata.json"
        if self.ok:
            return f"register map agrees with meterdata.json ({self.compared} quantities compared)"
        lines = [
            f"register map disagrees with the meter's HTTP values: {len(self.mismatches)} of "
            f"{self.compared} quantities differ beyond tolerance"
        ]
        lines.extend("  " + m.describe() for m in self.mismatches)
        return "\n".join(lines)


def cross_check(
    modbus: Mapping[str, float],
    meterdata: MeterData,
    *,
    serial: str | None = None,
    tolerance: Mapping[str, Tolerance] = DEFAULT_TOLERANCE,
) -> CrossCheckResult:
    """Compare every quantity present in both ``modbus`` (decoded register values) and
    ``meterdata``, and the serial number (``status.json`` ``meterserial``) when given.

    A group missing from ``tolerance`` is compared exactly. A non-finite Modbus value is
    a mismatch. ``ok`` is False when nothing could be compared: such a check vouches for
    nothing.
    """
    mismatches: list[Mismatch] = []
    compared = 0
    for q in CATALOGUE:  # catalogue order, so summaries read the same every time
        if q.code not in modbus or q.code not in meterdata.values:
            continue
        got, expected = modbus[q.code], meterdata.values[q.code]
        tol = tolerance.get(q.group, Tolerance(0.0, 0.0))
        allowed = tol.allowed(expected)
        compared += 1
        if not math.isfinite(got) or abs(got - expected) > allowed:
            mismatches.append(Mismatch(q.code, got, expected, got - expected, allowed))
    if serial is not None and SERIAL_CODE in modbus:
        compared += 1
        got = modbus[SERIAL_CODE]
        try:
            expected = float(int(serial.strip()))
        except ValueError:
            expected = math.nan  # a non-numeric serial cannot equal a register value
        if not (math.isfinite(got) and got == expected):
            mismatches.append(Mismatch(SERIAL_CODE, got, expected, got - expected, 0.0))
    return CrossCheckResult(compared > 0 and not mismatches, compared, tuple(mismatches))
