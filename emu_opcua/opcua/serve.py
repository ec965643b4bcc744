"""``emu-opcua serve``: the OPC UA server with one poller per configured meter.

Without ``--config`` it is a demo: a few simulated meters run in the same process (on
127.0.0.1, ephemeral ports) and are served like real ones, so a fresh checkout shows a
working server at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
from pathlib import Path

import attrs
from asyncua import Server

from emu_opcua import argtypes
from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.clients.modbus import MeterModbusClient
from emu_opcua.errors import ConfigError
from emu_opcua.gateway.poller import MeterPoller, PollSettings
from emu_opcua.meter.registers import RegisterMap
from emu_opcua.opcua import localization, subscriptions
from emu_opcua.opcua.config import MeterConfig, ServerConfig, load_config
from emu_opcua.opcua.model import MeterModel
from emu_opcua.opcua.publisher import MeterPublisher
from emu_opcua.opcua.sampling import UpdateRates
from emu_opcua.opcua.security import configure_security

log = logging.getLogger(__name__)

DEMO_METERS = 3
STOP_TIMEOUT = 10.0  # seconds the pollers get to stop on shutdown
#: Garbage collector thresholds while serving (CPython's default is 700, 10, 10). The
#: young generation of a polling gateway is mostly values waiting to be replaced by the
#: next poll (alive ~1 s, long enough to survive collections): with 700, a 1000-meter
#: gateway collected the young generation ~30 times a second and spent ~10 % of its time
#: there, with pauses up to 80 ms (bench_gateway, "GC per generation").
GC_THRESHOLDS = (20_000, 20, 100)
#: Longest wait for every meter's first poll before the long-lived objects are frozen.
SETTLE_TIMEOUT = 60.0


def poll_settings(meter: MeterConfig) -> PollSettings:
    return PollSettings(
        fast_interval=meter.fast_interval,
        extremes_interval=meter.extremes_interval,
        status_interval=meter.status_interval,
        datalog_interval=meter.datalog_interval,
        stale_after=meter.stale_after,
    )


def load_register_map(meter: MeterConfig) -> RegisterMap:
    if meter.register_map is None:
        return attrs.evolve(RegisterMap.default(), unit_id=meter.unit_id)
    try:
        text = meter.register_map.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"meter {meter.name!r}: register_map {meter.register_map}: cannot read: {exc}") from exc
    register_map = RegisterMap.from_toml(text, source=str(meter.register_map))
    return attrs.evolve(register_map, unit_id=meter.unit_id)


class GatewayServer:
    """An asyncua server, the meter model, and one poller per meter.

    ``async with GatewayServer(config):`` starts everything; leaving stops the pollers,
    closes every meter connection and stops the server.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.server = Server()
        self.model: MeterModel | None = None
        self.pollers: dict[str, MeterPoller] = {}
        self.publishers: dict[str, MeterPublisher] = {}
        self._http_clients: list[MeterHttpClient] = []
        self._tasks: list[asyncio.Task] = []
        #: set once every meter was polled and long-lived objects were frozen
        self.settled = asyncio.Event()
        self._gc_thresholds: tuple[int, ...] | None = None  # the process's, restored on stop

    async def start(self) -> None:
        config = self.config
        register_maps = {m.name: load_register_map(m) for m in config.meters}  # fail early
        await self.server.init()
        self.server.set_endpoint(config.endpoint)
        await configure_security(self.server, config)
        subscriptions.install(self.server)  # deadbands, honest sampling intervals
        self.model = await MeterModel.build(
            self.server, [m.name for m in config.meters],
            update_rates={m.name: UpdateRates.from_settings(poll_settings(m)) for m in config.meters})
        localization.install(self.server, self.model)  # DisplayName/Description in each session's locale
        # The address space is millions of long-lived objects; without this every full
        # garbage collection walks them all (a third of a 500-meter gateway's CPU).
        gc.collect()
        gc.freeze()
        self._gc_thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        await self.server.start()
        for meter in config.meters:
            publisher = MeterPublisher(self.server, self.model.meters[meter.name])
            http = MeterHttpClient(meter.host, meter.http_port, password=meter.password,
                                   timeout=meter.http_timeout)
            self._http_clients.append(http)

            def modbus_factory(port: int, meter=meter) -> MeterModbusClient:
                return MeterModbusClient(meter.host, port, register_map=register_maps[meter.name],
                                         timeout=meter.modbus_timeout)

            poller = MeterPoller(
                name=meter.name, http=http, modbus_factory=modbus_factory, sink=publisher,
                settings=poll_settings(meter),
                modbus_port=None if meter.modbus_port == "auto" else int(meter.modbus_port),
            )
            self.pollers[meter.name] = poller
            self.publishers[meter.name] = publisher
            self._tasks.append(asyncio.create_task(poller.run(), name=f"poll {meter.name}"))
        if self.pollers:
            self._tasks.append(asyncio.create_task(self._settle(), name="freeze long-lived objects"))
        log.info("serving %d meter(s) on %s", len(config.meters), config.endpoint)

    async def _settle(self) -> None:
        """Once every meter was polled (its clients, connections and parsers exist), move
        what now lives to the garbage collector's permanent generation, as was done for
        the address space. Measured at 1000 meters: full collections of the pollers'
        objects paused the event loop for up to 570 ms, 2 s in every 20 s, and made
        half the polls late (bench_gateway, "GC per generation", "loop lag")."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT
        while loop.time() < deadline and any(
                p.stats.polls == 0 and p.stats.failures == 0 for p in self.pollers.values()):
            await asyncio.sleep(0.5)
        gc.collect()
        gc.freeze()
        log.debug("froze %d long-lived objects", gc.get_freeze_count())
        self.settled.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a poller that does not stop must not keep the process from exiting.
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in stuck:
                log.error("%s did not stop within %g s; leaving it", task.get_name(), STOP_TIMEOUT)
        self._tasks.clear()
        for http in self._http_clients:
            await http.aclose()
        self._http_clients.clear()
        await self.server.stop()
        # what was frozen may be garbage now (this server's nodes, pollers): let the
        # collector see it again (matters when one process runs several servers: tests)
        gc.unfreeze()
        if self._gc_thresholds is not None:
            gc.set_threshold(*self._gc_thresholds)
            self._gc_thresholds = None

    async def __aenter__(self) -> GatewayServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# --- command line ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration (default: demo with simulated meters)")
    parser.add_argument("--host", help="listen address (overrides the configuration)")
    parser.add_argument("--port", type=argtypes.port, help="listen port (overrides the configuration; default 4840)")
    parser.add_argument("--pki-dir", type=Path, help="certificate folder (overrides the configuration)")
    parser.add_argument("--demo-meters", type=argtypes.int_range(1), default=DEMO_METERS, metavar="N",
                        help=f"simulated meters in the demo (default {DEMO_METERS})")


def _override(config: ServerConfig, args: argparse.Namespace) -> ServerConfig:
    changes = {}
    if args.host:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    if args.pki_dir is not None:
        changes["pki_dir"] = args.pki_dir
    return attrs.evolve(config, **changes)


async def serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if args.config is not None:
            config = load_config(args.config)
        else:
            from emu_opcua.simulator.fleet import Fleet, FleetConfig

            fleet = await stack.enter_async_context(Fleet(FleetConfig(meters=args.demo_meters, control_port=None)))
            meters = tuple(
                MeterConfig(name=f"demo-{i + 1}", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port)
                for i, p in enumerate(fleet.ports())
            )
            config = ServerConfig(meters=meters, pki_dir=Path("pki"))
            print(f"demo: {len(meters)} simulated meter(s); pass --config FILE to serve real meters")
        config = _override(config, args)
        await stack.enter_async_context(GatewayServer(config))
        print(f"emu-opcua serving {len(config.meters)} meter(s) at {config.endpoint}  (Ctrl-C stops)", flush=True)
        await stop.wait()
        print("stopping", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(serve(args))
    except ConfigError as exc:
        print(f"emu-opcua: configuration error: {exc}")
        return 2
