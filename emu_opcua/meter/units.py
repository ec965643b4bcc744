"""Engineering units, as OPC UA wants them (UNECE Recommendation 20 codes).

One table: each unit has its UNECE common code, the numeric UnitId OPC UA derives from it
(OPC 10000-8, 5.6.3: the code's ASCII bytes read as a big-endian integer), and a factor to
its dimension's base unit so values convert between W and kW, Wh and kWh, without any
scaling constant appearing anywhere else.
"""

from __future__ import annotations

from attrs import frozen

UNECE_NAMESPACE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"


def unece_unit_id(code: str) -> int:
    """OPC UA UnitId of a UNECE common code: ``"KWH"`` -> 4937544."""
    value = 0
    for char in code.upper():
        value = (value << 8) | ord(char)
    return value


@frozen
class Unit:
    symbol: str
    unece_code: str
    dimension: str
    factor: float  # multiply a value in this unit by ``factor`` to get the dimension's base unit
    name_en: str

    @property
    def unece_id(self) -> int:
        return unece_unit_id(self.unece_code)

    def convert_to(self, other: Unit) -> float:
        """Factor that converts a value in ``self`` to ``other``."""
        if self.dimension != other.dimension:
            raise ValueError(f"cannot convert {self.symbol} to {other.symbol}")
        return self.factor / other.factor


WH = Unit("Wh", "WHR", "active_energy", 1.0, "watt hour")
KWH = Unit("kWh", "KWH", "active_energy", 1000.0, "kilowatt hour")
# The datalog counts var hours; OPC UA serves kvarh (K3), so varh needs no UNECE code.
VARH = Unit("varh", "", "reactive_energy", 1.0, "var hour")
KVARH = Unit("kvarh", "K3", "reactive_energy", 1000.0, "kilovar hour")
W = Unit("W", "WTT", "active_power", 1.0, "watt")
KW = Unit("kW", "KWT", "active_power", 1000.0, "kilowatt")
VAR = Unit("var", "D44", "reactive_power", 1.0, "var")
KVAR = Unit("kvar", "KVR", "reactive_power", 1000.0, "kilovar")
V = Unit("V", "VLT", "voltage", 1.0, "volt")
A = Unit("A", "AMP", "current", 1.0, "ampere")
HZ = Unit("Hz", "HTZ", "frequency", 1.0, "hertz")
ONE = Unit("", "C62", "ratio", 1.0, "one")

UNITS: dict[str, Unit] = {
    u.symbol: u for u in (WH, KWH, VARH, KVARH, W, KW, VAR, KVAR, V, A, HZ, ONE)
}
