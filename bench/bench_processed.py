"""HistoryRead processed (ReadProcessedDetails) by node-opcua, and the store push-down.

    .venv/bin/python bench/bench_processed.py [--rounds 3] [--meters 100] [--data-dir DIR]

Prints tables (no assertions). Over OPC UA (our stack: MeterModel with history,
GatewaySession, HistoryService over a SQLite store; node-opcua from tests/interop, one
process, connected once, every continuation point followed; client time from the first
request to the last answer, median of ``--rounds`` after one warm-up; "server CPU" is
this process's CPU time per read, every thread):

1. daily DeltaBounds (consumption) over one year of one meter's energy counter: 365 values;
2. monthly (30-day) DeltaBounds over one year for ``--meters`` meters, one node each, all
   in one request (13 values per node; 35,040 rows per meter behind it); the time for
   1000 meters is extrapolated linearly from it (the lead runs ``--meters 1000``);
3. hourly Average over one year of one meter's power: 8,760 values.

In-process (no OPC UA), one meter x one year, the store read by the three ways a
DeltaBounds can get its rows: every row streamed through the engine; the bounding rows
by two ``store.read`` calls per interval boundary; ``store.read_around`` (decodes only
the chunks at the boundaries). The results are checked equal.

Targets: (1) <= 0.1 s, (2) <= 5 s at 1000 meters, (3) <= 0.3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from asyncua import Server, ua  # noqa: E402

from bench_history_read import INTEROP, SCRIPT, STEP, T0, YEAR_ROWS, free_port  # noqa: E402
from emu_opcua.history.store import StoredRow  # noqa: E402
from emu_opcua.meter.catalogue import BY_CODE  # noqa: E402
from emu_opcua.meter.datalog import RAW_COLUMNS  # noqa: E402

POWER = BY_CODE["active_power_total"]
ENERGY = BY_CODE["active_energy_import_t1"]
P_COL = POWER.datalog.columns[0] - 5
E_COL = ENERGY.datalog.columns[0] - 5
DAY_MS, HOUR_MS, MONTH_MS = 86_400_000, 3_600_000, 30 * 86_400_000
DELTA_BOUNDS, AVERAGE = "i=11507", "i=2342"


def meter_name(m: int) -> str:
    return f"meter-{m:04d}"


def year_rows() -> list[StoredRow]:
    """A year of quarter hours: power varying, the energy counter integrating it."""
    rows, wh = [], 0
    base = [0] * RAW_COLUMNS
    for i in range(YEAR_ROWS):
        raw = list(base)
        watts = (i * 37) % 20_000
        wh += watts // 4
        raw[P_COL] = watts
        raw[E_COL] = wh
        rows.append(StoredRow(T0 + i * STEP, 1, i, 0, tuple(raw)))
    return rows


def make_store(data_dir: Path, meters: int):
    """``meters`` meters of the same year (the first through the store's API, the others'
    chunks copied in SQL, a series each: see bench_history_read.make_store)."""
    from emu_opcua.history.sqlite import SqliteHistoryStore

    store = SqliteHistoryStore.in_directory(data_dir, synchronous="OFF")
    series = store.new_series(meter_name(0), "serial-0", 0)
    rows = [(r.timestamp, r.index, r.status, *r.raw) for r in year_rows()]
    for k in range(0, len(rows), 6400):
        store.append_tuples(series, rows[k:k + 6400], None)
    with store._write() as con:
        for m in range(1, meters):
            sid = con.execute("INSERT INTO series (meter, serial, first_index, rows, span) "
                              "SELECT ?, ?, first_index, rows, span FROM series WHERE id=?",
                              (meter_name(m), f"serial-{m}", series.id)).lastrowid
            con.execute("INSERT INTO chunk (series_id, chunk_no, t_min, t_max, n, data) "
                        "SELECT ?, chunk_no, t_min, t_max, n, data FROM chunk WHERE series_id=?", (sid, series.id))
    return store


async def our_server(store, meters: int, port: int):
    from emu_opcua.opcua import history, localization, services
    from emu_opcua.opcua.methods import MethodRegistry
    from emu_opcua.opcua.model import MeterModel
    from emu_opcua.opcua.serve import GatewaySession

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    session_services = services.Services(services.ServiceSettings(), MethodRegistry())
    await services.install(server, session_services)
    model = await MeterModel.build(server, [meter_name(m) for m in range(meters)], history=True)
    localization.install(server, model, session_services, session_class=GatewaySession)
    await history.install(server, model, store)
    await server.start()
    return server, model


async def node_read(port: int, node_ids: list[ua.NodeId], request: dict, rounds: int) -> dict:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "node-opcua-client").is_dir():
        raise SystemExit("needs node and tests/interop/node_modules (cd tests/interop && npm ci)")
    request = {**request, "mode": "processed", "summary": True, "repeat": rounds + 1,
               "nodeIds": [n.to_string() for n in node_ids[1:]]}
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), f"opc.tcp://127.0.0.1:{port}/", node_ids[0].to_string(), json.dumps(request),
        cwd=INTEROP, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"node-opcua failed:\n{err.decode(errors='replace')}")
    return json.loads([line for line in out.decode().splitlines() if line.startswith("{")][-1])


async def measure(label: str, port: int, node_ids, request: dict, rounds: int) -> dict:
    cpu0 = time.process_time()
    result = await node_read(port, node_ids, request, rounds)
    cpu = (time.process_time() - cpu0) / (rounds + 1)
    times = result["elapsedMs"][1:]
    others = result.get("others", [])
    counts = {result["count"], *(o["count"] for o in others)}
    errors = [o for o in others if o["last"] and "error" in o["last"]]
    return {"label": label, "nodes": 1 + len(others), "values": result["count"] * (1 + len(others)),
            "median_s": statistics.median(times) / 1000, "min_s": min(times) / 1000, "cpu_s": cpu,
            "same_count": len(counts) == 1 and not errors, "first": result["first"], "last": result["last"]}


def in_process(store) -> list[tuple[str, float, int]]:
    """DeltaBounds daily over the year in-process, the store read three ways."""
    from emu_opcua.history import processed as pr
    from emu_opcua.history.raw import RowConverter

    convert = RowConverter(ENERGY)
    meter = meter_name(0)

    def source(start, end, *, after=None, limit=None, reverse=False):
        return store.read(meter, start, end, after=after, limit=limit, reverse=reverse)

    request = pr.ProcessedRequest("DeltaBounds", T0 * 1_000_000, (T0 + YEAR_ROWS * STEP) * 1_000_000, DAY_MS)
    ways = {
        "every row streamed through the engine": None,
        "bounding rows, 2 store.read per boundary": lambda cuts, exact: pr.bounding_rows(source, cuts),
        "bounding rows, store.read_around (all columns)": lambda cuts, exact: store.read_around(meter, cuts),
        "bounding rows, store.read_around (the quantity's columns)":
            lambda cuts, exact: store.read_around(meter, cuts, columns=(E_COL,)),
        "bounding rows, read_around (its columns, exact boundaries)":
            lambda cuts, exact: store.read_around(meter, cuts, columns=(E_COL,), exact=exact),
    }
    out, reference = [], None
    for label, bounding in ways.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            values, _ = pr.read_processed(source, convert, request, limit=10_000, counter=True, bounding=bounding)
            times.append(time.perf_counter() - t0)
        if reference is None:
            reference = values
        elif values != reference:
            label += "  !! results differ"
        out.append((label, min(times), len(values)))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, help="where the SQLite store goes (default: a temporary folder)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-processed-")) if args.data_dir is None else args.data_dir
    results = []
    try:
        t0 = time.perf_counter()
        store = make_store(tmp / "store", args.meters)
        print(f"... {args.meters} meters x 1 year in the store ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        local = in_process(store)
        port = free_port()
        t0 = time.perf_counter()
        server, model = await our_server(store, args.meters, port)
        print(f"... server with {args.meters} meters up ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        try:
            year = {"start": T0 * 1000, "end": (T0 + YEAR_ROWS * STEP) * 1000}
            energy = [model.quantity(meter_name(m), ENERGY.code) for m in range(args.meters)]
            results.append(await measure("daily DeltaBounds, 1 meter x 1 year", port, energy[:1],
                                         {**year, "interval": DAY_MS, "aggregate": DELTA_BOUNDS}, args.rounds))
            results.append(await measure(f"monthly DeltaBounds, {args.meters} meters x 1 year, one request", port,
                                         energy, {**year, "interval": MONTH_MS, "aggregate": DELTA_BOUNDS},
                                         args.rounds))
            results.append(await measure("hourly Average of power, 1 meter x 1 year", port,
                                         [model.quantity(meter_name(0), POWER.code)],
                                         {**year, "interval": HOUR_MS, "aggregate": AVERAGE}, args.rounds))
        finally:
            await server.stop()
    finally:
        store.close()
        if args.data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'read (node-opcua)':<58} {'nodes':>5} {'values':>7} {'median s':>9} {'min s':>7} {'server CPU s':>12}")
    for r in results:
        flag = "" if r["same_count"] else "  !! nodes differ or failed"
        print(f"{r['label']:<58} {r['nodes']:>5} {r['values']:>7} {r['median_s']:>9.3f} {r['min_s']:>7.3f}"
              f" {r['cpu_s']:>12.3f}{flag}")
    fleet = results[1]
    if args.meters != 1000:
        scale = 1000 / args.meters
        print(f"{'  -> 1000 meters, extrapolated linearly':<58} {1000:>5} {int(fleet['values'] * scale):>7}"
              f" {fleet['median_s'] * scale:>9.3f} {'':>7} {fleet['cpu_s'] * scale:>12.3f}")
    print()
    print(f"{'DeltaBounds daily over a year, in-process: rows from':<58} {'values':>7} {'s':>9}")
    for label, seconds, n in local:
        print(f"{label:<58} {n:>7} {seconds:>9.4f}")
    print("targets: daily DeltaBounds <= 0.1 s; monthly DeltaBounds for 1000 meters <= 5 s; "
          "hourly Average <= 0.3 s")


if __name__ == "__main__":
    asyncio.run(main())
