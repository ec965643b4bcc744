"""Meter events: what they add to sync, and how fast history serves them.

    .venv/bin/python bench/bench_events.py [--events 20000]

1. **Derivation** (sans-IO, the writer thread's added work per datalog page):
   ``datalog_events`` over a 3000-row page with no event bits (the usual page), and with
   the 0x40 bit on every row (a meter without NTP: one event where it comes on).
2. **Store**: ``add_events`` of N events of one meter in one transaction; ``read_events``
   of pages of 1000 through them (a continuation read), median of 50.
3. **ReadEventDetails** over OPC UA (asyncua's client, 127.0.0.1): all N events of one
   meter with 5 select clauses, 10,000 a page, whole read.
Prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncua import Client, ua  # noqa: E402

from emu_opcua.history.events import MeterEvent, datalog_events  # noqa: E402
from emu_opcua.history.sqlite import SqliteHistoryStore  # noqa: E402
from emu_opcua.meter.datalog import DatalogRow  # noqa: E402
from emu_opcua.opcua.config import MeterConfig, ServerConfig  # noqa: E402
from emu_opcua.opcua.serve import GatewayServer  # noqa: E402

T0 = 1_760_000_000


def rows(status: int) -> list[DatalogRow]:
    return [DatalogRow(datetime.fromtimestamp(T0 + 900 * i, timezone.utc), i, status, "22000001", (0,) * 24)
            for i in range(1, 3001)]


def best(fn, repeat=20) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


async def over_opcua(store: SqliteHistoryStore, tmp: Path, n: int) -> tuple[float, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServerConfig(host="127.0.0.1", port=port, pki_dir=tmp / "pki", application_uri="urn:bench",
                          security_policies=("None",),
                          meters=(MeterConfig(name="boiler", host="127.0.0.1", http_port=9, modbus_port=9),))
    async with GatewayServer(config, history_store=store) as gateway:
        async with Client(config.endpoint, timeout=60) as client:
            idx = gateway.model.namespace_index
            clauses = []
            for name, ns in (("EventId", 0), ("EventType", 0), ("Time", 0), ("Message", 0), ("LastError", idx)):
                clauses.append(ua.SimpleAttributeOperand(TypeDefinitionId=ua.NodeId(ua.ObjectIds.BaseEventType),
                                                         BrowsePath=[ua.QualifiedName(name, ns)],
                                                         AttributeId=ua.AttributeIds.Value))
            details = ua.ReadEventDetails(StartTime=datetime.fromtimestamp(T0, timezone.utc),
                                          EndTime=datetime.fromtimestamp(T0 + n + 1, timezone.utc),
                                          Filter=ua.EventFilter(SelectClauses=clauses))
            t = time.perf_counter()
            got, point = 0, None
            while True:
                params = ua.HistoryReadParameters(HistoryReadDetails=details, ReleaseContinuationPoints=False,
                                                  NodesToRead=[ua.HistoryReadValueId(
                                                      NodeId=gateway.model.meters["boiler"].object,
                                                      ContinuationPoint=point)])
                [result] = await client.uaclient.history_read(params)
                got += len(result.HistoryData.Events)
                point = result.ContinuationPoint
                if not point:
                    break
            return time.perf_counter() - t, got


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    n = args.events
    quiet, unsynced = rows(0), rows(0x40)
    t_quiet = best(lambda: datalog_events("m", 1, quiet, 0))
    t_unsynced = best(lambda: datalog_events("m", 1, unsynced, 0))
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteHistoryStore.in_directory(tmp)
        events = [MeterEvent("boiler", "meter_lost", T0 + i, f"k{i}", "lost", {"LastError": "refused"})
                  for i in range(n)]
        t = time.perf_counter()
        store.add_events(events)
        t_add = time.perf_counter() - t
        page = store.read_events("boiler", 0, 1 << 40, limit=n // 2)
        after = page[-1].position
        reads = []
        for _ in range(50):
            t = time.perf_counter()
            store.read_events("boiler", 0, 1 << 40, after=after, limit=1000)
            reads.append(time.perf_counter() - t)
        t_ua, got = asyncio.run(over_opcua(store, Path(tmp), n))
        store.close()
    print("| what | time |")
    print("|---|---|")
    print(f"| datalog_events, 3000 rows, no event bits | {t_quiet * 1e3:.2f} ms |")
    print(f"| datalog_events, 3000 rows, 0x40 on every row | {t_unsynced * 1e3:.2f} ms |")
    print(f"| add_events, {n:,} events, one transaction | {t_add * 1e3:.0f} ms ({t_add / n * 1e6:.1f} us/event) |")
    print(f"| read_events, a page of 1000 after a position (median of 50) | "
          f"{statistics.median(reads) * 1e3:.2f} ms |")
    print(f"| ReadEventDetails over OPC UA, {got:,} events, 5 fields | {t_ua:.2f} s "
          f"({t_ua / max(got, 1) * 1e6:.0f} us/event) |")


if __name__ == "__main__":
    main()
