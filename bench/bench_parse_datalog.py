"""Benchmark: parse a realistic 3000-row datalog page (one full ``/data/`` answer).

    .venv/bin/python bench/bench_parse_datalog.py [--repeat 50] [--rows 3000]

Prints, per variant (header or not, ';' or ','), the median and 95th-percentile time per
page and the rows per second they amount to. Target: >= 150,000 rows/s median. A
benchmark prints; it never asserts (timings belong in no test).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emu_opcua.meter.datalog import DatalogRow, DatalogStatus, format_datalog, parse_datalog  # noqa: E402


def realistic_rows(n: int, *, seed: int = 1) -> list[DatalogRow]:
    """``n`` quarter-hour rows of a 3-phase commercial load, newest first (as /data/ sends)."""
    rng = random.Random(seed)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    e_imp = [12_345_678, 2_345_678]
    e_exp = [45_678, 5_678]
    q_imp = [3_456_789, 456_789]
    q_exp = [12_345, 2_345]
    rows = []
    for i in range(n):
        t = t0 + timedelta(minutes=15 * i)
        tariff = 0 if 6 <= t.hour < 22 else 1
        daily = 0.6 + 0.4 * math.sin((t.hour + t.minute / 60) / 24 * 2 * math.pi)
        p = [max(0, int(rng.gauss(2500 * daily, 300))) for _ in range(3)]
        e_imp[tariff] += sum(p) // 4
        q_imp[tariff] += sum(p) // 12
        if rng.random() < 0.05:
            e_exp[tariff] += rng.randint(1, 500)
            q_exp[tariff] += rng.randint(1, 100)
        u = [rng.randint(2280, 2350) for _ in range(3)]
        i_ph = [round(pp / (uu / 10) * 1000) for pp, uu in zip(p, u)]
        pf = [rng.randint(85, 99) for _ in range(3)]
        raw = (
            *e_imp, *e_exp, *q_imp, *q_exp,
            sum(p), *p,
            sum(i_ph), *i_ph, abs(i_ph[0] - i_ph[1]) // 3,
            *u, *pf, rng.choice((499, 500, 500, 501)),
        )
        status = DatalogStatus.POWER_OUTAGE if rng.random() < 0.001 else DatalogStatus(0)
        rows.append(DatalogRow(t, i + 1, status, "22350000", raw))
    rows.reverse()
    return rows


def measure(text: str, repeat: int, expected: int) -> list[float]:
    parse_datalog(text)  # warm up (caches, allocator)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        rows = parse_datalog(text)
        times.append(time.perf_counter() - start)
        if len(rows) != expected:
            raise SystemExit(f"parsed {len(rows)} rows, expected {expected}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    rows = realistic_rows(args.rows)
    print(f"datalog parse, {args.rows} rows per page, {args.repeat} runs per variant, Python {sys.version.split()[0]}")
    print(f"{'variant':<22} {'median ms':>10} {'p95 ms':>8} {'median rows/s':>14} {'p95 rows/s':>11}")
    for header in (True, False):
        for sep in (";", ","):
            text = format_datalog(rows, header=header, sep=sep)
            times = sorted(measure(text, args.repeat, args.rows))
            median = statistics.median(times)
            p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
            name = f"{'header' if header else 'no header'}, '{sep}'"
            print(f"{name:<22} {median * 1e3:>10.2f} {p95 * 1e3:>8.2f} {args.rows / median:>14,.0f} {args.rows / p95:>11,.0f}")


if __name__ == "__main__":
    main()
