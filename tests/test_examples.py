"""The examples work as their comments say: the configuration loads, the client example
reads and subscribes against the demo server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu_opcua.opcua.config import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_example_configuration_loads():
    config = load_config(EXAMPLES / "meters.toml", environ={"EMU_METER_PASSWORD": "from-env"})
    assert len(config.meters) >= 2
    assert all(m.host.startswith("192.0.2.") for m in config.meters)  # documentation addresses
    assert any(m.password == "from-env" for m in config.meters)


def test_example_configuration_names_a_missing_password_variable():
    with pytest.raises(Exception, match="EMU_METER_PASSWORD"):
        load_config(EXAMPLES / "meters.toml", environ={})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_until(proc: subprocess.Popen, done, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if done(lines):
            return lines
    raise AssertionError("output so far:\n" + "".join(lines))


def test_client_example_reads_and_subscribes_against_the_demo(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "emu_opcua", "serve", "--host", "127.0.0.1",
                               "--port", str(port), "--demo-meters", "1"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    client = None
    try:
        read_until(server, lambda lines: "serving 1 meter(s)" in lines[-1], 60)
        client = subprocess.Popen([sys.executable, str(EXAMPLES / "client_read_subscribe.py"),
                                   f"opc.tcp://127.0.0.1:{port}/", "demo-1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = read_until(client, lambda lines: any("subscribed" in x for x in lines)
                           and any("demo-1.Measurements.AcActivePowerTotal" in x and "Good" in x for x in lines), 60)
        text = "".join(lines)
        assert "meter demo-1: serial" in text
        assert any(line.split()[:1] == ["AcActivePowerTotal"] and " kW " in line for line in lines), text
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
