"""Benchmark: the aggregate engine alone (no store, no OPC UA), rows per second.

    .venv/bin/python bench/bench_aggregates.py [--rows 1000000] [--interval-minutes 1440]

Feeds quarter-hour raw points (Good, with a Bad and an Uncertain one every 1000 rows, or
all Good with --clean) in
pages of 1000 rows, as store pages would come, and times each aggregate over the whole
range at the given processing interval (default one day). Prints rows/s per aggregate.
Target: >= 1,000,000 rows/s for Average and TimeAverage. A benchmark prints; it never
asserts (timings belong in no test).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emu_opcua.history.aggregates import AggregateConfiguration, process  # noqa: E402
from emu_opcua.history.aggregates import status as sc  # noqa: E402

QUARTER_HOUR = 15 * 60_000
AGGREGATES = ["Average", "TimeAverage", "Total", "Minimum", "Maximum2", "Count",
              "DeltaBounds", "Interpolative", "StandardDeviationSample", "DurationGood"]


def pages(rows: int, page_size: int = 1000, *, clean: bool = False) -> list[list[tuple]]:
    points = []
    for i in range(rows):
        status = sc.GOOD
        if clean:
            pass
        elif i % 1000 == 500:
            status = sc.BAD
        elif i % 1000 == 700:
            status = sc.UNCERTAIN
        points.append((i * QUARTER_HOUR, 1000.0 + 500.0 * math.sin(i / 48.0), status))
    return [points[i:i + page_size] for i in range(0, rows, page_size)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--interval-minutes", type=int, default=1440)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clean", action="store_true",
                        help="every row Good (no Bad/Uncertain rows every 1000)")
    args = parser.parse_args()
    data = pages(args.rows, clean=args.clean)
    end = args.rows * QUARTER_HOUR
    interval = args.interval_minutes * 60_000
    config = AggregateConfiguration()
    mix = "all Good" if args.clean else "1 Bad + 1 Uncertain per 1000"
    print(f"{args.rows:,} rows ({mix}), interval {args.interval_minutes} min, "
          f"best of {args.repeat}")
    print(f"{'aggregate':<26} {'seconds':>9} {'rows/s':>12} {'intervals':>10}")
    for name in AGGREGATES:
        best = math.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            n = sum(1 for _ in process(name, iter(data), 0, end, interval, config=config))
            best = min(best, time.perf_counter() - t0)
        print(f"{name:<26} {best:>9.3f} {args.rows / best:>12,.0f} {n:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
