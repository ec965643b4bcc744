"""`emu-opcua serve` as a user runs it: the demo comes up, answers a real client, and
stops cleanly on SIGTERM; a bad configuration is a one-line error naming file and field."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from asyncua import Client, ua

NS = "urn:emu-opcua:nodesets:EmuMeter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "emu_opcua", "serve", *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 60.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    proc.kill()
    raise AssertionError(f"no {needle!r} within {timeout} s; output:\n{''.join(lines)}")


async def test_demo_serves_simulated_meters_and_stops_on_sigterm(tmp_path):
    port = free_port()
    proc = start_serve(tmp_path, "--host", "127.0.0.1", "--port", str(port), "--demo-meters", "2")
    try:
        wait_for_line(proc, "serving 2 meter(s)")
        async with Client(f"opc.tcp://127.0.0.1:{port}/") as client:
            idx = await client.get_namespace_index(NS)
            node = client.get_node(ua.NodeId("demo-2.Measurements.AcVoltagePeL1", idx))
            deadline = time.monotonic() + 30
            while True:
                dv = await node.read_data_value(raise_on_bad_status=False)
                if dv.StatusCode.is_good() or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert dv.StatusCode.is_good(), dv.StatusCode
            assert 200.0 < dv.Value.Value < 260.0
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stopping" in out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
    # the certificate made on first start stays for the next start
    assert (tmp_path / "pki" / "own" / "cert.der").is_file()


def test_configuration_error_names_file_meter_and_field(tmp_path):
    config = tmp_path / "meters.toml"
    config.write_text('[[meters]]\nname = "boiler"\nhost = "192.0.2.7"\nhttp_port = 70000\n')
    proc = subprocess.run([sys.executable, "-m", "emu_opcua", "serve", "--config", str(config)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    message = proc.stdout + proc.stderr
    assert "meters.toml" in message and "boiler" in message and "http_port" in message
    assert "Traceback" not in message


def test_client_example_reads_and_subscribes_against_the_demo(tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "client_read_subscribe.py"
    port = free_port()
    server = start_serve(tmp_path, "--host", "127.0.0.1", "--port", str(port), "--demo-meters", "1")
    client = None
    try:
        wait_for_line(server, "serving 1 meter(s)")
        client = subprocess.Popen([sys.executable, str(example), f"opc.tcp://127.0.0.1:{port}/", "demo-1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
        # values may still wait for their first poll when it reads; the subscription
        # then reports them Good
        lines = wait_for_line(client, "demo-1.Measurements.AcActivePowerTotal")
        while "Good" not in lines[-1]:
            lines += wait_for_line(client, "demo-1.Measurements.AcActivePowerTotal")
        text = "".join(lines)
        assert "meter demo-1: serial" in text and "subscribed" in text
        assert any(line.split()[:1] == ["AcActivePowerTotal"] and " kW " in line for line in lines), text
    finally:
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
