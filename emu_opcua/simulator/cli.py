"""``emu-opcua simulate``: emulate one or many EMU Professional II TCP/IP meters.

Each meter gets its own HTTP and Modbus TCP port (consecutive from ``--http-port`` /
``--modbus-port`` when given, ephemeral otherwise). The chosen ports are printed as a
table and, with ``--ports-file``, written as JSON. A control server for fault injection
(``/_sim/meters/{n}/faults``, simulator-only) listens on ``--control-port``. Runs until
Ctrl-C or SIGTERM, then closes every listener and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
import time

from emu_opcua import argtypes
from emu_opcua.simulator.fleet import Fleet, FleetConfig
from emu_opcua.simulator.physics import DATALOG_CAPACITY, LOGBOOK_CAPACITY

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--meters", type=argtypes.int_range(1), default=1, help="number of meters (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=argtypes.listen_port, default=0,
                        help="HTTP port of the first meter, the next meters count up (default 0: ephemeral)")
    parser.add_argument("--modbus-port", type=argtypes.listen_port, default=0,
                        help="Modbus TCP port of the first meter, the next meters count up (default 0: ephemeral)")
    parser.add_argument("--control-port", type=argtypes.listen_port, default=0,
                        help="port of the simulator control server (default 0: ephemeral)")
    parser.add_argument("--password", default=None, help="HTTP Basic password, user admin (default: none)")
    parser.add_argument("--serial-base", type=int, default=22350000, help="serial of the first meter (default 22350000)")
    parser.add_argument("--speed", type=argtypes.positive_float, default=1.0,
                        help="time acceleration factor (default 1; 3600 = one hour per second)")
    parser.add_argument("--datalog-interval", type=argtypes.int_range(1), default=900,
                        help="seconds between datalog rows (default 900)")
    parser.add_argument("--history-days", type=float, default=30.0,
                        help="days of datalog already on record at start (default 30; 0: none; "
                             "1095: about three years, 105,120 quarter-hour rows)")
    parser.add_argument("--datalog-capacity", type=argtypes.int_range(1), default=DATALOG_CAPACITY,
                        help=f"rows the datalog holds, older ones drop out (default {DATALOG_CAPACITY})")
    parser.add_argument("--logbook-capacity", type=argtypes.int_range(1), default=LOGBOOK_CAPACITY,
                        help=f"logbook entries held; when full, rows carry 0x80 (default {LOGBOOK_CAPACITY})")
    parser.add_argument("--sync-delay", type=float, default=60.0,
                        help="seconds after a start until the clock is synchronised; rows "
                             "before carry 0x40 (default 60)")
    parser.add_argument("--logbook", action=argparse.BooleanOptionalAction, default=True,
                        help="LP variant with a logbook (default on)")
    parser.add_argument("--refresh-interval", type=argtypes.positive_float, default=1.0,
                        help="seconds between Modbus register refreshes (default 1; real meters 5-10)")
    parser.add_argument("--start-time", type=float, default=None,
                        help="meter time at start, epoch seconds (default: now)")
    parser.add_argument("--ports-file", default=None, help="write the chosen ports to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated loads (default 0)")


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    if args.password is not None and not 0 < len(args.password) <= 20:
        raise SystemExit("emu-opcua simulate: --password must have 1..20 characters")
    if args.history_days < 0:
        raise SystemExit("emu-opcua simulate: --history-days must not be negative")
    if not 0 <= args.sync_delay < float("inf"):
        raise SystemExit("emu-opcua simulate: --sync-delay must be a number of seconds >= 0")
    return FleetConfig(
        meters=args.meters, host=args.host, http_port=args.http_port, modbus_port=args.modbus_port,
        password=args.password, serial_base=args.serial_base, speed=args.speed,
        datalog_interval=args.datalog_interval, history_days=args.history_days, logbook=args.logbook,
        seed=args.seed, refresh_interval=args.refresh_interval, start_time=args.start_time,
        control_port=args.control_port, sync_delay=args.sync_delay,
        datalog_capacity=args.datalog_capacity, logbook_capacity=args.logbook_capacity,
    )


async def serve(config: FleetConfig, ports_file: str | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not on this platform
            pass
    t0 = time.perf_counter()
    fleet = Fleet(config)
    try:
        await fleet.start()
    except OSError as exc:
        print(f"emu-opcua simulate: cannot listen: {exc}", file=sys.stderr)
        return 1
    try:
        listening = time.perf_counter() - t0
        print(fleet.ports_table(), flush=True)
        if ports_file:
            fleet.write_ports_file(ports_file)
        log.info("%d meter(s) listening after %.2f s", len(fleet.meters), listening)
        await fleet.wait_warm()
        log.info("history of %d meter(s) ready after %.2f s", len(fleet.meters), time.perf_counter() - t0)
        # The meters' state and histories live as long as the process: keep them out of
        # full garbage collections (whose pauses delay every meter's answers).
        gc.collect()
        gc.freeze()
        await stop.wait()
    finally:
        log.info("shutting down")
        await fleet.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    return asyncio.run(serve(config, args.ports_file))


def main(argv: list[str] | None = None) -> int:
    """``python -m emu_opcua.simulator``: the same as ``emu-opcua simulate``."""
    parser = argparse.ArgumentParser(prog="emu-opcua simulate", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL if args.verbose < 2 else logging.DEBUG)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
