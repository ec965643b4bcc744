"""`emu-opcua serve` and `emu-opcua hash-password` as a user runs them: a port in use or a
foreign bind address is one line on stderr and a non-zero exit, configuration mistakes
and warnings go to stderr, SIGTERM is announced to clients for the grace period."""

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

from emu_opcua.opcua.security import verify_password
from tests.opcua.test_serve_cli import free_port

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def write_config(tmp_path: Path, port: int, *, host: str = "127.0.0.1", meters: str = "", extra: str = "") -> Path:
    config = tmp_path / "meters.toml"
    config.write_text(f'[server]\nhost = "{host}"\nport = {port}\npki_dir = "pki"\n{extra}\n{meters}')
    return config


def serve(config: Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu_opcua", "serve", "--config", str(config)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)


def error_lines(stderr: str) -> list[str]:
    """What serve said itself (not its log lines, not its warnings)."""
    return [line for line in stderr.splitlines()
            if line.startswith("emu-opcua:") and not line.startswith("emu-opcua: warning:")]


def test_port_in_use_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = serve(write_config(tmp_path, port), tmp_path)
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = error_lines(proc.stderr)
    assert errors == [f"emu-opcua: cannot listen on 127.0.0.1:{port}: Address already in use"], proc.stderr
    # and the configuration without meters was warned about
    assert "no [[meters]] configured" in proc.stderr


def test_bind_address_not_on_this_machine(tmp_path):
    proc = serve(write_config(tmp_path, free_port(), host="192.0.2.1"), tmp_path)  # binding sends nothing
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and errors[0].startswith("emu-opcua: cannot listen on 192.0.2.1:"), proc.stderr


def test_configuration_error_goes_to_stderr(tmp_path):
    config = tmp_path / "meters.toml"
    config.write_text('[server]\nmax_sessions = 0\n')
    proc = serve(config, tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == "emu-opcua: configuration error: " \
        f"{config}: server: max_sessions: must be 1-1000, got 0"


async def test_sigterm_is_announced_for_the_grace_period(tmp_path):
    closed = free_port()  # nothing listens there: the meters' polls fail, which is fine here
    meters = "".join(f'[[meters]]\nname = "{n}"\nhost = "127.0.0.1"\nhttp_port = {closed}\nmodbus_port = {closed}\n'
                     for n in ("a", "b"))
    port = free_port()
    config = write_config(tmp_path, port, meters=meters, extra="shutdown_grace = 3")
    proc = subprocess.Popen([sys.executable, "-m", "emu_opcua", "serve", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "serving 2 meter(s)" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        async with Client(f"opc.tcp://127.0.0.1:{port}/", timeout=10) as client:
            state = client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_State))
            assert await state.read_value() == ua.ServerState.Running
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while await state.read_value() != ua.ServerState.Shutdown and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            status = await client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus)).read_value()
            assert status.State == ua.ServerState.Shutdown
            assert 1 <= status.SecondsTillShutdown <= 3
            assert status.ShutdownReason.Text
            assert proc.poll() is None  # still serving during the grace period
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopping in 3 s" in out and "Traceback" not in out + err
    # the two meters at one address were warned about
    assert "meters 'a' and 'b' are both 127.0.0.1:" in err


def test_hash_password_from_a_pipe(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "emu_opcua", "hash-password"], input="s3cret pass\n",
                          capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no prompt, no getpass warning
    [line] = proc.stdout.splitlines()
    assert verify_password("s3cret pass", line) and not verify_password("s3cret pass\n", line)


def test_hash_password_refuses_an_empty_one(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "emu_opcua", "hash-password"], input="",
                          capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("emu-opcua hash-password:")


def test_second_signal_cuts_the_grace_period_short(tmp_path):
    config = write_config(tmp_path, free_port(), extra="shutdown_grace = 600")
    proc = subprocess.Popen([sys.executable, "-m", "emu_opcua", "serve", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        for needle, then in (("serving 0 meter(s)", signal.SIGTERM), ("stopping in 600 s", signal.SIGINT)):
            line = ""
            while needle not in line:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
            proc.send_signal(then)
        out, err = proc.communicate(timeout=60)  # far less than the 600 s announced
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopping\n" in out and "Traceback" not in out + err
