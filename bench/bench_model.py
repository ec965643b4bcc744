"""MeterModel.build for fleets of growing size: time and memory (prints tables; no assertions).

    .venv/bin/python bench/bench_model.py [max_meters] [--check] [--top N] [--top-meters M] [--history]

Each fleet size is built in a fresh subprocess (an initialised asyncua ``Server``, then
``MeterModel.build``), so sizes do not share an allocator state. Per size:

- seconds and ms/meter of ``build`` (without tracemalloc, which slows allocation);
- RSS growth over the build (``VmRSS`` after ``gc.collect()``, minus before);
- Python heap growth over the build (``tracemalloc``, a second subprocess run);
- per meter, *marginal*: the growth from the 10-meter build to the N-meter one divided
  by N - 10, which leaves out what is built once (the nodeset import, the Meters
  folder). This is the figure the gateway's <= 0.5 MB RSS/meter target is about.

``--check`` first verifies that what a client can see of copied meters (every attribute
read, every reference, in order) is what asyncua's own AddNodes makes, node for node.

``--history`` builds the meters with history (historized variables and their HA
Configuration, ``MeterModel.build(..., history=True)``), as a gateway with a store does.

``--top N`` then prints the N allocation sites (grouped by traceback, 6 frames, diff of
two snapshots around the build of ``--top-meters`` meters, default 100) that hold the
most memory afterwards: what asyncua's per-node storage is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


HISTORY = "--history" in sys.argv


async def _build(n: int):
    from asyncua import Server

    from emu_opcua.opcua.model import MeterModel

    server = Server()
    await server.init()
    await MeterModel.build(server, ["warmup"])  # the nodeset import and folder: not per meter
    names = [f"m{i:04d}" for i in range(n)]
    gc.collect()
    return server, names, MeterModel


async def child(n: int, mode: str, top: int) -> dict:
    server, names, MeterModel = await _build(n)
    result: dict = {"meters": n}
    if mode == "time":
        rss0 = rss_kib()
        t0 = time.perf_counter()
        model = await MeterModel.build(server, names, history=HISTORY)
        result["seconds"] = time.perf_counter() - t0
        gc.collect()
        result["rss_kib"] = rss_kib() - rss0
        result["values"] = sum(len(m.quantities) + len(m.extremes) for m in model.meters.values())
        result["nodes"] = sum(1 for k in server.iserver.aspace.keys()
                              if isinstance(k.Identifier, str) and k.Identifier.startswith("m"))
    else:
        tracemalloc.start(6 if top else 1)
        before = tracemalloc.take_snapshot() if top else None
        base = tracemalloc.get_traced_memory()[0]
        model = await MeterModel.build(server, names, history=HISTORY)
        gc.collect()
        result["traced"] = tracemalloc.get_traced_memory()[0] - base
        if top:
            after = tracemalloc.take_snapshot()
            stats = after.compare_to(before, "traceback")
            lines = []
            for stat in stats[:top]:
                frames = [f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback][::-1]
                lines.append(f"{stat.size_diff / n / 1024:8.1f} KiB/meter {stat.count_diff / n:8.0f} obj/meter"
                             f"  {' < '.join(frames[:6])}")
            result["top"] = lines
        tracemalloc.stop()
    del model
    return result


async def check() -> int:
    """Meters built by MeterModel.build vs the same meters through asyncua's AddNodes alone."""
    import dataclasses

    from asyncua import Server, ua

    from emu_opcua.opcua import model as m

    names = ["alpha", "b-2", "c_3"]

    async def plain() -> Server:
        server = Server()
        await server.init()
        built = await m.MeterModel.build(server, [])  # the nodeset and the folder
        for name in names:
            items: list = []
            waiting: list = []
            references: list = []
            m._meter_items(name, built.namespace_index, built.folder, items, waiting, True, HISTORY, references)
            await m.add_nodes(server, items)
            await m._add_references(server, references)
            for node_id in waiting:
                await server.write_attribute_value(node_id, ua.DataValue(StatusCode=m._WAITING))
        return server

    async def ours() -> Server:
        server = Server()
        await server.init()
        await m.MeterModel.build(server, names[:1], history=HISTORY)
        await m.MeterModel.build(server, names[1:], history=HISTORY)  # a second build: its own first meter
        return server

    def seen(server: Server) -> dict:
        aspace, out = server.iserver.aspace, {}
        for node_id in list(aspace.keys()):
            ident = node_id.Identifier
            if not isinstance(ident, str) or not (ident == m.FOLDER_NAME or ident.split(".")[0] in names):
                continue
            attrs = [repr(dataclasses.replace(aspace.read_attribute_value(node_id, a), SourceTimestamp=None,
                                              ServerTimestamp=None)) for a in ua.AttributeIds]
            refs = [f"{r!r}{type(r.NodeId).__name__}{type(r.TypeDefinition).__name__}"
                    for r in aspace[node_id].references]
            out[node_id.to_string()] = (attrs, refs)
        return out

    expected, got = seen(await plain()), seen(await ours())
    differ = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
    print(f"check: {len(got)} nodes, {len(differ)} differ from AddNodes' {len(expected)}"
          + (f": {', '.join(differ[:5])}" if differ else ""))
    return len(differ)


def run_child(n: int, mode: str, top: int = 0) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n), "--mode", mode, "--top", str(top)]
                         + (["--history"] if HISTORY else []),
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("max_meters", nargs="?", type=int, default=1000)
    parser.add_argument("--check", action="store_true",
                        help="first compare copied meters with AddNodes-built ones (exit 1 if they differ)")
    parser.add_argument("--top", type=int, default=0, help="print the N biggest allocation sites")
    parser.add_argument("--top-meters", type=int, default=100)
    parser.add_argument("--history", action="store_true", help="build meters with history nodes")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="time", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.child, args.mode, args.top))))
        return

    if args.check and asyncio.run(check()):
        sys.exit(1)
    sizes = [n for n in (10, 100, 1000, 10000) if n <= args.max_meters]
    rows = []
    for n in sizes:
        row = run_child(n, "time")
        row.update(traced=run_child(n, "memory")["traced"])
        rows.append(row)
        print(f"... {n} meters", file=sys.stderr, flush=True)
    base = rows[0]
    print(f"{'meters':>7} {'nodes':>7} {'seconds':>8} {'ms/meter':>9} {'RSS MB':>7} {'RSS MB/meter':>13}"
          f" {'heap MB':>8} {'heap MB/meter':>14}")
    for r in rows:
        n = r["meters"]
        marginal = n - base["meters"]
        rss_m = (r["rss_kib"] - base["rss_kib"]) / 1024 / marginal if marginal else r["rss_kib"] / 1024 / n
        heap_m = (r["traced"] - base["traced"]) / 2**20 / marginal if marginal else r["traced"] / 2**20 / n
        print(f"{n:>7} {r['nodes']:>7} {r['seconds']:>8.2f} {1000 * r['seconds'] / n:>9.1f}"
              f" {r['rss_kib'] / 1024:>7.1f} {rss_m:>13.3f} {r['traced'] / 2**20:>8.1f} {heap_m:>14.3f}")
    print("MB/meter: marginal over the 10-meter build (the first row: plain average)")
    if args.top:
        print(f"\nbiggest allocation sites, {args.top_meters} meters (innermost frame last):")
        for line in run_child(args.top_meters, "memory", args.top)["top"]:
            print(line)


if __name__ == "__main__":
    main()
