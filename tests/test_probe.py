"""``emu-opcua probe`` as a technician runs it: a subprocess against an in-process
simulated meter on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from emu_opcua.simulator.fleet import Fleet, FleetConfig

ROOT = Path(__file__).resolve().parents[1]

HOST = "127.0.0.1"
PASSWORD = "field-pw-7"


@pytest.fixture
async def meter():
    fleet = Fleet(FleetConfig(control_port=None, password=PASSWORD, host=HOST))
    await fleet.start()
    await fleet.wait_warm()
    try:
        yield fleet.meters[0]
    finally:
        await fleet.stop()


async def run_probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m emu_opcua probe ARGS``; the simulator keeps serving meanwhile."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emu_opcua", "probe", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=full_env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)  # a hang guard, not a check
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


async def test_probe_checks_a_healthy_meter(meter):
    code, out, err = await run_probe(
        HOST, "--http-port", str(meter.http_port), "--modbus-port", str(meter.modbus_port),
        "--password-env", "EMU_TEST_PW", "--rows", "3", env={"EMU_TEST_PW": PASSWORD})
    assert code == 0, err
    assert meter.serial in out
    assert meter.mac in out
    assert "Cross-check Modbus vs HTTP: OK" in out
    newest = meter.physics.last_index
    # only the datalog table's lines start with a number (the row index), newest first
    first_words = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert [w for w in first_words if w.isdigit()] == [str(newest), str(newest - 1), str(newest - 2)]
    assert PASSWORD not in out + err


async def test_probe_finds_the_modbus_port_in_status_json(meter):
    code, out, err = await run_probe(HOST, "--http-port", str(meter.http_port), "--password", PASSWORD)
    assert code == 0, err
    assert f"Modbus port {meter.modbus_port}" in out
    assert "Cross-check Modbus vs HTTP: OK" in out


async def test_wrong_password_is_one_line_exit_2(meter):
    code, out, err = await run_probe(HOST, "--http-port", str(meter.http_port), "--password", "nope-nope")
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "wrong password" in lines[0]
    assert "nope-nope" not in err


async def test_missing_password_is_one_line_exit_2(meter):
    code, _out, err = await run_probe(HOST, "--http-port", str(meter.http_port))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "none given" in err


async def test_unreachable_meter_is_one_line_exit_2():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    code, out, err = await run_probe(HOST, "--http-port", str(port), "--timeout", "3")
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "cannot connect" in err


async def test_modbus_switched_off_shows_http_values_only(meter):
    await meter.disable_modbus()
    code, out, err = await run_probe(HOST, "--http-port", str(meter.http_port), "--password", PASSWORD)
    assert code == 0, err
    assert "switched off" in out
    assert "Cross-check: skipped" in out
    assert "Cross-check Modbus vs HTTP" not in out


async def test_modbus_not_answering_fails_the_check(meter):
    await meter.drop_modbus_connections()
    code, out, err = await run_probe(HOST, "--http-port", str(meter.http_port), "--password", PASSWORD,
                                     "--timeout", "2")
    assert code == 1, out + err
    assert "Modbus: FAILED" in out
    assert meter.serial in out  # the HTTP part of the report is still there


async def test_register_map_that_disagrees_fails_the_cross_check(meter, tmp_path):
    # voltage L1 moved to an unused register of the same bank (reads 0 V): a wrong map
    # that decodes without error, which only the cross-check can catch
    bad = tmp_path / "map.toml"
    bad.write_text("[registers.voltage_l1]\naddress = 9209\n", encoding="utf-8")
    code, out, err = await run_probe(HOST, "--http-port", str(meter.http_port), "--password", PASSWORD,
                                     "--register-map", str(bad))
    assert code == 1, out + err
    assert "Cross-check Modbus vs HTTP: FAILED" in out
    assert "voltage_l1" in out


async def test_bad_register_map_file_is_exit_2(meter, tmp_path):
    bad = tmp_path / "map.toml"
    bad.write_text("[registers.voltage_l1]\naddress = 'nine'\n", encoding="utf-8")
    code, out, err = await run_probe(HOST, "--http-port", str(meter.http_port), "--password", PASSWORD,
                                     "--register-map", str(bad))
    assert code == 2
    assert out == ""
    assert str(bad) in err and err.startswith("error: ")
