import math

import attrs
import pytest

from emu_opcua.meter.crosscheck import CrossCheckResult, Tolerance, cross_check
from emu_opcua.meter.meterdata import MeterData, parse_meterdata
from emu_opcua.meter.registers import RegisterMap, decode_registers, encode_registers, plan_reads

from .manual_examples import METERDATA_JSON

METERDATA = parse_meterdata(METERDATA_JSON)
SERIAL = "22350000"


def meter_registers(values: dict[str, float]) -> dict[int, int]:
    """What a meter with the true (default) layout holds in its registers."""
    return encode_registers(RegisterMap.default(), values)


def read_with(register_map: RegisterMap, regs: dict[int, int]) -> dict[str, float]:
    """Plan, read and decode with ``register_map`` from a meter holding ``regs``."""
    blocks = {b.address: [regs.get(a, 0) for a in range(b.address, b.end)] for b in plan_reads(register_map)}
    return decode_registers(register_map, blocks)


def true_values() -> dict[str, float]:
    values = dict(METERDATA.values)
    values["meter_serial"] = float(SERIAL)
    values["power_fail_count"] = 2.0
    return values


def test_correct_map_agrees():
    modbus = read_with(RegisterMap.default(), meter_registers(true_values()))
    result = cross_check(modbus, METERDATA, serial=SERIAL)
    assert result.ok, result.summary()
    assert result.compared == 22  # 21 quantities in both + the serial
    assert result.mismatches == ()
    assert "22 quantities compared" in result.summary()


def test_small_legitimate_differences_pass():
    values = true_values()
    values["active_power_total"] *= 1.03  # load moved between the two reads
    values["active_energy_import_total"] += 0.02  # 20 Wh counted meanwhile
    values["voltage_l1"] += 0.8
    values["frequency"] += 0.05
    result = cross_check(read_with(RegisterMap.default(), meter_registers(values)), METERDATA, serial=SERIAL)
    assert result.ok, result.summary()


def shifted(register_map: RegisterMap, by: int) -> RegisterMap:
    return register_map.with_entries(
        {code: attrs.evolve(src, address=src.address + by) for code, src in register_map.entries.items()}
    )


def test_off_by_one_address_map_is_caught():
    # the classic mistake: the document's 1-based register numbers used as wire addresses
    wrong = shifted(RegisterMap.default(), +1)
    modbus = read_with(wrong, meter_registers(true_values()))
    result = cross_check(modbus, METERDATA, serial=SERIAL)
    assert not result.ok
    bad = {m.code for m in result.mismatches}
    assert {"active_energy_import_total", "active_power_total", "current_l1", "voltage_l1",
            "frequency", "meter_serial"} <= bad
    summary = result.summary()
    assert "register map disagrees" in summary
    assert "active_power_total: Modbus" in summary and "expected 6.973 kW" in summary
    # reads the serial's low word, then the unmapped register after it (0)
    assert f"meter_serial: Modbus {(22350000 & 0xFFFF) << 16}, expected 22350000" in summary


def test_word_swapped_map_is_caught():
    wrong = RegisterMap(RegisterMap.default().entries, word_order="little")
    modbus = read_with(wrong, meter_registers(true_values()))
    result = cross_check(modbus, METERDATA, serial=SERIAL)
    assert not result.ok
    # every multi-register value is garbage, except a zero (export energy here), which reads the same
    nonzero = {code for code, v in true_values().items() if v != 0 and code in modbus} - {"power_fail_count"}
    assert {m.code for m in result.mismatches} == nonzero
    assert result.compared == 22 and len(nonzero) == 21
    assert "voltage_l1: Modbus" in result.summary() and "expected 230.9 V" in result.summary()


def test_energy_off_by_one_percent_is_caught():
    values = true_values()
    values["active_energy_import_total"] *= 1.01
    result = cross_check(read_with(RegisterMap.default(), meter_registers(values)), METERDATA)
    assert not result.ok
    (m,) = result.mismatches
    assert m.code == "active_energy_import_total"
    assert m.http == 306.722 and m.modbus == pytest.approx(309.789, abs=1e-3)
    assert m.difference == pytest.approx(3.067, abs=1e-3)
    assert m.allowed == pytest.approx(0.05 + 0.306722)


def test_power_scale_error_is_caught():
    values = true_values()
    values["active_power_l2"] /= 1000  # e.g. a map declaring kW where the wire has W
    result = cross_check(read_with(RegisterMap.default(), meter_registers(values)), METERDATA)
    assert [m.code for m in result.mismatches] == ["active_power_l2"]


def test_serial_mismatch():
    result = cross_check({"meter_serial": 22350001.0}, METERDATA, serial=SERIAL)
    assert not result.ok and result.mismatches[0].code == "meter_serial"
    assert cross_check({"meter_serial": 22350000.0}, METERDATA, serial=" 22350000 ").ok
    assert not cross_check({"meter_serial": 22350000.0}, METERDATA, serial="ABC").ok


def test_serial_not_compared_without_status():
    result = cross_check({"meter_serial": 1.0, "frequency": 50.0}, METERDATA)
    assert result.ok and result.compared == 1


def test_nothing_to_compare_is_not_ok():
    result = cross_check({"power_fail_count": 3.0}, METERDATA)
    assert result == CrossCheckResult(False, 0, ())
    assert "not verified" in result.summary()


def test_non_finite_modbus_value_is_mismatch():
    result = cross_check({"frequency": math.nan}, METERDATA)
    assert not result.ok and result.mismatches[0].code == "frequency"


def test_custom_tolerance_and_exact_default_for_unknown_group():
    md = MeterData(METERDATA.meter_time, {"frequency": 50.0})
    assert not cross_check({"frequency": 50.3}, md).ok
    assert cross_check({"frequency": 50.3}, md, tolerance={"frequency": Tolerance(0.5, 0.0)}).ok
    assert not cross_check({"frequency": 50.0000001}, md, tolerance={}).ok
    assert cross_check({"frequency": 50.0}, md, tolerance={}).ok
