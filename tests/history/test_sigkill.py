"""A gateway killed with SIGKILL mid-backfill: the restart loses and duplicates nothing.

Real processes: ``emu-opcua simulate`` (two meters with 200 days of datalog each) and
``emu-opcua serve --config``; the store is checked against what the meters serve."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from emu_opcua.history.sqlite import FILE_NAME, SqliteHistoryStore
from emu_opcua.meter.datalog import parse_datalog

ROOT = Path(__file__).resolve().parents[2]
DAYS = 200  # 19,200 rows per meter: 7 pages of 3000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def rows_stored(path: Path) -> dict[str, int]:
    """Rows per meter, read straight from the file (as another process would)."""
    if not path.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return dict(con.execute("SELECT meter, sum(rows) FROM series GROUP BY meter").fetchall())
        finally:
            con.close()
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}


def start_gateway(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emu_opcua", "serve", "--config", str(config)],
                            cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def test_sigkill_mid_backfill_then_restart(tmp_path):
    ports_file = tmp_path / "ports.json"
    sim = subprocess.Popen(
        [sys.executable, "-m", "emu_opcua", "simulate", "--meters", "2", "--history-days", str(DAYS),
         "--ports-file", str(ports_file)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = None
    try:
        wait_for(ports_file.exists, 60, "the simulator's ports file")
        meters = json.loads(ports_file.read_text())["meters"]
        data_dir = tmp_path / "data"
        config = tmp_path / "meters.toml"
        config.write_text(
            f'[server]\nendpoint = "opc.tcp://127.0.0.1:{free_port()}/"\npki_dir = "pki"\ndata_dir = "data"\n'
            "[history]\nmax_concurrent_pages = 1\n"
            + "".join(f'[[meters]]\nname = "m{i}"\nhost = "127.0.0.1"\nhttp_port = {m["http_port"]}\n'
                      f'modbus_port = {m["modbus_port"]}\n' for i, m in enumerate(meters)))
        store_path = data_dir / FILE_NAME
        log = tmp_path / "gateway.log"
        gateway = start_gateway(config, log)
        # kill it while the first meter has some pages stored but not all
        partial = wait_for(lambda: (lambda n: n if 0 < n.get("m0", 0) < DAYS * 96 else None)(rows_stored(store_path)),
                           120, "a part of the backfill")
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)
        after_kill = rows_stored(store_path)
        assert after_kill["m0"] >= partial["m0"] and after_kill["m0"] < DAYS * 96, after_kill

        gateway = start_gateway(config, log)
        wait_for(lambda: all(rows_stored(store_path).get(f"m{i}", 0) >= DAYS * 96 for i in range(2)), 180,
                 "every row stored after the restart")
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0, log.read_text()[-3000:]
        gateway = None

        store = SqliteHistoryStore(store_path)
        try:
            for i, m in enumerate(meters):
                (series,) = store.series(f"m{i}")
                assert series.serial == m["serial"]
                indices = list(store.indices(series))
                assert len(indices) == len(set(indices)), "a row stored twice"
                served = fetch_all(m)
                # every row the meter holds, exactly once, as served (the ring may have
                # dropped an old row since it was stored: stored may begin earlier)
                held = {r.index: r for r in served}
                assert set(held) <= set(indices)
                assert indices == list(range(indices[0], indices[-1] + 1))
                got = {r.index: r for r in store.read(f"m{i}", 0, 1 << 40)}
                for index, row in held.items():
                    s = got[index]
                    assert (s.timestamp, s.status, s.raw) == (int(row.timestamp.timestamp()), int(row.status), row.raw)
        finally:
            store.close()
    finally:
        for proc in (gateway, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def fetch_all(meter: dict) -> list:
    base = f"http://127.0.0.1:{meter['http_port']}/data/"
    with httpx.Client(timeout=30) as c:
        newest = parse_datalog(c.get(base, params={"last": 1}).content)[0].index
        rows = []
        start = 1
        while start <= newest:
            rows += parse_datalog(c.get(base, params={"from": start, "to": start + 2999}).content)
            start += 3000
    return rows
