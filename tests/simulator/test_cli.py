"""``emu-opcua simulate`` as a subprocess: ports file, fetch, SIGTERM, clean exit."""

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

# The dispatcher imports every subcommand's module; while another one is still being
# written it cannot start, and the simulator's own entry point is tested instead.
_DISPATCHER_READY = all(
    importlib.util.find_spec(m) is not None
    for m in ("emu_opcua.opcua.serve", "emu_opcua.probe", "emu_opcua.simulator.cli")
)


@pytest.mark.parametrize("entry", [
    pytest.param(["-m", "emu_opcua", "simulate"], id="emu-opcua simulate",
                 marks=pytest.mark.skipif(not _DISPATCHER_READY, reason="a subcommand module is missing")),
    pytest.param(["-m", "emu_opcua.simulator"], id="python -m emu_opcua.simulator"),
])
def test_cli_ports_file_fetch_and_sigterm(tmp_path, entry):
    ports_file = tmp_path / "ports.json"
    proc = subprocess.Popen(
        [sys.executable, *entry, "--meters", "2", "--history-days", "1", "--password", "pw",
         "--ports-file", str(ports_file)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ports_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no ports file after 30 s"
            time.sleep(0.05)
        doc = json.loads(ports_file.read_text())
        assert [m["serial"] for m in doc["meters"]] == ["22350000", "22350001"]
        for m in doc["meters"]:
            r = httpx.get(f"http://127.0.0.1:{m['http_port']}/meterdata.json", auth=("admin", "pw"), timeout=10)
            assert r.status_code == 200 and r.json()["meterdatetime"] > 0
        r = httpx.get(f"http://127.0.0.1:{doc['control_port']}/_sim/meters", timeout=10)
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "22350001" in out and "modbus" in out
    assert "Traceback" not in err


def test_history_options_reach_the_fleet_config():
    import argparse

    from emu_opcua.simulator.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args([
        "--history-days", "0", "--datalog-capacity", "500", "--logbook-capacity", "7",
        "--sync-delay", "120", "--speed", "3600"]))
    assert (config.history_days, config.datalog_capacity, config.logbook_capacity,
            config.sync_delay, config.speed) == (0, 500, 7, 120, 3600)
    with pytest.raises(SystemExit):
        config_from_args(parser.parse_args(["--sync-delay", "-1"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--datalog-capacity", "0"])
