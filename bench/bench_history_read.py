"""HistoryRead raw of one year of one variable (35,040 values), all pages, by node-opcua.

    .venv/bin/python bench/bench_history_read.py [--rounds 5] [--fleet-meters 100]
        [--fleet-years 3] [--data-dir DIR]

Prints a table (no assertions). Rows:

1. ours, one meter in the store: our stack (MeterModel with history, GatewaySession,
   HistoryService over the store) serving the year;
2. asyncua's own history (HistoryDict holding the same 35,040 DataValues in memory) on a
   bare asyncua server: the same read, side by side in the same run;
3. ours with the rows held in memory (``raw.ListRows``): our OPC UA side alone (rules,
   conversion, encoding), without the store's decoding;
4. ours, with the same meter among ``--fleet-meters`` meters x ``--fleet-years`` years in
   the store (generated straight into the store; skipped with ``--fleet-meters 0``).

node-opcua (tests/interop, one process, connected once) follows every continuation point;
the time is the client's, from the first request to the last answer, the median of
``--rounds`` reads (after one warm-up read); "server CPU" is the CPU time of the
server's process (every thread) per read, less sensitive to a busy machine. Pages are 10,000 values on both servers
(MaxReturnDataValues / HistoryDict's max_history_data_response_size).

Targets: ours <= 0.3 s; ours >= 2x faster than asyncua's; with the fleet in the store no
slower than with one meter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncua import Server, ua  # noqa: E402

from emu_opcua.history.store import StoredRow  # noqa: E402
from emu_opcua.meter.catalogue import BY_CODE  # noqa: E402
from emu_opcua.meter.datalog import RAW_COLUMNS, raw_value  # noqa: E402

INTEROP = ROOT / "tests" / "interop"
SCRIPT = INTEROP / "read_history.mjs"
STEP = 900  # s, one datalog row every quarter hour
YEAR_ROWS = 365 * 96  # 35,040
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
QUANTITY = BY_CODE["active_power_total"]
P_COL = QUANTITY.datalog.columns[0] - 5
METER = "meter-0000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def year_rows(series_id: int = 1, years: float = 1.0, seed: int = 0) -> list[StoredRow]:
    rows = []
    base = [0] * RAW_COLUMNS
    for i in range(int(YEAR_ROWS * years)):
        raw = list(base)
        raw[P_COL] = (i * 37 + seed) % 20_000
        rows.append(StoredRow(T0 + i * STEP, series_id, i, 0, tuple(raw)))
    return rows


# --- stores ---------------------------------------------------------------------------------------
def _tuples(rows: list[StoredRow]) -> list[tuple[int, ...]]:
    return [(r.timestamp, r.index, r.status, *r.raw) for r in rows]


def make_store(data_dir: Path, meters: int, years: float):
    """A SQLite store holding METER's ``years`` (the first of them what is read) and
    ``meters - 1`` more meters of as many rows.

    METER's rows go in through the store's API (``append_tuples``, in the chunk-sized
    batches a sync writes). The other meters' rows are the same rows: their packed chunks
    are copied in SQL, a series per meter (the bench option "generate straight into the
    store"; through the API, 100 meters x 3 years take ~4 minutes of packing)."""
    from emu_opcua.history.sqlite import SqliteHistoryStore

    store = SqliteHistoryStore.in_directory(data_dir, synchronous="OFF")
    series = store.new_series(METER, "serial-0", 0)
    rows = _tuples(year_rows(years=years))
    for k in range(0, len(rows), 6400):
        store.append_tuples(series, rows[k:k + 6400], None)
    if meters > 1:
        with store._write() as con:
            for m in range(1, meters):
                sid = con.execute("INSERT INTO series (meter, serial, first_index, rows, span) "
                                  "SELECT ?, ?, first_index, rows, span FROM series WHERE id=?",
                                  (f"meter-{m:04d}", f"serial-{m}", series.id)).lastrowid
                con.execute("INSERT INTO chunk (series_id, chunk_no, t_min, t_max, n, data) "
                            "SELECT ?, chunk_no, t_min, t_max, n, data FROM chunk WHERE series_id=?",
                            (sid, series.id))
    return store


class RowsInMemory:
    """METER's rows held in memory (``raw.ListRows``): what our OPC UA side costs without
    the store's decoding."""

    def __init__(self, rows: list[StoredRow]) -> None:
        from emu_opcua.history.raw import ListRows

        self.rows = ListRows(rows)

    def read(self, meter, start, end, *, after=None, limit=None, reverse=False):
        return self.rows(start, end, after=after, limit=limit, reverse=reverse) if meter == METER else []

    def read_columns(self, meter, start, end, columns, *, after=None, limit=None, reverse=False):
        return self.rows.tuples(start, end, columns, after=after, limit=limit, reverse=reverse) if meter == METER else []

    def extent(self, meter):
        return (self.rows.rows[0], self.rows.rows[-1]) if meter == METER else None


# --- servers ---------------------------------------------------------------------------------------
async def our_server(store, port: int):
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
    model = await MeterModel.build(server, [METER], history=True)
    localization.install(server, model, session_services, session_class=GatewaySession)
    await history.install(server, model, store)
    await server.start()
    return server, model.quantity(METER, QUANTITY.code)


async def asyncua_server(port: int):
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:bench")
    var = await server.nodes.objects.add_variable(ua.NodeId("power", idx), "power", 0.0)
    await server.historize_node_data_change(var, period=None, count=0)  # (default: 7 days kept)
    storage = server.iserver.history_manager.storage
    values = []
    for row in year_rows():
        when = datetime.fromtimestamp(row.timestamp, UTC)
        values.append(ua.DataValue(Value=ua.Variant(raw_value(QUANTITY, row.raw), ua.VariantType.Double),
                                   SourceTimestamp=when, ServerTimestamp=when))
    storage._datachanges[var.nodeid] = values
    await server.start()
    return server, var.nodeid


async def node_read(port: int, node_id: ua.NodeId, start: int, end: int, rounds: int) -> dict:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "node-opcua-client").is_dir():
        raise SystemExit("needs node and tests/interop/node_modules (cd tests/interop && npm ci)")
    request = {"mode": "raw", "start": start * 1000, "end": end * 1000, "summary": True, "repeat": rounds + 1}
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), f"opc.tcp://127.0.0.1:{port}/", node_id.to_string(), json.dumps(request),
        cwd=INTEROP, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"node-opcua failed:\n{err.decode(errors='replace')}")
    return json.loads([line for line in out.decode().splitlines() if line.startswith("{")][-1])


async def measure(label: str, server_factory, rounds: int) -> dict:
    port = free_port()
    server, node_id = await server_factory(port)
    try:
        cpu0 = time.process_time()
        result = await node_read(port, node_id, T0, T0 + YEAR_ROWS * STEP, rounds)
        cpu = (time.process_time() - cpu0) / (rounds + 1)  # this process: the server (all threads)
    finally:
        await server.stop()
    times = result["elapsedMs"][1:]  # the first read warms up
    return {"label": label, "count": result["count"], "pages": len(result["pages"]),
            "median_s": statistics.median(times) / 1000, "min_s": min(times) / 1000, "cpu_s": cpu,
            "first": result["first"], "last": result["last"]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fleet-meters", type=int, default=100)
    parser.add_argument("--fleet-years", type=float, default=3.0)
    parser.add_argument("--data-dir", type=Path, help="where the SQLite stores go (default: a temporary folder)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-")) if args.data_dir is None else args.data_dir
    rows = []
    try:
        t0 = time.perf_counter()
        store = make_store(tmp / "one", 1, 1.0)
        print(f"... one meter, one year in the store ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        rows.append(await measure("ours, SQLite store, 1 meter x 1 year",
                                  lambda port: our_server(store, port), args.rounds))
        rows.append(await measure("asyncua HistoryDict, same values", asyncua_server, args.rounds))
        memory = RowsInMemory(year_rows())
        rows.append(await measure("ours, rows in memory (no store decoding)",
                                  lambda port: our_server(memory, port), args.rounds))
        if args.fleet_meters > 1:
            t0 = time.perf_counter()
            fleet = make_store(tmp / "fleet", args.fleet_meters, args.fleet_years)
            print(f"... {args.fleet_meters} meters x {args.fleet_years:g} years in the store "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
            rows.append(await measure(f"ours, SQLite store, {args.fleet_meters} meters x "
                                      f"{args.fleet_years:g} years ({fleet.row_count(METER) * args.fleet_meters:,}"
                                      " rows)", lambda port: our_server(fleet, port), args.rounds))
    finally:
        if args.data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'server':<62} {'values':>7} {'pages':>5} {'median s':>9} {'min s':>7} {'vs asyncua':>10}"
          f" {'server CPU s':>12} {'vs asyncua':>10}")
    ref, ref_cpu = rows[1]["median_s"], rows[1]["cpu_s"]
    for r in rows:
        print(f"{r['label']:<62} {r['count']:>7} {r['pages']:>5} {r['median_s']:>9.3f} {r['min_s']:>7.3f}"
              f" {ref / r['median_s']:>9.2f}x {r['cpu_s']:>12.3f} {ref_cpu / r['cpu_s']:>9.2f}x")
    for r in rows:
        if r["first"] != rows[0]["first"] or r["last"] != rows[0]["last"]:
            print(f"!! {r['label']}: first/last value differ from ours: {r['first']} {r['last']}")
    print("targets: ours <= 0.3 s; >= 2x asyncua's; the fleet store no slower than one meter")


if __name__ == "__main__":
    asyncio.run(main())
