"""Benchmark: 200 simulated meters in one process, load from separate processes.

Starts ``python -m emu_opcua simulate --meters 200 --ports-file F`` (30 days of history
per meter), measures how long until the ports are open and until every meter's history
is integrated, then drives each phase for a bounded time from ``--workers`` separate
processes (one connection per meter, all meters concurrently, 127.0.0.1 only):

- modbus: a read of the whole register map (the planned blocks) per meter, repeatedly;
- meterdata: ``GET /meterdata.json``;
- datalog96: ``GET /data/?last=96``.

Prints a table: requests/s (median over 1-s windows), latency median and p95.
Run: ``.venv/bin/python bench/bench_simulator.py [--meters 200] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing as mp
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _entry() -> list[str]:
    ready = all(importlib.util.find_spec(m) is not None
                for m in ("emu_opcua.opcua.serve", "emu_opcua.probe"))
    return ["-m", "emu_opcua", "simulate"] if ready else ["-m", "emu_opcua.simulator"]


# --- load, run in worker processes --------------------------------------------------------
async def _modbus_worker(meters, seconds):
    from pymodbus.client import AsyncModbusTcpClient

    from emu_opcua.meter.registers import RegisterMap, decode_registers, plan_reads

    rmap = RegisterMap.default()
    blocks = plan_reads(rmap)
    samples: list[tuple[float, float]] = []
    errors = 0

    async def one(m, stop_at):
        nonlocal errors
        client = AsyncModbusTcpClient("127.0.0.1", port=m["modbus_port"], timeout=5, retries=0)
        await client.connect()
        try:
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                regs = {}
                for b in blocks:
                    rr = await client.read_holding_registers(b.address, count=b.count, device_id=1)
                    if rr.isError():
                        errors += 1
                        break
                    regs[b.address] = rr.registers
                else:
                    decode_registers(rmap, regs)
                    t1 = time.monotonic()
                    samples.append((t1, t1 - t0))
        except Exception:
            errors += 1
        finally:
            client.close()

    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(one(m, stop_at) for m in meters))
    return samples, errors, len(blocks)


async def _http_worker(meters, seconds, path, password):
    import httpx

    samples: list[tuple[float, float]] = []
    errors = 0
    auth = ("admin", password) if password else None
    limits = httpx.Limits(max_connections=len(meters) + 10, max_keepalive_connections=len(meters) + 10)

    async with httpx.AsyncClient(timeout=30, auth=auth, limits=limits) as client:
        async def one(m, stop_at):
            nonlocal errors
            url = f"http://127.0.0.1:{m['http_port']}{path}"
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                try:
                    r = await client.get(url)
                    r.raise_for_status()
                except Exception:
                    errors += 1
                    continue
                t1 = time.monotonic()
                samples.append((t1, t1 - t0))

        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(one(m, stop_at) for m in meters))
    return samples, errors, 1


def _worker(args):
    phase, meters, seconds, password = args
    if phase == "modbus":
        return asyncio.run(_modbus_worker(meters, seconds))
    path = {"meterdata": "/meterdata.json", "datalog96": "/data/?last=96"}[phase]
    return asyncio.run(_http_worker(meters, seconds, path, password))


def _summarise(results, seconds):
    samples = sorted(s for r in results for s in r[0])
    errors = sum(r[1] for r in results)
    requests_per_op = results[0][2]
    if not samples:
        return None
    t_start = samples[0][0]
    windows: dict[int, int] = {}
    for t, _lat in samples:
        windows[int(t - t_start)] = windows.get(int(t - t_start), 0) + 1
    full = [windows.get(i, 0) for i in range(1, int(seconds) - 1)] or list(windows.values())
    lat = sorted(l for _t, l in samples)
    return {
        "ops_s": statistics.median(full),
        "req_s": statistics.median(full) * requests_per_op,
        "lat_med_ms": 1000 * statistics.median(lat),
        "lat_p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
        "ops": len(samples),
        "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument("--history-days", type=float, default=30.0)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="emu-bench-")
    ports_file = os.path.join(tmp, "ports.json")
    cmd = [sys.executable, *_entry(), "--meters", str(args.meters), "--history-days", str(args.history_days),
           "--ports-file", ports_file]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()
    log_lines: list[str] = []

    def read_stderr():
        for line in proc.stderr:  # type: ignore[union-attr]
            log_lines.append(line)
            if "history of" in line:
                ready.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        while not os.path.exists(ports_file):
            if proc.poll() is not None:
                print("".join(log_lines), file=sys.stderr)
                return 1
            time.sleep(0.01)
        t_ports = time.monotonic() - t0
        if not ready.wait(300):
            print("history not ready after 300 s", file=sys.stderr)
            return 1
        t_ready = time.monotonic() - t0
        inner = next((re.search(r"after ([\d.]+) s", l) for l in log_lines if "history of" in l), None)
        doc = json.load(open(ports_file))
        meters = doc["meters"]
        print(f"simulator: {len(meters)} meters, {args.history_days:g} days of history each, "
              f"pid {proc.pid}, command {' '.join(cmd[1:4])}")
        print(f"start-up: ports open after {t_ports:.2f} s (process start incl.), "
              f"all histories integrated after {t_ready:.2f} s"
              + (f" ({inner.group(1)} s inside the process)" if inner else ""))
        print(f"load: {args.workers} process(es), one connection per meter, {args.seconds:g} s per phase, "
              f"{os.cpu_count()} CPUs shared with the simulator\n")

        ctx = mp.get_context("spawn")
        chunks = [meters[i::args.workers] for i in range(args.workers)]
        rows = []
        with ctx.Pool(args.workers) as pool:
            for phase in ("modbus", "meterdata", "datalog96"):
                results = pool.map(_worker, [(phase, c, args.seconds, doc.get("password")) for c in chunks])
                rows.append((phase, _summarise(results, args.seconds)))
        header = f"{'phase':<11} {'ops/s':>8} {'requests/s':>11} {'lat med ms':>11} {'lat p95 ms':>11} {'ops':>8} {'errors':>7}"
        print(header)
        print("-" * len(header))
        for phase, s in rows:
            if s is None:
                print(f"{phase:<11} (no successful operation)")
                continue
            print(f"{phase:<11} {s['ops_s']:>8.0f} {s['req_s']:>11.0f} {s['lat_med_ms']:>11.1f} "
                  f"{s['lat_p95_ms']:>11.1f} {s['ops']:>8d} {s['errors']:>7d}")
        print("\nmodbus: one op = a read of the whole register map (all planned blocks); "
              "ops/s and requests/s are medians over 1-s windows.")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"simulator exit code after SIGTERM: {proc.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
