"""Client-side CPU per request, polling simulated meters the way the gateway does.

    .venv/bin/python bench/bench_meter_clients.py [--meters 100] [--seconds 5] [--rounds 3]

The simulator runs in its own process (127.0.0.1, ephemeral ports); this process polls
every meter concurrently, one request after the other per meter, and measures its own
CPU time (``time.process_time``) per request. Variants, measured side by side and
interleaved over ``--rounds`` rounds (the table gives medians):

- ``meterdata.json`` through ``MeterHttpClient`` with httpx's default transport
  (httpcore) and with our :class:`MeterHttpTransport`;
- the fast group's Modbus read (``MeterModbusClient.read_values`` of the fast codes).

Only 127.0.0.1 is contacted. Prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emu_opcua.clients.http import MeterHttpClient  # noqa: E402
from emu_opcua.clients.modbus import MeterModbusClient  # noqa: E402
from emu_opcua.gateway.poller import FAST_CODES  # noqa: E402


async def _drive(meters, seconds: float, make, call) -> tuple[float, int]:
    """CPU µs per request and the number of requests, all meters concurrently."""
    clients = [make(m) for m in meters]
    try:
        for c in clients:  # connect outside the measurement
            await call(c)
        count = 0
        stop_at = time.monotonic() + seconds

        async def one(c) -> None:
            nonlocal count
            while time.monotonic() < stop_at:
                await call(c)
                count += 1

        cpu0 = time.process_time()
        await asyncio.gather(*(one(c) for c in clients))
        cpu = time.process_time() - cpu0
    finally:
        for c in clients:
            await c.close()
    return 1e6 * cpu / max(1, count), count


def _variants():
    def httpcore_client(m):
        return MeterHttpClient("127.0.0.1", m["http_port"], password=m.get("password"),
                               transport=httpx.AsyncHTTPTransport())

    def lean_client(m):
        return MeterHttpClient("127.0.0.1", m["http_port"], password=m.get("password"))

    def modbus_client(m):
        return MeterModbusClient("127.0.0.1", m["modbus_port"])

    async def meterdata(c):
        await c.meterdata()

    async def fast_read(c):
        await c.read_values(FAST_CODES)

    return {
        "meterdata.json, httpx default transport (httpcore)": (httpcore_client, meterdata),
        "meterdata.json, httpx + MeterHttpTransport": (lean_client, meterdata),
        "Modbus fast group (MeterModbusClient, 3 requests)": (modbus_client, fast_read),
    }


async def main(n: int, seconds: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ports_file = Path(tmp) / "ports.json"
        sim = subprocess.Popen([sys.executable, "-m", "emu_opcua", "simulate", "--meters", str(n),
                                "--history-days", "1", "--ports-file", str(ports_file)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not ports_file.exists():
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise RuntimeError("simulator did not start")
                await asyncio.sleep(0.2)
            meters = json.loads(ports_file.read_text())["meters"]
            results: dict[str, list[tuple[float, int]]] = {}
            for _ in range(rounds):
                for name, (make, call) in _variants().items():
                    results.setdefault(name, []).append(await _drive(meters, seconds, make, call))
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(30)
    width = max(len(k) for k in results)
    print(f"client CPU per request, {n} meters polled concurrently, {rounds} rounds of {seconds:g} s, "
          "simulator in another process")
    base = statistics.median(us for us, _ in results[next(iter(results))])
    print(f"{'variant':<{width}}  {'CPU µs/request (median)':>24}  {'requests/s':>10}  {'vs httpcore':>11}")
    for name, samples in results.items():
        us = statistics.median(s[0] for s in samples)
        rate = statistics.median(s[1] for s in samples) / seconds
        ratio = f"{base / us:.2f}x" if "meterdata" in name else "-"
        print(f"{name:<{width}}  {us:>24.0f}  {rate:>10.0f}  {ratio:>11}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.meters, args.seconds, args.rounds))
