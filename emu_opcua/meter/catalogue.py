"""The value catalogue: every quantity an EMU Professional II meter reports, once.

This table is the single source of truth for what a quantity is called (code, OPC UA
BrowseName, English and German display names), its OBIS code, its served unit, and
where each of the meter's interfaces carries it:

- ``meterdata``: key in ``/meterdata.json`` (decimal string, already in ``unit``);
  ``extremes`` names the min/max key stem when the meter reports extremes for it.
- ``datalog``: 1-based CSV column(s) of the datalog (summed when several: the meter logs
  T1 and T2 only, totals are their sum), the scale from the raw integer and its unit.
- ``modbus``: the project's default register (see FIELD-EVIDENCE: 1-based document
  numbers minus one), its type and the unit on the wire. A user's register-map file
  overrides these (``emu_opcua.meter.registers``).

The parsers, the clients, the simulator and the OPC UA model all read this table; no
other module may spell a meterdata key, a CSV column number or a register address.
"""

from __future__ import annotations

from typing import Literal

from attrs import frozen

from emu_opcua.meter import units as u
from emu_opcua.meter.units import Unit

RegisterType = Literal["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"]

#: Number of 16-bit registers each type occupies.
REGISTER_WIDTH: dict[str, int] = {
    "uint16": 1, "int16": 1, "uint32": 2, "int32": 2,
    "uint64": 4, "int64": 4, "float32": 2, "float64": 4,
}


@frozen
class DatalogSource:
    columns: tuple[int, ...]  # 1-based CSV columns; summed when more than one
    scale: float  # raw integer * scale = value in ``unit``
    unit: Unit


@frozen
class ModbusSource:
    address: int  # wire address (0-based), what pymodbus calls ``address=``
    type: RegisterType
    unit: Unit | None  # unit on the wire; None for dimensionless counts
    scale: float = 1.0  # raw * scale = value in ``unit``

    @property
    def count(self) -> int:
        return REGISTER_WIDTH[self.type]


@frozen
class Quantity:
    code: str  # stable identifier, used in config files, node ids and history
    browse_name: str  # OPC UA BrowseName (OPC 34100 / PROFIenergy naming)
    group: Literal["energy", "power", "current", "voltage", "power_factor", "frequency", "identity", "diagnostic"]
    unit: Unit | None  # served unit; None for counts and identifiers
    display_en: str
    display_de: str
    description_en: str
    description_de: str
    obis: str | None = None
    eu_range: tuple[float, float] | None = None
    meterdata: str | None = None
    extremes: str | None = None  # e.g. "p_{}_L1_e" -> p_min_L1_e / p_max_L1_e / ts_p_min_L1_e
    datalog: DatalogSource | None = None
    modbus: ModbusSource | None = None

    @property
    def is_measurement(self) -> bool:
        return self.group not in ("identity", "diagnostic")

    def extreme_key(self, which: Literal["min", "max"]) -> str:
        if self.extremes is None:
            raise KeyError(f"{self.code} has no min/max in meterdata.json")
        return self.extremes.format(which)


_ENERGY_RANGE = (0.0, 1.0e9)
_POWER_RANGE = (-1000.0, 1000.0)  # kW / kvar; a CT meter on a large feeder stays inside
_CURRENT_RANGE = (0.0, 2000.0)
_VOLTAGE_RANGE = (0.0, 300.0)
_PF_RANGE = (-1.0, 1.0)
_FREQ_RANGE = (45.0, 65.0)

_PHASE_DE = {"L1": "L1", "L2": "L2", "L3": "L3"}


def _energy(code, browse, obis, en, de, meterdata, columns, unit, dl_unit, modbus=None):
    return Quantity(
        code=code, browse_name=browse, group="energy", unit=unit,
        display_en=en, display_de=de,
        description_en=f"{en} ({obis})", description_de=f"{de} ({obis})",
        obis=obis, eu_range=_ENERGY_RANGE, meterdata=meterdata,
        datalog=DatalogSource(columns, 1.0, dl_unit), modbus=modbus,
    )


def _build() -> tuple[Quantity, ...]:
    q: list[Quantity] = [
        # --- active energy, kWh ----------------------------------------------------
        _energy("active_energy_import_total", "AcActiveEnergyTotalImportHp", "1-0:1.8.0",
                "Active energy import total", "Wirkenergie Bezug total",
                "wpulse_cnt_L123_e", (5, 6), u.KWH, u.WH, ModbusSource(5999, "uint64", u.WH)),
        _energy("active_energy_import_t1", "AcActiveEnergyT1ImportHp", "1-0:1.8.1",
                "Active energy import T1", "Wirkenergie Bezug T1",
                "wpulse_cnt_L123_T1_e", (5,), u.KWH, u.WH),
        _energy("active_energy_import_t2", "AcActiveEnergyT2ImportHp", "1-0:1.8.2",
                "Active energy import T2", "Wirkenergie Bezug T2",
                "wpulse_cnt_L123_T2_e", (6,), u.KWH, u.WH),
        _energy("active_energy_export_total", "AcActiveEnergyTotalExportHp", "1-0:2.8.0",
                "Active energy export total", "Wirkenergie Lieferung total",
                "wpulse_cnt_ex_L123_e", (7, 8), u.KWH, u.WH, ModbusSource(6019, "uint64", u.WH)),
        _energy("active_energy_export_t1", "AcActiveEnergyT1ExportHp", "1-0:2.8.1",
                "Active energy export T1", "Wirkenergie Lieferung T1",
                "wpulse_cnt_ex_L123_T1_e", (7,), u.KWH, u.WH),
        _energy("active_energy_export_t2", "AcActiveEnergyT2ExportHp", "1-0:2.8.2",
                "Active energy export T2", "Wirkenergie Lieferung T2",
                "wpulse_cnt_ex_L123_T2_e", (8,), u.KWH, u.WH),
        # --- reactive energy, kvarh (datalog only) ----------------------------------
        _energy("reactive_energy_import_total", "AcReactiveEnergyTotalImportHp", "1-0:3.8.0",
                "Reactive energy import total", "Blindenergie Bezug total",
                None, (9, 10), u.KVARH, u.VARH),
        _energy("reactive_energy_import_t1", "AcReactiveEnergyT1ImportHp", "1-0:3.8.1",
                "Reactive energy import T1", "Blindenergie Bezug T1", None, (9,), u.KVARH, u.VARH),
        _energy("reactive_energy_import_t2", "AcReactiveEnergyT2ImportHp", "1-0:3.8.2",
                "Reactive energy import T2", "Blindenergie Bezug T2", None, (10,), u.KVARH, u.VARH),
        _energy("reactive_energy_export_total", "AcReactiveEnergyTotalExportHp", "1-0:4.8.0",
                "Reactive energy export total", "Blindenergie Lieferung total",
                None, (11, 12), u.KVARH, u.VARH),
        _energy("reactive_energy_export_t1", "AcReactiveEnergyT1ExportHp", "1-0:4.8.1",
                "Reactive energy export T1", "Blindenergie Lieferung T1", None, (11,), u.KVARH, u.VARH),
        _energy("reactive_energy_export_t2", "AcReactiveEnergyT2ExportHp", "1-0:4.8.2",
                "Reactive energy export T2", "Blindenergie Lieferung T2", None, (12,), u.KVARH, u.VARH),
    ]

    # --- instantaneous values: total and per phase -----------------------------------
    # (code stem, browse stem, group, unit, en, de, meterdata letter, phases,
    #  datalog first column + scale + unit, modbus first address + wire unit, range, obis per phase)
    phases_total = ("L123", "L1", "L2", "L3")
    phases = ("L1", "L2", "L3")
    obis = {
        "active_power": {"L123": "1-0:16.7.0", "L1": "1-0:36.7.0", "L2": "1-0:56.7.0", "L3": "1-0:76.7.0"},
        "reactive_power": {"L123": "1-0:131.7.0", "L1": "1-0:151.7.0", "L2": "1-0:171.7.0", "L3": "1-0:191.7.0"},
        "current": {"L123": "1-0:90.7.0", "L1": "1-0:31.7.0", "L2": "1-0:51.7.0", "L3": "1-0:71.7.0"},
        "voltage": {"L1": "1-0:32.7.0", "L2": "1-0:52.7.0", "L3": "1-0:72.7.0"},
        "power_factor": {"L1": "1-0:33.7.0", "L2": "1-0:53.7.0", "L3": "1-0:73.7.0"},
    }
    specs = [
        # stem, browse, group, unit, en, de, letter, phases, dl(col0, scale, unit), mb(addr0, unit), range
        ("active_power", "AcActivePower", "power", u.KW, "Active power", "Wirkleistung", "p",
         phases_total, (13, 1.0, u.W), (8999, u.W), _POWER_RANGE),
        ("reactive_power", "AcReactivePower", "power", u.KVAR, "Reactive power", "Blindleistung", "q",
         phases_total, None, (9009, u.VAR), _POWER_RANGE),
        ("current", "AcCurrent", "current", u.A, "Current", "Strom", "i",
         phases_total, (17, 0.001, u.A), (9099, u.A), _CURRENT_RANGE),
        ("voltage", "AcVoltagePe", "voltage", u.V, "Voltage", "Spannung", "u",
         phases, (22, 0.1, u.V), (9199, u.V), _VOLTAGE_RANGE),
        ("power_factor", "AcPowerFactor", "power_factor", u.ONE, "Power factor", "Leistungsfaktor", "pf",
         phases, (25, 0.01, u.ONE), (9299, u.ONE), _PF_RANGE),
    ]
    for stem, browse, group, unit, en, de, letter, phs, dl, mb, rng in specs:
        for i, ph in enumerate(phs):
            total = ph == "L123"
            label_en = f"{en} total" if total else f"{en} {ph}"
            label_de = f"{de} total" if total else f"{de} {ph}"
            if stem == "voltage":
                label_en, label_de = f"{en} {ph}-N", f"{de} {ph}-N"
            code = f"{stem}_{'total' if total else ph.lower()}"
            q.append(Quantity(
                code=code,
                browse_name=f"{browse}Total" if total else f"{browse}{ph}",
                group=group, unit=unit, display_en=label_en, display_de=label_de,
                description_en=f"{label_en}, {obis[stem][ph]}",
                description_de=f"{label_de}, {obis[stem][ph]}",
                obis=obis[stem][ph], eu_range=rng,
                meterdata=f"{letter}_{ph}_act_e",
                extremes=f"{letter}_{{}}_{ph}_e",
                datalog=DatalogSource((dl[0] + i,), dl[1], dl[2]) if dl else None,
                modbus=ModbusSource(mb[0] + 2 * i, "float32", mb[1]),
            ))
    q.append(Quantity(
        code="current_neutral", browse_name="AcCurrentN", group="current", unit=u.A,
        display_en="Current N", display_de="Strom N",
        description_en="Neutral current (datalog only), 1-0:91.7.0",
        description_de="Neutralleiterstrom (nur Datenlogger), 1-0:91.7.0",
        obis="1-0:91.7.0", eu_range=_CURRENT_RANGE,
        datalog=DatalogSource((21,), 0.001, u.A),
    ))
    q.append(Quantity(
        code="frequency", browse_name="AcFrequency", group="frequency", unit=u.HZ,
        display_en="Frequency", display_de="Frequenz",
        description_en="Mains frequency, 1-0:14.7.0", description_de="Netzfrequenz, 1-0:14.7.0",
        obis="1-0:14.7.0", eu_range=_FREQ_RANGE,
        meterdata="f_L123_act_e", extremes="f_{}_L123_e",
        datalog=DatalogSource((28,), 0.1, u.HZ),
        modbus=ModbusSource(9309, "float32", u.HZ),
    ))
    # --- identity and diagnostics read over Modbus (cross-checked against status.json) --
    q.append(Quantity(
        code="meter_serial", browse_name="MeterSerial", group="identity", unit=None,
        display_en="Meter serial number", display_de="Zählerseriennummer",
        description_en="Serial number read over Modbus; must equal status.json meterserial",
        description_de="Seriennummer über Modbus; muss status.json meterserial entsprechen",
        datalog=DatalogSource((4,), 1.0, u.ONE),
        modbus=ModbusSource(4999, "uint32", None),
    ))
    q.append(Quantity(
        code="power_fail_count", browse_name="PowerFailCount", group="diagnostic", unit=None,
        display_en="Power failures", display_de="Netzausfälle",
        description_en="Number of power failures counted by the meter",
        description_de="Anzahl vom Zähler gezählter Netzausfälle",
        modbus=ModbusSource(10999, "uint16", None),
    ))
    return tuple(q)


#: Every quantity, in a stable order (the OPC UA model and the simulator follow it).
CATALOGUE: tuple[Quantity, ...] = _build()
BY_CODE: dict[str, Quantity] = {q.code: q for q in CATALOGUE}
MEASUREMENTS: tuple[Quantity, ...] = tuple(q for q in CATALOGUE if q.is_measurement)
#: Quantities carried by meterdata.json, keyed by their JSON key.
BY_METERDATA_KEY: dict[str, Quantity] = {q.meterdata: q for q in CATALOGUE if q.meterdata}
#: Quantities with min/max (and their timestamps) in meterdata.json.
WITH_EXTREMES: tuple[Quantity, ...] = tuple(q for q in CATALOGUE if q.extremes)
#: Number of columns of a datalog row, and of a logbook row.
DATALOG_COLUMNS = 28
LOGBOOK_COLUMNS = 21
