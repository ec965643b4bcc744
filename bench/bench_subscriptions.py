"""The data-change path: CPU per value written to a monitored variable (prints a table).

    .venv/bin/python bench/bench_subscriptions.py [--items 5000] [--rounds 5]    (about 6 min on 2 shared cores: the set-up dominates)

A SCADA client subscribed to every value of 1000 meters has ~20,000 monitored items, each
notified about once a second: this path runs for every value the publisher writes. Per
case, an initialised asyncua ``Server`` (not started: no sockets) with ``--items`` Double
variables, each monitored by one item of a server-side subscription (publishing 1 s,
the same MonitoredItemService code a client's subscription runs), then ``--rounds``
rounds writing a new value to every variable with ``write_attribute_value`` (what
``MeterPublisher`` does); time per write, median over the rounds:

- ``no subscription``: the write alone (the floor);
- ``asyncua``: asyncua 2.1's own MonitoredItemService (no filter, and a 2 kW
  AbsoluteDeadband that every change exceeds);
- ``emu-opcua``: ``emu_opcua.opcua.subscriptions`` installed (the same two, and a
  PercentDeadband of 0.1 % of a 2000 kW EURange, so half the changes are inside the band).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

from asyncua import Server, ua

from emu_opcua.opcua import subscriptions


class Sink:
    def datachange_notification(self, node, val, data) -> None:
        pass


async def case(items: int, rounds: int, *, ours: bool, subscribe: bool, filter_: ua.DataChangeFilter | None,
               step: float) -> float:
    server = Server()
    await server.init()
    if ours:
        subscriptions.install(server)
    idx = await server.register_namespace("urn:bench")
    folder = await server.nodes.objects.add_folder(ua.NodeId("bench", idx), "bench")
    nodes = []
    for i in range(items):
        var = await folder.add_variable(ua.NodeId(f"v{i}", idx), f"v{i}", 0.0)
        nodes.append(var)
    if filter_ is not None and filter_.DeadbandType == ua.DeadbandType.Percent:
        for var in nodes:
            await var.add_property(0, "EURange", ua.Range(Low=-1000.0, High=1000.0))
    sub = None
    if subscribe:
        sub = await server.create_subscription(1000, Sink())
        for start in range(0, items, 1000):
            chunk = nodes[start:start + 1000]
            results = await sub._subscribe(chunk, ua.AttributeIds.Value, filter_, 1)
            refused = [r for r in results if isinstance(r, ua.StatusCode)]
            if refused:
                raise SystemExit(f"monitored items refused: {refused[0].name}")
    ids = [var.nodeid for var in nodes]
    write = server.iserver.aspace.write_attribute_value
    value_attr = ua.AttributeIds.Value
    per_write = []
    gc.collect()
    for r in range(rounds):
        dvs = [ua.DataValue(ua.Variant((r + 1) * step + i * 1e-6, ua.VariantType.Double)) for i in range(items)]
        start = time.perf_counter()
        for node_id, dv in zip(ids, dvs):
            await write(node_id, value_attr, dv)
        per_write.append((time.perf_counter() - start) / items)
        await asyncio.sleep(0)
    if sub is not None:
        await sub.delete()
    return statistics.median(per_write) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    absolute = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                   DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=2.0)
    percent = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                  DeadbandType=ua.DeadbandType.Percent, DeadbandValue=0.1)
    rows = [
        ("no subscription", False, False, None, 3.0),
        ("asyncua, no filter", False, True, None, 3.0),
        ("asyncua, Absolute 2 (every change exceeds)", False, True, absolute, 3.0),
        ("emu-opcua, no filter", True, True, None, 3.0),
        ("emu-opcua, Absolute 2 (every change exceeds)", True, True, absolute, 3.0),
        ("emu-opcua, Percent 0.1 % of 2000 (half inside)", True, True, percent, 1.5),
    ]
    print(f"data-change path: {args.items} monitored Double variables, {args.rounds} rounds, one write each")
    print(f"{'case':<50} {'us/write':>9}")
    for name, ours, subscribe, filter_, step in rows:
        us = await case(args.items, args.rounds, ours=ours, subscribe=subscribe, filter_=filter_, step=step)
        print(f"{name:<50} {us:>9.1f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
