"""Time MeterModel.build for fleets of growing size (prints a table; no assertions).

    .venv/bin/python bench/bench_model.py [max_meters]
"""

import asyncio
import sys
import time

from asyncua import Server

from emu_opcua.opcua.model import MeterModel


async def one(n: int) -> tuple[int, float, int]:
    server = Server()
    await server.init()
    t0 = time.perf_counter()
    model = await MeterModel.build(server, [f"m{i:04d}" for i in range(n)])
    elapsed = time.perf_counter() - t0
    values = sum(len(m.quantities) + len(m.extremes) for m in model.meters.values())
    return n, elapsed, values


async def main(max_meters: int) -> None:
    print(f"{'meters':>7} {'seconds':>8} {'ms/meter':>9} {'value vars':>11}")
    n = 10
    while n <= max_meters:
        n_, s, v = await one(n)
        print(f"{n_:>7} {s:>8.2f} {1000 * s / n_:>9.1f} {v:>11}")
        n *= 10


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
