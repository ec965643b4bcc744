import math
import struct

import pytest

from emu_opcua.errors import ConfigError, ParseError
from emu_opcua.meter.catalogue import BY_CODE, CATALOGUE, ModbusSource
from emu_opcua.meter.registers import (
    ReadBlock, RegisterMap, decode_registers, encode_registers, plan_reads,
)
from emu_opcua.meter import units as u


def read_all(register_map: RegisterMap, regs: dict[int, int], **plan) -> dict[int, list[int]]:
    """What a Modbus client would read for the planned blocks (unwritten registers: 0)."""
    return {b.address: [regs.get(a, 0) for a in range(b.address, b.end)] for b in plan_reads(register_map, **plan)}


# --- the default map and planning -----------------------------------------------------------
def test_default_map_from_catalogue():
    m = RegisterMap.default()
    assert set(m.entries) == {q.code for q in CATALOGUE if q.modbus}
    assert m.entries["active_power_total"] == ModbusSource(8999, "float32", u.W)
    assert m.unit_id == 1 and m.word_order == "big"


def test_default_plan():
    assert plan_reads(RegisterMap.default()) == (
        ReadBlock(4999, 2),  # serial
        ReadBlock(5999, 4),  # energy import
        ReadBlock(6019, 4),  # energy export (16 registers away: not merged)
        ReadBlock(8999, 18),  # active + reactive power (2-register gap merged)
        ReadBlock(9099, 8),  # currents
        ReadBlock(9199, 6),  # voltages
        ReadBlock(9299, 12),  # power factors + frequency (4-register gap merged)
        ReadBlock(10999, 1),  # power-fail counter
    )


def test_plan_without_gaps_and_with_larger_gap():
    m = RegisterMap.default()
    strict = plan_reads(m, max_gap=0)
    assert ReadBlock(9299, 6) in strict and ReadBlock(9309, 2) in strict
    assert ReadBlock(8999, 8) in strict and ReadBlock(9009, 8) in strict
    assert ReadBlock(5999, 24) in plan_reads(m, max_gap=16)


def test_plan_respects_max_count_and_never_splits_an_entry():
    entries = {q.code: ModbusSource(100 + 2 * i, "float32", q.modbus.unit) for i, q in
               enumerate(q for q in CATALOGUE if q.modbus and q.modbus.type == "float32")}
    m = RegisterMap(entries)
    blocks = plan_reads(m, max_count=5)
    assert all(b.count <= 5 and b.count % 2 == 0 for b in blocks)
    assert sum(b.count for b in blocks) == 2 * len(entries)
    assert len(entries) == 19  # 38 contiguous registers
    assert [b.count for b in plan_reads(m, max_count=20)] == [20, 18]
    with pytest.raises(ValueError):
        plan_reads(m, max_gap=-1)
    with pytest.raises(ValueError):
        plan_reads(m, max_count=126)


def test_plan_covers_every_entry():
    m = RegisterMap.default()
    blocks = plan_reads(m)
    for src in m.entries.values():
        assert any(b.address <= src.address and src.address + src.count <= b.end for b in blocks)


# --- decoding -----------------------------------------------------------------------------
def test_wire_layout_big_endian_high_word_first():
    m = RegisterMap.default()
    regs = encode_registers(m, {"active_power_total": 6.973, "active_energy_import_total": 306.722,
                                "meter_serial": 22350000, "power_fail_count": 7})
    hi, lo = struct.unpack(">HH", struct.pack(">f", 6973.0))
    assert (regs[8999], regs[9000]) == (hi, lo)
    assert [regs[a] for a in range(5999, 6003)] == [0, 0, 306722 >> 16, 306722 & 0xFFFF]
    assert (regs[4999], regs[5000]) == (22350000 >> 16, 22350000 & 0xFFFF)
    assert regs[10999] == 7


def test_word_swap_reverses_words():
    big = encode_registers(RegisterMap.default(), {"active_energy_import_total": 306.722, "frequency": 50.0})
    little = encode_registers(RegisterMap(RegisterMap.default().entries, word_order="little"),
                              {"active_energy_import_total": 306.722, "frequency": 50.0})
    assert [little[a] for a in range(5999, 6003)] == [big[a] for a in range(6002, 5998, -1)]
    assert (little[9309], little[9310]) == (big[9310], big[9309])


def test_decode_converts_units():
    m = RegisterMap.default()
    hi, lo = struct.unpack(">HH", struct.pack(">f", -2500.0))
    values = decode_registers(m, {8999: [hi, lo]})
    assert values == {"active_power_total": -2.5}  # W on the wire -> kW; other entries not read


TYPES = ["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"]
SAMPLES = {
    "uint16": [0, 1, 65535], "int16": [-32768, -1, 0, 32767],
    "uint32": [0, 70000, 2**32 - 1], "int32": [-(2**31), -70000, 2**31 - 1],
    "uint64": [0, 2**40 + 3, 2**53], "int64": [-(2**53), -5, 2**50],
    "float32": [0.0, -1.5, 6973.0, 1e-3], "float64": [math.pi, -1e300, 0.1],
}


@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("rtype", TYPES)
def test_round_trip_every_type(rtype, word_order):
    # power_fail_count is a count (no unit): raw values pass through
    for value in SAMPLES[rtype]:
        m = RegisterMap({"power_fail_count": ModbusSource(40, rtype, None)}, word_order=word_order)
        regs = encode_registers(m, {"power_fail_count": value})
        assert all(0 <= r <= 0xFFFF for r in regs.values())
        decoded = decode_registers(m, read_all(m, regs))["power_fail_count"]
        # float32 samples have at most 7 significant digits: they come back exactly
        assert decoded == value


def test_round_trip_with_scale_and_unit():
    m = RegisterMap({"active_energy_import_total": ModbusSource(10, "uint32", u.WH, scale=10.0),
                     "voltage_l1": ModbusSource(20, "int16", u.V, scale=0.1)})
    regs = encode_registers(m, {"active_energy_import_total": 306.72, "voltage_l1": 230.9})
    assert regs[11] == 30672 and regs[20] == 2309
    assert decode_registers(m, read_all(m, regs)) == pytest.approx({"active_energy_import_total": 306.72, "voltage_l1": 230.9})


def test_round_trip_whole_default_map():
    m = RegisterMap.default()
    values = {q.code: (q.eu_range[1] / 3 if q.eu_range else 12345.0) for q in CATALOGUE if q.modbus}
    values["active_energy_import_total"] = 987654.321
    decoded = decode_registers(m, read_all(m, encode_registers(m, values)))
    assert decoded.keys() == values.keys()
    for code, v in values.items():
        assert decoded[code] == pytest.approx(v, rel=1e-6), code
    assert decoded["active_energy_import_total"] == 987654.321  # integer Wh -> exact kWh


@pytest.mark.parametrize("bits", [0x7FC00000, 0x7F800000, 0xFF800000])
def test_nan_or_infinite_float_is_parse_error(bits):
    with pytest.raises(ParseError, match=r"register 9099 \(current_total\)"):
        decode_registers(RegisterMap.default(), {9099: [bits >> 16, bits & 0xFFFF]})


@pytest.mark.parametrize("bad", [65536, -1, 1.5, None])
def test_register_out_of_range(bad):
    with pytest.raises(ParseError, match="block at 9099"):
        decode_registers(RegisterMap.default(), {9099: [0, bad]})


def test_partial_blocks_give_partial_values():
    m = RegisterMap.default()
    regs = encode_registers(m, {"current_l1": 11.397})
    values = decode_registers(m, {9101: [regs[9101], regs[9102]], 9103: [0]})  # 9103 too short for a float
    assert values == {"current_l1": pytest.approx(11.397)}


def test_encode_out_of_range():
    with pytest.raises(ValueError, match="power_fail_count"):
        encode_registers(RegisterMap.default(), {"power_fail_count": 70000})
    with pytest.raises(ValueError, match="active_energy_import_total"):
        encode_registers(RegisterMap.default(), {"active_energy_import_total": -1.0})
    with pytest.raises(ValueError, match="active_power_total"):
        encode_registers(RegisterMap.default(), {"active_power_total": 1e40})


def test_encode_ignores_codes_without_register():
    assert encode_registers(RegisterMap.default(), {"current_neutral": 1.0}) == {}


# --- the user's TOML file -------------------------------------------------------------------
def test_toml_override_add_disable():
    m = RegisterMap.from_toml(
        """
        unit_id = 3
        word_order = "little"

        [registers.active_power_total]
        address = 8998

        [registers.current_neutral]   # not in the default map: added
        address = 9107
        type = "float32"
        unit = "A"

        [registers.active_energy_import_total]
        type = "uint32"
        unit = "kWh"
        scale = 0.1

        [registers.power_fail_count]
        disabled = true
        """,
        source="map.toml",
    )
    assert (m.unit_id, m.word_order) == (3, "little")
    assert m.entries["active_power_total"] == ModbusSource(8998, "float32", u.W)
    assert m.entries["current_neutral"] == ModbusSource(9107, "float32", u.A)
    assert m.entries["active_energy_import_total"] == ModbusSource(5999, "uint32", u.KWH, 0.1)
    assert "power_fail_count" not in m.entries
    assert m.entries["voltage_l1"] == RegisterMap.default().entries["voltage_l1"]
    regs = encode_registers(m, {"active_energy_import_total": 306.7})
    assert decode_registers(m, read_all(m, regs))["active_energy_import_total"] == pytest.approx(306.7)


def test_empty_toml_is_default():
    assert RegisterMap.from_toml("", source="x.toml") == RegisterMap.default()


@pytest.mark.parametrize(
    "text, field",
    [
        ("[registers.active_power_totl]\naddress = 1", "registers.active_power_totl"),
        ("[registers.active_power_total]\ntype = \"float16\"", "registers.active_power_total.type"),
        ("[registers.active_power_total]\nunit = \"kWatt\"", "registers.active_power_total.unit"),
        ("[registers.active_power_total]\nunit = \"V\"", "registers.active_power_total.unit"),
        ("[registers.active_power_total]\naddres = 1", "registers.active_power_total.addres"),
        ("[registers.active_power_total]\naddress = -1", "registers.active_power_total.address"),
        ("[registers.active_power_total]\naddress = \"8999\"", "registers.active_power_total.address"),
        ("[registers.active_power_total]\nscale = 0", "registers.active_power_total.scale"),
        ("[registers.active_power_total]\ndisabled = \"yes\"", "registers.active_power_total.disabled"),
        ("[registers.current_neutral]\naddress = 9107", "registers.current_neutral.type"),
        ("[registers.current_neutral]\ntype = \"float32\"", "registers.current_neutral.address"),
        ("[registers.power_fail_count]\nunit = \"W\"", "registers.power_fail_count.unit"),
        ("[registers.active_power_l1]\naddress = 9000", "registers.active_power_l1.address"),  # overlaps total
        ("[registers.power_fail_count]\naddress = 65535\ntype = \"uint32\"", "registers.power_fail_count.address"),
        ("unit_id = 300", "unit_id"),
        ("word_order = \"middle\"", "word_order"),
        ("wordorder = \"big\"", "wordorder"),
        ("registers = 5", "registers"),
    ],
)
def test_toml_errors_name_source_and_field(text, field):
    with pytest.raises(ConfigError) as info:
        RegisterMap.from_toml(text, source="/etc/emu/map.toml")
    assert str(info.value).startswith(f"/etc/emu/map.toml: {field}:")


def test_toml_syntax_error():
    with pytest.raises(ConfigError, match="map.toml: not valid TOML"):
        RegisterMap.from_toml("[registers\n", source="map.toml")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"word_order": "middle"},
        {"unit_id": 256},
        {"entries": {"no_such_quantity": ModbusSource(1, "uint16", None)}},
        {"entries": {"voltage_l1": ModbusSource(1, "float32", u.W)}},  # W cannot become V
        {"entries": {"power_fail_count": ModbusSource(1, "uint16", u.W)}},  # a count has no unit
        {"entries": {"voltage_l1": ModbusSource(1, "float16", u.V)}},  # type: ignore[arg-type]
    ],
)
def test_register_map_validates(kwargs):
    with pytest.raises(ValueError):
        RegisterMap(**({"entries": {}} | kwargs))


def test_catalogue_units_convert():
    """Every default entry's wire unit converts to its quantity's unit (or both are counts)."""
    for code, src in RegisterMap.default().entries.items():
        q = BY_CODE[code]
        assert (q.unit is None) == (src.unit is None), code
        if q.unit is not None:
            src.unit.convert_to(q.unit)


def test_float32_values_keep_the_digits_the_meter_sent():
    import struct as _struct

    from emu_opcua.meter.registers import RegisterMap as _Map, decode_registers as _decode

    register_map = _Map.default()
    source = register_map.entries["voltage_l1"]
    hi, lo = _struct.unpack(">HH", _struct.pack(">f", 230.8182))
    values = _decode(register_map.with_entries({"voltage_l1": source}), {source.address: [hi, lo]})
    assert values["voltage_l1"] == 230.8182  # not 230.81820678710938
    power = register_map.entries["active_power_total"]
    hi, lo = _struct.unpack(">HH", _struct.pack(">f", 295.1228))
    values = _decode(register_map.with_entries({"active_power_total": power}), {power.address: [hi, lo]})
    # W -> kW; float32 noise (~1e-8 relative) removed, only double rounding (~1e-16) left
    assert values["active_power_total"] == pytest.approx(0.2951228, rel=1e-12, abs=0)
