"""``emu-opcua probe HOST``: a field technician's check of one meter.

Reads ``status.json`` (identity, network, Modbus, NTP), the live values over Modbus TCP
and from ``meterdata.json`` side by side, the min/max values with their times, the newest
datalog rows, and cross-checks the Modbus values against ``meterdata.json`` (is the
register map right for this meter?). Prints readable, aligned tables.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from emu_opcua import argtypes
from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.clients.modbus import MeterModbusClient
from emu_opcua.errors import ConfigError, EmuError, MeterCommunicationError, ParseError
from emu_opcua.meter.catalogue import BY_CODE, CATALOGUE, Quantity
from emu_opcua.meter.crosscheck import SERIAL_CODE, CrossCheckResult, cross_check
from emu_opcua.meter.datalog import DatalogRow, DatalogStatus
from emu_opcua.meter.meterdata import MeterData
from emu_opcua.meter.registers import RegisterMap
from emu_opcua.meter.status import MeterStatus

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2

EPILOG = """\
exit status:
  0  every check passed. Also when Modbus TCP is switched off on the meter
     (status.json mbactive false): the probe then shows the HTTP values only, says so,
     and skips the cross-check.
  1  the meter answered over HTTP but a check failed: Modbus is switched on but does not
     answer (or answers with errors), the Modbus values disagree with meterdata.json
     (the register map is wrong for this meter), or the datalog cannot be read.
  2  the meter cannot be checked: unreachable, timed out, wrong or missing password,
     an HTTP error or unparseable answer for status.json / meterdata.json, or invalid
     arguments (register-map file, password variable). One line on stderr says why.

The password is read from --password-env VAR (preferred: it stays out of the process
list and shell history) or --password; the HTTP user is always "admin".
"""

#: Decimal places shown per quantity group.
_DECIMALS = {"energy": 3, "power": 3, "current": 3, "voltage": 1, "power_factor": 3,
             "frequency": 2, "identity": 0, "diagnostic": 0}

#: Datalog columns shown: (header, quantity code).
_DATALOG_COLUMNS = (
    ("import kWh", "active_energy_import_total"),
    ("export kWh", "active_energy_export_total"),
    ("P kW", "active_power_total"),
    ("I A", "current_total"),
    ("U L1 V", "voltage_l1"),
    ("f Hz", "frequency"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("host", help="the meter's IP address or host name")
    parser.add_argument("--http-port", type=argtypes.port, default=80, metavar="N",
                        help="HTTP port (default 80)")
    parser.add_argument("--modbus-port", type=argtypes.port_or_auto, default=None, metavar="auto|N",
                        help="Modbus TCP port; 'auto' (default) takes it from status.json (mbport)")
    parser.add_argument("--unit-id", type=int, default=None, metavar="N",
                        help="Modbus unit id (default: the register map's, 1)")
    pw = parser.add_mutually_exclusive_group()
    pw.add_argument("--password", metavar="PW", help="HTTP password (user admin); prefer --password-env")
    pw.add_argument("--password-env", metavar="VAR", help="read the HTTP password from environment variable VAR")
    parser.add_argument("--register-map", type=Path, metavar="FILE",
                        help="register-map TOML overriding the default Modbus layout")
    parser.add_argument("--rows", type=argtypes.int_range(0, 3000, "a number of rows"), default=5, metavar="N",
                        help="newest datalog rows to show (default 5, 0 to skip)")
    parser.add_argument("--timeout", type=argtypes.positive_float, default=5.0, metavar="S",
                        help="seconds to wait for each answer (default 5)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "verbose", 0) < 2:  # one line per request is noise in a report
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        password = _password(args)
        register_map = _register_map(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return asyncio.run(probe(args.host, http_port=args.http_port, modbus_port=args.modbus_port,
                             unit_id=args.unit_id, password=password, register_map=register_map,
                             rows=args.rows, timeout=args.timeout))


def _password(args: argparse.Namespace) -> str | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise ConfigError(f"--password-env: environment variable {args.password_env} is not set")
        return value
    return args.password


def _register_map(args: argparse.Namespace) -> RegisterMap:
    if args.register_map is None:
        return RegisterMap.default()
    try:
        text = args.register_map.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{args.register_map}: cannot read register map ({exc.strerror or exc})") from exc
    return RegisterMap.from_toml(text, source=str(args.register_map))


class _Output:
    """Line printer; tests may pass any writable text stream."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __call__(self, line: str = "") -> None:
        self.stream.write(line + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] = frozenset(),
              indent: str = "  ") -> None:
        widths = [len(h) for h in headers]
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))

        def fmt(cells: Sequence[str]) -> str:
            parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
            return (indent + "  ".join(parts)).rstrip()

        self(fmt(headers))
        self(indent + "  ".join("-" * w for w in widths))
        for row in rows:
            self(fmt(row))


async def probe(host: str, *, http_port: int = 80, modbus_port: int | None = None,
                unit_id: int | None = None, password: str | None = None,
                register_map: RegisterMap | None = None, rows: int = 5, timeout: float = 5.0,
                stream: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check one meter, printing to ``stream`` (errors: one line to ``err``); returns
    the exit status (see EPILOG)."""
    out = _Output(stream if stream is not None else sys.stdout)
    err = err if err is not None else sys.stderr
    register_map = register_map if register_map is not None else RegisterMap.default()
    failed = False
    async with MeterHttpClient(host, http_port, password=password, timeout=timeout) as http:
        try:
            status = await http.status()
        except EmuError as exc:
            print(f"error: {exc}", file=err)
            return EXIT_ERROR
        out(f"Meter {host} (HTTP port {http_port})")
        out()
        _print_status(out, status)

        # Modbus and meterdata close together in time, so the cross-check compares like
        # with like (the meter refreshes both every few seconds).
        port = status.modbus_port if modbus_port is None else modbus_port
        modbus_values: dict[str, float] | None = None
        modbus_note: str | None = None
        modbus_error: EmuError | None = None
        if not status.modbus_enabled:
            modbus_note = ("Modbus TCP is switched off on the meter (status.json mbactive false): "
                           "HTTP values only, no cross-check")
            meterdata_result = await _capture(http.meterdata())
        else:
            modbus = MeterModbusClient(host, port, register_map=register_map, unit_id=unit_id,
                                       timeout=timeout)
            async with modbus:
                meterdata_result, modbus_result = await asyncio.gather(
                    _capture(http.meterdata()), _capture(modbus.read_values()))
            if isinstance(modbus_result, EmuError):
                modbus_error = modbus_result
            else:
                modbus_values = modbus_result
        if isinstance(meterdata_result, EmuError):
            print(f"error: {meterdata_result}", file=err)
            return EXIT_ERROR
        data: MeterData = meterdata_result

        out()
        _print_values(out, data, modbus_values, status, port if status.modbus_enabled else None)
        if modbus_note:
            out(f"  note: {modbus_note}")
        if modbus_error is not None:
            out(f"  Modbus: FAILED: {_one_line(modbus_error)}")
            failed = True
        out()
        _print_extremes(out, data)

        if rows > 0:
            out()
            try:
                datalog = await http.datalog(last=rows)
            except (MeterCommunicationError, ParseError) as exc:
                out(f"Datalog: FAILED: {_one_line(exc)}")
                failed = True
            else:
                _print_datalog(out, datalog, rows)

        out()
        if modbus_values is not None:
            result = cross_check(modbus_values, data, serial=status.serial)
            _print_crosscheck(out, result)
            failed = failed or not result.ok
        elif modbus_note:
            out("Cross-check: skipped (Modbus TCP switched off on the meter)")
        else:
            out("Cross-check: not done (Modbus did not answer)")
    return EXIT_CHECK_FAILED if failed else EXIT_OK


async def _capture(awaitable):
    """The result of ``awaitable``, or the EmuError it raised."""
    try:
        return await awaitable
    except EmuError as exc:
        return exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else "-"


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _print_status(out, s: MeterStatus) -> None:
    out("Status")
    network = (f"DHCP {_on(s.dhcp_enabled)}, IP {s.ip}, netmask {s.netmask}, "
               f"gateway {s.gateway}, DNS {s.dns}")
    rows = [
        ("serial", s.serial),
        ("factory number", str(s.factory_number)),
        ("MAC", s.mac),
        ("firmware", s.firmware_version),
        ("meter time", _time(s.meter_time) if s.meter_time else "not set"),
        ("network", network),
        ("Modbus TCP", f"{_on(s.modbus_enabled)}, port {s.modbus_port}"),
        ("NTP", f"{_on(s.ntp_enabled)}, server {s.ntp_server or '-'}"),
        ("online update", "allowed" if s.online_update_allowed else "not allowed"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out(f"  {key.ljust(width)}  {value}")


def _fmt(q: Quantity, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.{_DECIMALS.get(q.group, 3)}f}"


def _unit(q: Quantity) -> str:
    return q.unit.symbol if q.unit is not None else ""


def _print_values(out, data: MeterData, modbus: dict[str, float] | None, status: MeterStatus,
                  modbus_port: int | None) -> None:
    source = f"Modbus port {modbus_port}" if modbus_port is not None else "Modbus off"
    out(f"Live values (meter time {_time(data.meter_time)}; {source})")
    rows = []
    for q in CATALOGUE:
        in_modbus = modbus is not None and q.code in modbus
        http_value: float | None = data.values.get(q.code)
        if q.code == SERIAL_CODE:
            try:
                http_value = float(int(status.serial))
            except ValueError:
                http_value = None
        if not in_modbus and http_value is None:
            continue
        rows.append((q.display_en, _fmt(q, modbus.get(q.code) if modbus else None),
                     _fmt(q, http_value), _unit(q)))
    out.table(("quantity", "Modbus", "HTTP", "unit"), rows, right={1, 2})


def _print_extremes(out, data: MeterData) -> None:
    if data.extremes is None:
        out("Min/max: not reported by this meter (showMinMax false or absent)")
        return
    out("Min/max")
    rows = []
    for q in CATALOGUE:
        e = data.extremes.get(q.code)
        if e is None:
            continue
        rows.append((q.display_en, _fmt(q, e.minimum.value), _time(e.minimum.time),
                     _fmt(q, e.maximum.value), _time(e.maximum.time), _unit(q)))
    out.table(("quantity", "min", "at", "max", "at", "unit"), rows, right={1, 3})


def _status_text(status: DatalogStatus) -> str:
    if not status:
        return "-"
    return ",".join(f.name.lower() for f in DatalogStatus if f in status and f.name)


def _print_datalog(out, rows: Sequence[DatalogRow], wanted: int) -> None:
    out(f"Datalog (newest {len(rows)} of {wanted} requested rows)")
    if not rows:
        out("  (empty)")
        return
    table = []
    for r in sorted(rows, key=lambda r: r.index, reverse=True):
        cells = [str(r.index), _time(r.timestamp), _status_text(r.status)]
        for _, code in _DATALOG_COLUMNS:
            q = BY_CODE[code]
            cells.append(_fmt(q, r.value(q)))
        table.append(cells)
    headers = ["index", "timestamp", "status", *(h for h, _ in _DATALOG_COLUMNS)]
    out.table(headers, table, right={0, *range(3, 3 + len(_DATALOG_COLUMNS))})


def _print_crosscheck(out, result: CrossCheckResult) -> None:
    verdict = "OK" if result.ok else "FAILED"
    lines = result.summary().splitlines()
    out(f"Cross-check Modbus vs HTTP: {verdict}: {lines[0] if lines else ''}")
    for line in lines[1:]:
        out(f"  {line.strip()}")
