"""Round trips of every encoder/parser pair (first cut; detailed tests beside this file)."""

from datetime import datetime, timedelta, timezone

from emu_opcua.meter.datalog import DatalogRow, DatalogStatus, format_datalog, parse_datalog
from emu_opcua.meter.logbook import format_logbook, parse_logbook
from emu_opcua.meter.meterdata import MeterData, format_meterdata, parse_meterdata
from emu_opcua.meter.registers import RegisterMap, decode_registers, encode_registers, plan_reads

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_datalog_round_trip():
    rows = tuple(
        DatalogRow(T0 + timedelta(minutes=15 * i), i + 1, DatalogStatus(i % 256), "22350000",
                   tuple(range(i, i + 24)))
        for i in range(10)
    )
    assert parse_datalog(format_datalog(rows)) == rows
    assert parse_datalog(format_datalog(rows, header=False, sep=",")) == rows


def test_logbook_round_trip():
    line = "2022-09-28T10:35:00Z;2022-09-28T10:37:30Z;3;22350000;2568;120;487;3615;35;500;5;5;5;200;100;100;100;1000;10;2;40\n"
    entries = parse_logbook(line)
    assert entries[0].ct_primary == 500 and entries[0].pulse_length_ms_before == 40
    assert parse_logbook(format_logbook(entries)) == entries


def test_meterdata_round_trip():
    md = MeterData(T0, {"active_power_total": 6.973, "voltage_l1": 230.9})
    assert parse_meterdata(format_meterdata(md)) == md


def test_registers_round_trip():
    m = RegisterMap.default()
    values = {"active_power_total": 6.5, "active_energy_import_total": 306.722, "power_fail_count": 3.0}
    regs = encode_registers(m, values)
    blocks = {b.address: [regs.get(a, 0) for a in range(b.address, b.end)] for b in plan_reads(m)}
    decoded = decode_registers(m, blocks)
    for code, v in values.items():
        assert decoded[code] == v
