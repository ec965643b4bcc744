"""Modbus register map, read planning, and register block decode/encode.

The default map comes from the catalogue (``Quantity.modbus``, FIELD-EVIDENCE's
best-known layout: function 03, unit id 1, big-endian bytes, high word first). A user's
TOML file overrides it::

    unit_id = 1
    word_order = "big"          # or "little": low word first (word swap)

    [registers.active_power_total]
    address = 8999              # wire address (0-based), what pymodbus calls address=
    type = "float32"            # uint16 int16 uint32 int32 uint64 int64 float32 float64
    unit = "W"                  # unit on the wire; converted to the quantity's unit
    scale = 1.0                 # raw * scale = value in ``unit``

    [registers.power_fail_count]
    disabled = true             # do not read this one

An entry overrides the default entry field by field, or adds a register for a catalogue
quantity that has none. Errors name the file and the field (:class:`ConfigError`).

Decoding: each value is raw * scale in the wire unit, converted once to the quantity's
served unit (W -> kW, Wh -> kWh). A NaN or infinite float register raises
:class:`ParseError` naming the quantity and address: a meter does not send those for a
real measurement, so it means the map points at the wrong registers (or the meter is in
a state whose values must not be published as good).
"""

from __future__ import annotations

import math
import struct
import tomllib
from types import MappingProxyType
from typing import Literal, Mapping, Sequence

from attrs import field, frozen

from emu_opcua.errors import ConfigError, ParseError
from emu_opcua.meter.catalogue import BY_CODE, CATALOGUE, REGISTER_WIDTH, ModbusSource
from emu_opcua.meter.units import UNITS

WordOrder = Literal["big", "little"]

#: Most registers one read (function 03) may return (Modbus spec).
MAX_READ_COUNT = 125
#: Default largest run of unmapped registers a planned read may span to save a request.
#: Small on purpose: reading an unmapped register may make a real meter answer with an
#: "illegal data address" exception, and the best-known layout has gaps of 2 and 4
#: registers inside its blocks (9007-9008, 9305-9308) but large holes between them
#: (e.g. 16 between the two energy registers, ~80 between the 9000/9100/9200 blocks).
#: Use ``max_gap=0`` for a meter that rejects any unmapped register.
DEFAULT_MAX_GAP = 10

_STRUCT_CODE = {
    "uint16": "H", "int16": "h", "uint32": "I", "int32": "i",
    "uint64": "Q", "int64": "q", "float32": "f", "float64": "d",
}
_FLOAT_TYPES = frozenset({"float32", "float64"})
_INT_RANGES = {
    t: ((-(1 << (16 * w - 1)), (1 << (16 * w - 1)) - 1) if _STRUCT_CODE[t].islower() else (0, (1 << (16 * w)) - 1))
    for t, w in REGISTER_WIDTH.items()
    if t not in _FLOAT_TYPES
}


def _frozen_entries(value) -> Mapping[str, ModbusSource]:
    return value if isinstance(value, MappingProxyType) else MappingProxyType(dict(value))


def _check_word_order(_inst, _attr, value) -> None:
    if value not in ("big", "little"):
        raise ValueError(f"word_order must be 'big' or 'little', not {value!r}")


def _check_unit_id(_inst, _attr, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"unit_id must be an int 0..255, not {value!r}")


def _check_entries(_inst, _attr, entries) -> None:
    """Every entry is a catalogue quantity whose wire unit converts to its served unit."""
    for code, src in entries.items():
        q = BY_CODE.get(code)
        if q is None:
            raise ValueError(f"register map entry {code!r} is not a catalogue quantity")
        if not isinstance(src, ModbusSource) or src.type not in REGISTER_WIDTH:
            raise ValueError(f"register map entry {code!r} must be a ModbusSource, got {src!r}")
        if (q.unit is None) != (src.unit is None) or (
            q.unit is not None and q.unit.dimension != src.unit.dimension
        ):
            raise ValueError(f"register map entry {code!r}: unit {src.unit!r} does not convert to {q.unit!r}")


@frozen
class RegisterMap:
    #: quantity code -> where its value is
    entries: Mapping[str, ModbusSource] = field(converter=_frozen_entries, validator=_check_entries)
    unit_id: int = field(default=1, validator=_check_unit_id)
    #: "big": high word first (the meter's default); "little": low word first
    word_order: WordOrder = field(default="big", validator=_check_word_order)

    @classmethod
    def default(cls) -> RegisterMap:
        """The best-known layout, from the catalogue."""
        return cls({q.code: q.modbus for q in CATALOGUE if q.modbus is not None})

    @classmethod
    def from_toml(cls, text: str, *, source: str) -> RegisterMap:
        """The default map overridden by a user's register-map file (see module doc)."""
        return _from_toml(text, source)

    def with_entries(self, entries: Mapping[str, ModbusSource]) -> RegisterMap:
        return RegisterMap(entries, self.unit_id, self.word_order)


# --- the user's TOML file -----------------------------------------------------------------
_TOP_KEYS = frozenset({"unit_id", "word_order", "registers"})
_ENTRY_KEYS = frozenset({"address", "type", "unit", "scale", "disabled"})


def _from_toml(text: str, source: str) -> RegisterMap:
    def fail(where: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: {message}")

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    for key in doc:
        if key not in _TOP_KEYS:
            raise fail(key, f"unknown setting (expected one of {', '.join(sorted(_TOP_KEYS))})")
    unit_id = doc.get("unit_id", 1)
    if isinstance(unit_id, bool) or not isinstance(unit_id, int) or not 0 <= unit_id <= 255:
        raise fail("unit_id", f"must be an integer 0..255, not {unit_id!r}")
    word_order = doc.get("word_order", "big")
    if word_order not in ("big", "little"):
        raise fail("word_order", f"must be \"big\" or \"little\", not {word_order!r}")
    registers = doc.get("registers", {})
    if not isinstance(registers, dict):
        raise fail("registers", "must be a table of [registers.<quantity code>] tables")

    entries = dict(RegisterMap.default().entries)
    for code, spec in registers.items():
        where = f"registers.{code}"
        quantity = BY_CODE.get(code)
        if quantity is None:
            raise fail(where, "unknown quantity code (see the catalogue)")
        if not isinstance(spec, dict):
            raise fail(where, "must be a table")
        for key in spec:
            if key not in _ENTRY_KEYS:
                raise fail(f"{where}.{key}", f"unknown field (expected one of {', '.join(sorted(_ENTRY_KEYS))})")
        disabled = spec.get("disabled", False)
        if not isinstance(disabled, bool):
            raise fail(f"{where}.disabled", f"must be true or false, not {disabled!r}")
        if disabled:
            entries.pop(code, None)
            continue
        base = entries.get(code)
        if base is None:
            for key in ("address", "type"):
                if key not in spec:
                    raise fail(f"{where}.{key}", "required (this quantity has no default register)")
        address = spec.get("address", base.address if base else None)
        if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFFFF:
            raise fail(f"{where}.address", f"must be a wire address 0..65535, not {address!r}")
        rtype = spec.get("type", base.type if base else None)
        if rtype not in REGISTER_WIDTH:
            raise fail(f"{where}.type", f"unknown type {rtype!r} (expected one of {', '.join(REGISTER_WIDTH)})")
        if address + REGISTER_WIDTH[rtype] - 1 > 0xFFFF:
            raise fail(f"{where}.address", f"{rtype} at {address} runs past register 65535")
        if "unit" in spec:
            symbol = spec["unit"]
            if not isinstance(symbol, str) or symbol not in UNITS:
                raise fail(f"{where}.unit", f"unknown unit {symbol!r} (expected one of {', '.join(repr(s) for s in UNITS)})")
            unit = UNITS[symbol]
        else:
            unit = base.unit if base else quantity.unit
        if quantity.unit is None:
            if "unit" in spec:
                raise fail(f"{where}.unit", f"{code} is a count and has no unit")
            unit = None
        elif unit is None or unit.dimension != quantity.unit.dimension:
            got = "none" if unit is None else repr(unit.symbol)
            raise fail(f"{where}.unit", f"{got} cannot be converted to {quantity.unit.symbol!r}")
        scale = spec.get("scale", base.scale if base else 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale == 0:
            raise fail(f"{where}.scale", f"must be a finite non-zero number, not {scale!r}")
        entries[code] = ModbusSource(address, rtype, unit, float(scale))

    # two quantities sharing a register is always a mistake in the file
    spans = sorted((s.address, s.address + s.count, code) for code, s in entries.items())
    for (a0, e0, c0), (a1, _e1, c1) in zip(spans, spans[1:]):
        if a1 < e0:
            raise fail(f"registers.{c1}.address", f"register {a1} overlaps {c0} ({a0}..{e0 - 1})")
    return RegisterMap(entries, unit_id, word_order)


# --- planning -------------------------------------------------------------------------------
@frozen
class ReadBlock:
    address: int  # first wire address
    count: int  # registers to read

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.count


def plan_reads(
    register_map: RegisterMap, *, max_count: int = MAX_READ_COUNT, max_gap: int = DEFAULT_MAX_GAP
) -> tuple[ReadBlock, ...]:
    """The fewest reads covering every entry, in ascending address order.

    Neighbouring entries share a read when the unmapped registers between them number at
    most ``max_gap`` and the read stays within ``max_count`` registers; an entry is never
    split across reads.
    """
    if not 1 <= max_count <= MAX_READ_COUNT:
        raise ValueError(f"max_count must be 1..{MAX_READ_COUNT}, not {max_count}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, not {max_gap}")
    spans = sorted((s.address, s.address + s.count) for s in register_map.entries.values())
    blocks: list[ReadBlock] = []
    start = end = None
    for a, e in spans:
        if start is not None and a - end <= max_gap and max(e, end) - start <= max_count:
            end = max(e, end)
            continue
        if start is not None:
            blocks.append(ReadBlock(start, end - start))
        start, end = a, e
    if start is not None:
        blocks.append(ReadBlock(start, end - start))
    return tuple(blocks)


# --- decode / encode -----------------------------------------------------------------------
def _conversion(code: str, src: ModbusSource) -> float:
    """Factor from a raw register value to ``code``'s served unit."""
    unit = BY_CODE[code].unit
    factor = src.scale
    if unit is not None and src.unit is not None:
        factor *= src.unit.convert_to(unit)
    return factor


def _divisor(factor: float) -> int:
    """``n`` when ``factor`` is ``1/n`` (Wh -> kWh: 1000), so integers convert exactly
    (306722 Wh -> 306.722, not 306.72200000000004); 0 otherwise."""
    if 0 < factor < 1:
        n = round(1 / factor)
        if abs(1 / factor - n) < 1e-9:
            return n
    return 0


class _Field:
    """How one entry is decoded from its block: precomputed once per plan."""

    __slots__ = ("code", "address", "offset", "width", "unpack", "check_finite", "float32", "divisor", "factor",
                 "type")

    def __init__(self, code: str, src: ModbusSource, offset: int) -> None:
        self.code = code
        self.address = src.address
        self.type = src.type
        self.offset = offset  # bytes from the start of the block
        self.width = REGISTER_WIDTH[src.type]
        self.unpack = struct.Struct(">" + _STRUCT_CODE[src.type]).unpack_from
        self.check_finite = src.type in _FLOAT_TYPES
        self.float32 = src.type == "float32"
        self.factor = _conversion(code, src)
        self.divisor = _divisor(self.factor)


@frozen
class RegisterDecoder:
    """:func:`decode_registers` compiled for one register map and one set of blocks:
    where each value sits and how it converts, worked out once rather than per poll.
    ``decode`` takes the registers read for ``blocks`` (in the same order)."""

    register_map: RegisterMap
    blocks: tuple[ReadBlock, ...]
    _fields: tuple[tuple[_Field, ...], ...] = field(init=False, repr=False, eq=False)
    _packers: tuple[struct.Struct, ...] = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        per_block: list[list[_Field]] = [[] for _ in self.blocks]
        for code, src in self.register_map.entries.items():
            width = REGISTER_WIDTH[src.type]
            for i, block in enumerate(self.blocks):
                if block.address <= src.address and src.address + width <= block.end:
                    per_block[i].append(_Field(code, src, 2 * (src.address - block.address)))
                    break
        object.__setattr__(self, "_fields", tuple(tuple(f) for f in per_block))
        object.__setattr__(self, "_packers", tuple(struct.Struct(f">{b.count}H") for b in self.blocks))

    def decode(self, registers: Sequence[Sequence[int]]) -> dict[str, float]:
        """Values in each quantity's served unit, keyed by quantity code."""
        if len(registers) != len(self.blocks):
            raise ValueError(f"expected registers for {len(self.blocks)} blocks, got {len(registers)}")
        swap = self.register_map.word_order == "little"
        out: dict[str, float] = {}
        for block, regs, packer, fields in zip(self.blocks, registers, self._packers, self._fields):
            if len(regs) != block.count:
                raise ParseError(f"expected {block.count} registers, got {len(regs)}",
                                 where=f"modbus block at {block.address}")
            try:
                buf = packer.pack(*regs)
            except struct.error:
                bad = next((r for r in regs if not (isinstance(r, int) and 0 <= r <= 0xFFFF)), None)
                raise ParseError(f"register value {bad!r} is not 0..65535",
                                 where=f"modbus block at {block.address}") from None
            for f in fields:
                if swap and f.width > 1:
                    words = buf[f.offset:f.offset + 2 * f.width]
                    (raw,) = f.unpack(b"".join(words[i:i + 2] for i in range(2 * f.width - 2, -2, -2)))
                else:
                    (raw,) = f.unpack(buf, f.offset)
                if f.check_finite and not math.isfinite(raw):
                    raise ParseError(f"{f.type} is {raw!r} (wrong register map?)",
                                     where=f"modbus register {f.address} ({f.code})")
                if f.float32:
                    # A float32 carries ~7 significant digits; the double struct gives back
                    # has more (230.81822204589844). Keep the 7 the meter sent: 230.8182.
                    raw = float(f"{raw:.7g}")
                out[f.code] = raw / f.divisor if f.divisor else raw * f.factor
        return out


def decode_registers(register_map: RegisterMap, blocks: Mapping[int, Sequence[int]]) -> dict[str, float]:
    """Values of every entry whose registers are all in ``blocks`` (start address ->
    registers read), in the quantity's served unit. Entries not covered are left out.
    (Polling decodes the same layout over and over: use :class:`RegisterDecoder`.)"""
    read = tuple(ReadBlock(start, len(regs)) for start, regs in blocks.items())
    return RegisterDecoder(register_map, read).decode(list(blocks.values()))


def encode_registers(register_map: RegisterMap, values: Mapping[str, float]) -> dict[int, int]:
    """The inverse of :func:`decode_registers`: quantity code -> value in the quantity's
    unit ==> wire address -> 16-bit register value. Codes without an entry are ignored;
    integer types are rounded; a value the type cannot hold raises ValueError."""
    swap = register_map.word_order == "little"
    out: dict[int, int] = {}
    for code, value in values.items():
        src = register_map.entries.get(code)
        if src is None:
            continue
        factor = _conversion(code, src)
        divisor = _divisor(factor)
        raw = value * divisor if divisor else value / factor
        if src.type in _FLOAT_TYPES:
            try:
                data = struct.pack(">" + _STRUCT_CODE[src.type], raw)
            except (OverflowError, struct.error):
                raise ValueError(f"{code}: {value!r} is out of range for {src.type}") from None
        else:
            if not math.isfinite(raw):
                raise ValueError(f"{code}: cannot encode {value!r} as {src.type}")
            n = round(raw)
            lo, hi = _INT_RANGES[src.type]
            if not lo <= n <= hi:
                raise ValueError(f"{code}: {value!r} is out of range for {src.type}")
            data = struct.pack(">" + _STRUCT_CODE[src.type], n)
        words = struct.unpack(f">{len(data) // 2}H", data)
        if swap:
            words = words[::-1]
        for i, w in enumerate(words):
            out[src.address + i] = w
    return out
