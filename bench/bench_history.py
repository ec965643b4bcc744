"""History store and datalog sync: ingest rate, bytes per row, read time.

    .venv/bin/python bench/bench_history.py [--meters 2] [--days 1095] [--pages 1] [--grow M]

1. ``emu-opcua simulate --meters N --history-days D`` in its own process (127.0.0.1).
2. Here: one MeterSyncer per meter into a fresh SqliteHistoryStore (the gateway's code:
   HTTP pages on the event loop, parse and store in the one writer thread, at most
   ``--pages`` pages in flight), timed from the first request until every meter is
   current: **ingest rows/s**.
3. **Bytes per row**: the database file after a WAL checkpoint, divided by the rows.
4. **Parse + store alone**: the same work on one meter's pages fetched beforehand, so
   the simulator's own speed (one process serving every meter) is not in the figure
   (CPU time of that work). The CPU time of this process (the gateway's side) and of the
   simulator's process during the ingest say which side limits it.
5. **Read**: one day (96 rows) of one meter at random places in its history, and a
   continuation read of 1000 rows, median of 200 reads; with ``--grow M`` again after
   M more meters' rows were added.
Only 127.0.0.1 is contacted. Prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emu_opcua.clients.http import MeterHttpClient  # noqa: E402
from emu_opcua.history.sqlite import FILE_NAME, SqliteHistoryStore  # noqa: E402
from emu_opcua.history.sync import SyncPolicy  # noqa: E402
from emu_opcua.history.syncer import MeterSyncer, StoreWriter, SyncSettings  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ingest(meters: list[dict], data_dir: Path, pages: int) -> tuple[float, int]:
    writer = StoreWriter(SqliteHistoryStore.in_directory(data_dir))
    semaphore = asyncio.Semaphore(pages)
    clients = [MeterHttpClient("127.0.0.1", m["http_port"], timeout=60) for m in meters]
    syncers = [MeterSyncer(f"m{i}", c, writer, semaphore, SyncSettings(SyncPolicy(), interval=3600))
               for i, c in enumerate(clients)]
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(s.run()) for s in syncers]
    await asyncio.gather(*(s.current.wait() for s in syncers))
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in clients:
        await c.aclose()
    await asyncio.to_thread(writer.close)
    return elapsed, sum(s.rows_added for s in syncers)


async def fetch_pages(meter: dict) -> list[bytes]:
    """Every page of one meter's datalog, as the meter sends it (for the pipeline alone)."""
    async with MeterHttpClient("127.0.0.1", meter["http_port"], timeout=60) as c:
        newest = await c.newest_datalog_index()
        return [await c.get("/data/", {"from": a, "to": a + 2999}) for a in range(1, newest + 1, 2999)]


def pipeline(bodies: list[bytes], data_dir: Path) -> tuple[float, int]:
    """The writer thread's work alone (parse, judge, pack, store), on pages fetched
    before: what the gateway's side of the ingest costs without the simulator."""
    from emu_opcua.history.sync import IndexRange, SyncState, apply_answer
    from emu_opcua.meter.datalog import parse_datalog_lenient

    store = SqliteHistoryStore.in_directory(data_dir)
    state, series, rows = SyncState(), None, 0
    t0 = time.process_time()  # CPU time: the figure a busy machine disturbs least
    for k, body in enumerate(bodies):
        first = 1 + k * 2999
        parsed = parse_datalog_lenient(body)
        if series is None:
            top = parsed.rows[0]
            series = store.new_series("m", top.serial, first)
            state = SyncState(serial=top.serial, series_id=series.id, next_from=first, newest=10**9)
        step = apply_answer(state, IndexRange(first, first + 2999), parsed.rows, ())
        state = step.state
        rows += store.append(series, step.rows, state.to_json())
    elapsed = time.process_time() - t0
    store.close()
    return elapsed, rows


def read_times(path: Path, meter: str) -> tuple[float, float]:
    store = SqliteHistoryStore(path)
    try:
        oldest, newest = store.extent(meter)
        rnd = random.Random(1)
        day, page = [], []
        for _ in range(200):
            t = rnd.randrange(oldest.timestamp, newest.timestamp - 86400)
            t0 = time.perf_counter()
            rows = store.read(meter, t, t + 86400)
            day.append(time.perf_counter() - t0)
            assert len(rows) >= 90, len(rows)
            t0 = time.perf_counter()
            rows = store.read(meter, t - 86400 * 30, newest.timestamp + 1, limit=1000)
            page.append(time.perf_counter() - t0)
        return statistics.median(day), statistics.median(page)
    finally:
        store.close()


def grow(path: Path, meters: int) -> int:
    """Add ``meters`` copies of meter m0's rows as other meters: a bigger store for the
    read figures (reads must not slow down as the store grows)."""
    store = SqliteHistoryStore(path)
    try:
        rows = [(r.timestamp, r.index, r.status, *r.raw) for r in store.read("m0", 0, 1 << 40)]
        rows.sort(key=lambda r: r[1])
        for k in range(meters):
            series = store.new_series(f"grown{k}", "1", rows[0][1])
            for i in range(0, len(rows), 3000):
                store.append_tuples(series, rows[i:i + 3000], {"grown": True})
        return sum(store.row_count(m) for m in store.meters())
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2)
    parser.add_argument("--days", type=float, default=1095)
    parser.add_argument("--pages", type=int, default=1)
    parser.add_argument("--grow", type=int, default=0, metavar="M",
                        help="then add M meters' worth of rows and read again")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ports = tmp / "ports.json"
        sim = subprocess.Popen([sys.executable, "-m", "emu_opcua", "simulate", "--meters", str(args.meters),
                                "--history-days", str(args.days), "--ports-file", str(ports)],
                               cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            while not ports.exists():
                time.sleep(0.1)
            meters = json.loads(ports.read_text())["meters"]
            sim_cpu0, own_cpu0 = cpu_seconds(sim.pid), time.process_time()
            elapsed, rows = asyncio.run(ingest(meters, tmp / "data", args.pages))
            sim_cpu, own_cpu = cpu_seconds(sim.pid) - sim_cpu0, time.process_time() - own_cpu0
            bodies = asyncio.run(fetch_pages(meters[0]))
            alone, alone_rows = pipeline(bodies, tmp / "alone")
        finally:
            sim.terminate()
            sim.wait()
        path = tmp / "data" / FILE_NAME
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        size = os.path.getsize(path)
        day, page = read_times(path, "m0")
        grown = None
        if args.grow:
            total = grow(path, args.grow)
            grown = (total, *read_times(path, "m0"))
    print()
    print("| meters x days | rows | ingest from the simulator (target >= 50,000) | parse + store alone, "
          "pages fetched before (CPU) | CPU during ingest: gateway / simulator | store bytes/row (target <= 64) "
          "| read 1 day | read 1000 rows |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.meters} x {args.days:g} | {rows:,} | {rows / elapsed:,.0f} rows/s ({elapsed:.1f} s, "
          f"{args.pages} pages in flight) | {alone_rows / alone:,.0f} rows/s | {own_cpu:.1f} s / {sim_cpu:.1f} s "
          f"({rows / own_cpu:,.0f} / {rows / sim_cpu:,.0f} rows per CPU s) | {size / rows:.1f} | "
          f"{day * 1e3:.2f} ms | {page * 1e3:.2f} ms |")
    if grown:
        print(f"| store grown to {grown[0]:,} rows | | | | | | {grown[1] * 1e3:.2f} ms | {grown[2] * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
