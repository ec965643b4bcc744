"""Gateway at scale: N meters at a 1 s fast poll, simulator and gateway in separate processes.

    .venv/bin/python bench/bench_gateway.py [--meters 100 500 1000] [--window 30]
    .venv/bin/python bench/bench_gateway.py --meters 1000 --backfill 30 [--pages 1] [--sim-procs 100]

``--backfill DAYS``: the history mode (see ``run_backfill``): every meter holds DAYS of
datalog that the gateway backfills into its history store while it polls every meter at
1 s; prints polls on time per 5 s window and the time until every meter is current.

For each fleet size N:
1. ``emu-opcua simulate --meters N`` in its own process (127.0.0.1, ephemeral ports).
2. The gateway (``GatewayServer``) in a second process, polling every meter every second;
   measured in steady state, from 5 s after every meter was polled once.
3. This process is the OPC UA client:
   - polls on time: share of fast polls that started within 10 % of an interval of their
     slot and finished before the next (counted by each poller, summed by the gateway);
   - gateway CPU % and RSS per meter (marginal: RSS of the N-meter gateway minus
     that of a 10-meter gateway, divided by N - 10);
   - latency: a subscription on AcActivePowerTotal of some meters; the simulator is told
     to step a meter's load (``/_sim/meters/{n}/events/load``) and the time until the
     client is notified of the new value is recorded (p50 / p95);
   - Read throughput: Read requests of 500 Values each, back to back from 4 concurrent
     tasks, against the gateway while it polls every meter, then with its polling
     paused (the Read service alone), then, side by side in the same run, against a
     bare asyncua server holding the same number of Double variables.
Only 127.0.0.1 is contacted. Prints one table at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from asyncua import Client, ua

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
NS_URI = "urn:emu-opcua:nodesets:EmuMeter"
WARMUP = 5.0  # seconds between the gateway being ready and the measurement


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int | None = None) -> int:
    path = f"/proc/{pid or 'self'}/status"
    for line in Path(path).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- the gateway process --------------------------------------------------------------------
async def gateway_role(config_path: str, early: bool = False) -> None:
    """Run the gateway; talk to the orchestrator over stdin/stdout (one JSON per line)."""
    from emu_opcua.opcua.config import load_config
    from emu_opcua.opcua.serve import GatewayServer

    config = load_config(config_path)
    import gc

    gc.collect()
    base_rss = rss_kib()
    gateway = GatewayServer(config)
    t_start = t0 = time.perf_counter()
    await gateway.start()
    build_s = time.perf_counter() - t0

    def emit(obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    # ready when every meter had a successful fast poll (early: at once, backfill mode)
    while not early:
        ok = sum(1 for p in gateway.pollers.values() if p.stats.polls > 0)
        if ok == len(gateway.pollers):
            break
        await asyncio.sleep(0.5)
    if not early:
        await gateway.settled.wait()  # the one-off freeze of long-lived objects is done
    emit({"ready": True, "build_s": build_s, "base_rss_kib": base_rss})
    cpu0, wall0 = 0.0, t_start  # until "start": since the process began (backfill mode)
    lags: list[float] = []

    async def loop_lag() -> None:
        """How late the event loop runs a 20 ms timer: the delay every poll also sees."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.02)
            lags.append(loop.time() - t - 0.02)

    lag_task = asyncio.create_task(loop_lag())
    gc_pauses: list[tuple[int, float]] = []  # (generation, seconds) of each collection
    gc_start = [0.0]

    def gc_watch(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], time.perf_counter() - gc_start[0]))

    gc.callbacks.append(gc_watch)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        if line == "pause":  # stop polling (values stay): isolates the Read service
            for task in gateway._tasks:
                task.cancel()
            _, stuck = await asyncio.wait(gateway._tasks, timeout=10)
            emit({"paused": True, "stuck": len(stuck)})
        elif line == "start":
            for p in gateway.pollers.values():
                p.stats.polls = p.stats.on_time = p.stats.failures = p.stats.late = p.stats.overran = 0
                p.stats.max_lateness = 0.0
            lags.clear()
            gc_pauses.clear()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            emit({"started": True})
        elif line == "progress":  # backfill mode: cumulative since "start"
            emit({"elapsed": time.perf_counter() - t_start,
                  "current": sum(1 for s in gateway.syncers.values() if s.current.is_set()),
                  "failing": sum(1 for s in gateway.syncers.values() if s.diagnostics.state == "failing"),
                  "rows": sum(s.rows_added for s in gateway.syncers.values()),
                  "polls": sum(p.stats.polls for p in gateway.pollers.values()),
                  "on_time": sum(p.stats.on_time for p in gateway.pollers.values()),
                  "wall": time.perf_counter() - wall0, "cpu_pct": 100.0 * (time.process_time() - cpu0)
                  / max(1e-9, time.perf_counter() - wall0)})
        elif line == "stop":
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            polls = sum(p.stats.polls for p in gateway.pollers.values())
            on_time = sum(p.stats.on_time for p in gateway.pollers.values())
            failures = sum(p.stats.failures for p in gateway.pollers.values())
            lag = sorted(lags) or [0.0]
            late = sorted(p.stats.max_lateness for p in gateway.pollers.values())
            emit({"polls": polls, "on_time": on_time, "failures": failures,
                  "late": sum(p.stats.late for p in gateway.pollers.values()),
                  "overran": sum(p.stats.overran for p in gateway.pollers.values()),
                  "loop_lag_ms": [1000 * lag[len(lag) // 2], 1000 * lag[int(0.99 * (len(lag) - 1))], 1000 * lag[-1]],
                  "max_lateness_ms": [1000 * late[len(late) // 2], 1000 * late[-1]],
                  "gc": {g: [sum(1 for gg, _ in gc_pauses if gg == g),
                             1000 * max((d for gg, d in gc_pauses if gg == g), default=0.0),
                             1000 * sum(d for gg, d in gc_pauses if gg == g)] for g in (0, 1, 2)},
                  "cpu_pct": 100.0 * cpu / wall, "rss_kib": rss_kib(), "wall": wall,
                  "expected_polls": wall * len(gateway.pollers)})
    lag_task.cancel()
    await gateway.stop()


# --- a bare asyncua server with the same number of variables ---------------------------------
async def bare_role(port: int, variables: int) -> None:
    from asyncua import Server

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:bench:bare")
    # Like the gateway: a folder per meter, MEASUREMENTS variables in each (one huge folder
    # would make asyncua's reference bookkeeping quadratic).
    from emu_opcua.meter.catalogue import MEASUREMENTS

    per_folder = len(MEASUREMENTS)
    folder = None
    for i in range(variables):
        if i % per_folder == 0:
            folder = await server.nodes.objects.add_folder(idx, f"Bare{i // per_folder}")
        await folder.add_variable(ua.NodeId(f"v{i}", idx), f"v{i}", float(i))
    async with server:
        sys.stdout.write(json.dumps({"ready": True}) + "\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


# --- the orchestrator -----------------------------------------------------------------------
class Proc:
    def __init__(self, args: list[str], **kw) -> None:
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, **kw)

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def recv(self, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"process {self.p.args[:4]} ended (rc={self.p.poll()})")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise TimeoutError("no answer")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()


async def read_throughput(url: str, node_ids: list[ua.NodeId], seconds: float, *, per_request: int = 500,
                          concurrency: int = 4) -> float:
    """Values read per second by back-to-back Read requests."""
    async with Client(url, timeout=30) as client:
        count = 0
        end = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            nonlocal count
            i = offset
            while time.perf_counter() < end:
                chunk = [node_ids[(i + k) % len(node_ids)] for k in range(per_request)]
                i += per_request
                params = ua.ReadParameters()
                for nid in chunk:
                    rv = ua.ReadValueId()
                    rv.NodeId = nid
                    rv.AttributeId = ua.AttributeIds.Value
                    params.NodesToRead.append(rv)
                await client.uaclient.read(params)
                count += len(chunk)

        start = time.perf_counter()
        await asyncio.gather(*(worker(k * 97) for k in range(concurrency)))
        return count / (time.perf_counter() - start)


class Notifications:
    def __init__(self) -> None:
        self.waiters: dict[str, tuple[float, float, asyncio.Future]] = {}

    def datachange_notification(self, node, val, data) -> None:
        key = node.nodeid.Identifier
        w = self.waiters.get(key)
        if w is not None and val is not None and abs(val - w[0]) < 1e-6:
            if not w[2].done():
                w[2].set_result(time.perf_counter() - w[1])


async def latency_samples(url: str, control: str, meter_names: list[str], seconds: float) -> list[float]:
    samples: list[float] = []
    handler = Notifications()
    async with Client(url, timeout=30) as client, httpx.AsyncClient(timeout=10) as http:
        idx = await client.get_namespace_index(NS_URI)
        nodes = [client.get_node(ua.NodeId(f"{m}.Measurements.AcActivePowerTotal", idx)) for m in meter_names]
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_data_change(nodes, sampling_interval=0)
        end = time.perf_counter() + seconds
        step = 0
        while time.perf_counter() < end:
            step += 1
            i = random.randrange(len(meter_names))
            watts = 1000 + step * 7 % 5000 + i
            fut = asyncio.get_running_loop().create_future()
            handler.waiters[f"{meter_names[i]}.Measurements.AcActivePowerTotal"] = (watts / 1000.0, time.perf_counter(), fut)
            await http.post(f"{control}/_sim/meters/{i}/events/load", params={"watts": watts})
            try:
                samples.append(await asyncio.wait_for(fut, 10))
            except TimeoutError:
                samples.append(float("inf"))
            await asyncio.sleep(random.uniform(0.1, 0.5))
        await sub.delete()
        for i in range(len(meter_names)):
            await http.post(f"{control}/_sim/meters/{i}/events/load")  # back to the load curve
    return samples


def _on_time_pct(stats: dict) -> float:
    return 100.0 * stats["on_time"] / max(1, stats["expected_polls"], stats["polls"])


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


async def run_size(n: int, window: float, tmp: Path, *, full: bool = True, refresh: float = 1.0,
                   refresh_timestamps: bool = False, history: bool = True, firmware_update: bool = True) -> dict:
    ports_file = tmp / f"ports-{n}.json"
    sim = Proc([PY, "-m", "emu_opcua", "simulate", "--meters", str(n), "--history-days", "1",
                "--refresh-interval", str(refresh), "--ports-file", str(ports_file)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not ports_file.exists():
            if time.monotonic() > deadline or sim.p.poll() is not None:
                raise RuntimeError("simulator did not start")
            await asyncio.sleep(0.2)
        ports = json.loads(ports_file.read_text())
        opc_port = free_port()
        cfg = tmp / f"gateway-{n}.toml"
        lines = [
            "[server]", 'host = "127.0.0.1"', f"port = {opc_port}", f'pki_dir = "{tmp / "pki"}"',
            'security_policies = ["None"]', f"firmware_update = {str(firmware_update).lower()}", "",
            "[defaults]", "fast_interval = 1.0", "extremes_interval = 5.0", "status_interval = 60.0",
            "datalog_interval = 60.0", f"refresh_timestamps = {str(refresh_timestamps).lower()}", "",
            "[history]", f"enabled = {str(history).lower()}", "",
        ]
        for i, m in enumerate(ports["meters"]):
            lines += ["[[meters]]", f'name = "m{i:04d}"', f'host = "{m["host"]}"',
                      f"http_port = {m['http_port']}", f"modbus_port = {m['modbus_port']}", ""]
        cfg.write_text("\n".join(lines))
        gw = Proc([PY, __file__, "--role", "gateway", "--config", str(cfg)], stderr=subprocess.DEVNULL)
        try:
            ready = gw.recv()
            url = f"opc.tcp://127.0.0.1:{opc_port}/"
            control = f"http://127.0.0.1:{ports['control_port']}"
            # steady state: skip the start-up transient (first polls of every group, the
            # one-off garbage collection when the gateway settles)
            await asyncio.sleep(WARMUP)
            gw.send("start")
            gw.recv()
            sim_cpu0, sim_wall0 = cpu_seconds(sim.p.pid), time.perf_counter()
            names = [f"m{i:04d}" for i in range(min(n, 20))]
            if full:
                lat = await latency_samples(url, control, names, window)
            else:
                await asyncio.sleep(window)
                lat = []
            gw.send("stop")
            stats = gw.recv()
            sim_cpu_pct = 100.0 * (cpu_seconds(sim.p.pid) - sim_cpu0) / (time.perf_counter() - sim_wall0)
            if not full:
                return {"meters": n, "rss_kib": stats["rss_kib"], "on_time_pct": _on_time_pct(stats),
                        "polls_done_pct": 100.0 * stats["polls"] / max(1, stats["expected_polls"]),
                        "cpu_pct": stats["cpu_pct"], "sim_cpu_pct": sim_cpu_pct,
                        "loop_lag_ms": stats["loop_lag_ms"], "max_lateness_ms": stats["max_lateness_ms"],
                        "gc": stats["gc"], "late": stats["late"], "overran": stats["overran"],
                        "polls": stats["polls"]}
            async with Client(url) as client:
                idx = await client.get_namespace_index(NS_URI)
            from emu_opcua.meter.catalogue import MEASUREMENTS

            node_ids = [ua.NodeId(f"m{i:04d}.Measurements.{q.browse_name}", idx)
                        for i in range(n) for q in MEASUREMENTS]
            gw_reads = await read_throughput(url, node_ids, 8.0)
            gw.send("pause")
            gw.recv()
            gw_reads_idle = await read_throughput(url, node_ids, 8.0)
        finally:
            gw.send("quit")
            gw.stop()
        bare_port = free_port()
        bare = Proc([PY, __file__, "--role", "bare", "--port", str(bare_port), "--variables", str(len(node_ids))],
                    stderr=subprocess.DEVNULL)
        try:
            bare.recv()
            bare_url = f"opc.tcp://127.0.0.1:{bare_port}/"
            async with Client(bare_url) as client:
                bidx = await client.get_namespace_index("urn:bench:bare")
            bare_ids = [ua.NodeId(f"v{i}", bidx) for i in range(len(node_ids))]
            bare_reads = await read_throughput(bare_url, bare_ids, 8.0)
        finally:
            bare.send("quit")
            bare.stop()
    finally:
        sim.stop()
    finite = [x for x in lat if x != float("inf")]
    return {
        "meters": n,
        "firmware_update": firmware_update,
        "build_s": ready["build_s"],
        "on_time_pct": _on_time_pct(stats),
        "sim_cpu_pct": sim_cpu_pct,
        "polls_done_pct": 100.0 * stats["polls"] / max(1, stats["expected_polls"]),
        "cpu_pct": stats["cpu_pct"],
        "rss_kib": stats["rss_kib"],
        "lat_p50_ms": 1000 * statistics.median(finite) if finite else float("nan"),
        "lat_p95_ms": 1000 * percentile(lat, 0.95),
        "lat_n": len(lat),
        "lat_lost": len(lat) - len(finite),
        "gw_reads": gw_reads,
        "bare_reads": bare_reads,
        "ratio": gw_reads / bare_reads,
        "gw_reads_idle": gw_reads_idle,
        "ratio_idle": gw_reads_idle / bare_reads,
    }


async def run_backfill(n: int, days: float, pages: int, tmp: Path, *, sim_procs: int = 100,
                       timeout: float = 3600) -> None:
    """N meters each with ``days`` of datalog, all backfilled into the history store while
    every meter is polled at 1 s: polls on time per 5 s window, time until all are current."""
    # Several simulator processes: one process serving every meter would stall all of
    # them while it builds a 3000-row page (a real meter builds only its own).
    procs = max(1, min(sim_procs, n))
    sims, files = [], []
    for k in range(procs):
        count = n // procs + (1 if k < n % procs else 0)
        files.append(tmp / f"ports-backfill-{n}-{k}.json")
        sims.append(Proc([PY, "-m", "emu_opcua", "simulate", "--meters", str(count), "--history-days", str(days),
                          "--serial-base", str(22350000 + 10000 * k), "--ports-file", str(files[-1])],
                         stderr=subprocess.DEVNULL))
    try:
        while not all(f.exists() for f in files):
            if any(p.p.poll() is not None for p in sims):
                raise RuntimeError("simulator did not start")
            await asyncio.sleep(0.2)
        ports = {"meters": [m for f in files for m in json.loads(f.read_text())["meters"]]}
        cfg = tmp / f"gateway-backfill-{n}.toml"
        lines = ["[server]", 'host = "127.0.0.1"', f"port = {free_port()}", f'pki_dir = "{tmp / "pki"}"',
                 f'data_dir = "{tmp / f"data-{n}"}"', 'security_policies = ["None"]', "",
                 "[history]", f"max_concurrent_pages = {pages}" if pages else "enabled = false", "",
                 "[defaults]", "fast_interval = 1.0", "extremes_interval = 5.0", "status_interval = 60.0",
                 "datalog_interval = 60.0", ""]
        for i, m in enumerate(ports["meters"]):
            lines += ["[[meters]]", f'name = "m{i:04d}"', f'host = "{m["host"]}"',
                      f"http_port = {m['http_port']}", f"modbus_port = {m['modbus_port']}", ""]
        cfg.write_text("\n".join(lines))
        gw = Proc([PY, __file__, "--role", "gateway", "--early-ready", "--config", str(cfg)],
                  stderr=subprocess.DEVNULL)
        try:
            gw.recv()  # started: polling and backfill have begun
            windows: list[float] = []
            last = {"polls": 0, "on_time": 0}
            t0 = time.monotonic()
            while True:
                await asyncio.sleep(5.0)
                gw.send("progress")
                now = gw.recv()
                polls = now["polls"] - last["polls"]
                windows.append(100.0 * (now["on_time"] - last["on_time"]) / max(1, polls))
                last = now
                print(f"  {now['elapsed']:6.0f} s: {now['current']}/{n} current, {now['failing']} failing, "
                      f"{now['rows']:,} rows, {polls} polls, on time {windows[-1]:.1f} %", file=sys.stderr, flush=True)
                if now["current"] == n or time.monotonic() - t0 > timeout or (not pages and len(windows) >= 12):
                    break
        finally:
            gw.send("quit")
            gw.stop()
    finally:
        for sim in sims:
            sim.stop()
    overall = 100.0 * now["on_time"] / max(1, now["polls"])
    print(f"backfill benchmark: {n} meters x {days:g} days of datalog, {pages} pages in flight, fast poll 1 s, "
          f"{procs} simulator processes, {os.cpu_count()} cores shared by simulators and gateway")
    print("| meters | rows stored | all current after | rows/s | polls on time (overall) | worst 5 s window | gateway CPU |")
    print("|---|---|---|---|---|---|---|")
    done = f"{now['elapsed']:.0f} s" if now["current"] == n else f"not within {timeout:.0f} s ({now['current']}/{n})"
    print(f"| {n} | {now['rows']:,} | {done} | {now['rows'] / max(1e-9, now['wall']):,.0f} | {overall:.1f} % | "
          f"{min(windows):.1f} % | {now['cpu_pct']:.0f} % |")


def print_table(rows: list[dict]) -> None:
    head = ["meters", "firmware update", "build s", "polls on time", "polls done", "gw CPU %", "sim CPU %", "RSS", "RSS/meter",
            "latency p50", "latency p95", "samples", "Read gw values/s", "ratio",
            "Read gw (polling paused)", "ratio", "Read bare values/s"]
    lines = [head]
    for r in rows:
        lines.append([
            str(r["meters"]), _on(r["firmware_update"]), f"{r['build_s']:.1f}", f"{r['on_time_pct']:.1f} %", f"{r['polls_done_pct']:.1f} %",
            f"{r['cpu_pct']:.0f}", f"{r['sim_cpu_pct']:.0f}", f"{r['rss_kib'] / 1024:.0f} MB", f"{r['rss_per_meter_kib'] / 1024:.2f} MB",
            f"{r['lat_p50_ms']:.0f} ms", f"{r['lat_p95_ms']:.0f} ms", f"{r['lat_n']} ({r['lat_lost']} lost)",
            f"{r['gw_reads']:,.0f}", f"{r['ratio']:.2f}", f"{r['gw_reads_idle']:,.0f}",
            f"{r['ratio_idle']:.2f}", f"{r['bare_reads']:,.0f}",
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for k, line in enumerate(lines):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print("targets: >= 99 % polls on time at 1000 meters, <= 0.5 MB RSS/meter, "
          "p95 <= poll interval + 100 ms (1100 ms), Read ratio >= 0.8")


async def orchestrate(sizes: list[int], window: float, refresh: float, polling_only: bool = False,
                      refresh_timestamps: bool = False, history: bool = True,
                      firmware_updates: tuple[bool, ...] = (True,)) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if polling_only:
            # quick iterations on the polling path: no RSS baseline, latency or Read
            print("meters  polls on time  polls done  gw CPU %  sim CPU %  RSS     loop lag p50/p99/max ms"
                  "  max poll lateness per meter, median/max ms")
            for n in sizes:
                r = await run_size(n, window, Path(tmp), full=False, refresh=refresh,
                                   refresh_timestamps=refresh_timestamps, history=history)
                print(f"{n:>6}  {r['on_time_pct']:>12.1f} %  {r['polls_done_pct']:>8.1f} %  {r['cpu_pct']:>8.0f}"
                      f"  {r['sim_cpu_pct']:>9.0f}  {r['rss_kib'] / 1024:.0f} MB  "
                      f"{'/'.join(f'{x:.0f}' for x in r['loop_lag_ms']):>20}  "
                      f"{'/'.join(f'{x:.0f}' for x in r['max_lateness_ms']):>20}", flush=True)
                print("  GC per generation: collections, longest ms, total ms:", r["gc"], flush=True)
                print(f"  polls {r['polls']}: started late {r['late']}, finished after the next slot {r['overran']}",
                      flush=True)
            return
        # RSS per meter is marginal: the growth from a 10-meter gateway (same process
        # layout, same code, same firmware_update) divided by the extra meters, so the
        # server's own standard address space and libraries are not billed to the meters.
        bases = {}
        for firmware in firmware_updates:
            print(f"... 10 meters (RSS baseline, firmware_update {_on(firmware)})", file=sys.stderr, flush=True)
            bases[firmware] = await run_size(10, 5.0, Path(tmp), full=False, history=history,
                                             firmware_update=firmware)
        for n in sizes:
            for firmware in firmware_updates:  # side by side: one size with each setting in turn
                print(f"... {n} meters, firmware_update {_on(firmware)}", file=sys.stderr, flush=True)
                row = await run_size(n, window, Path(tmp), refresh=refresh, refresh_timestamps=refresh_timestamps,
                                     history=history, firmware_update=firmware)
                base = bases[firmware]
                row["rss_per_meter_kib"] = (row["rss_kib"] - base["rss_kib"]) / (n - base["meters"])
                rows.append(row)
    print(f"gateway benchmark: fast poll 1 s, meter register refresh {refresh:g} s, "
          f"refresh_timestamps {str(refresh_timestamps).lower()}, history {_on(history)}, "
          f"measurement window {window:.0f} s, {os.cpu_count()} cores shared by simulator, gateway and client")
    print_table(rows)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--refresh", type=float, default=1.0,
                        help="simulated meters' register refresh (s); the manual says 5-10 s")
    parser.add_argument("--refresh-timestamps", action="store_true",
                        help="serve every meter with refresh_timestamps = true (timestamps rewritten every poll)")
    parser.add_argument("--no-history", action="store_true",
                        help="serve with [history] enabled = false (the datalog is not synced into a store)")
    parser.add_argument("--firmware-update", choices=["on", "off", "both"], default="on",
                        help="serve with [server] firmware_update on, off, or both in turn (RSS of the DI "
                             "SoftwareUpdate AddIn side by side)")
    parser.add_argument("--polling-only", action="store_true",
                        help="measure only the polling (on time, CPU, RSS): a quick check")
    parser.add_argument("--backfill", type=float, metavar="DAYS",
                        help="history mode: every meter holds DAYS of datalog, backfilled while polled at 1 s")
    parser.add_argument("--pages", type=int, default=1, help="history mode: max_concurrent_pages (0: history off, the same run as a baseline)")
    parser.add_argument("--sim-procs", type=int, default=100,
                        help="history mode: simulator processes (meters are spread over them)")
    parser.add_argument("--role", choices=["orchestrator", "gateway", "bare"], default="orchestrator")
    parser.add_argument("--config")
    parser.add_argument("--early-ready", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int)
    parser.add_argument("--variables", type=int)
    args = parser.parse_args()
    if args.role == "gateway":
        import logging

        logging.basicConfig(level=logging.ERROR)
        asyncio.run(gateway_role(args.config, args.early_ready))
    elif args.role == "bare":
        asyncio.run(bare_role(args.port, args.variables))
    elif args.backfill is not None:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.meters:
                asyncio.run(run_backfill(n, args.backfill, args.pages, Path(tmp), sim_procs=args.sim_procs))
    else:
        firmware = {"on": (True,), "off": (False,), "both": (True, False)}[args.firmware_update]
        asyncio.run(orchestrate(args.meters, args.window, args.refresh, args.polling_only, args.refresh_timestamps,
                                not args.no_history, firmware))


if __name__ == "__main__":
    main()
