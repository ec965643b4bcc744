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
import os
import signal
import tempfile
import time
from pathlib import Path

import sys

import attrs

from emu_opcua import argtypes
from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.clients.modbus import MeterModbusClient
from emu_opcua.errors import ConfigError, ListenError
from emu_opcua.gateway.poller import MeterPoller, PollSettings
from emu_opcua.history.events import MeterEvent, connection_event
from emu_opcua.history.sqlite import SqliteHistoryStore
from emu_opcua.history.store import HistoryStore
from emu_opcua.history.sync import SyncPolicy
from emu_opcua.history.syncer import MeterSyncer, StoreWriter, SyncSettings
from emu_opcua.meter.registers import RegisterMap
from emu_opcua.firmware.updater import FirmwareUpdater, UpdateSettings
from emu_opcua.opcua import events, history, localization, server_info, services, software_update, subscriptions
from emu_opcua.opcua.config import HistoryConfig, MeterConfig, ServerConfig, config_warnings, load_config
from emu_opcua.opcua.methods import MethodRegistry, SubscriptionMethods
from emu_opcua.opcua.model import MeterModel, import_nodeset
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
#: Datalog rows per day (one every 15 minutes), for backfill_days.
ROWS_PER_DAY = 96
PRUNE_INTERVAL = 3600.0  # s between retention runs


def sync_settings(history: HistoryConfig) -> SyncSettings:
    depth = None if history.backfill_days is None else history.backfill_days * ROWS_PER_DAY
    return SyncSettings(SyncPolicy(backfill_rows=depth), interval=history.interval)


def poll_settings(meter: MeterConfig) -> PollSettings:
    return PollSettings(
        fast_interval=meter.fast_interval,
        extremes_interval=meter.extremes_interval,
        status_interval=meter.status_interval,
        datalog_interval=meter.datalog_interval,
        stale_after=meter.stale_after,
    )


def firmware_settings(meter: MeterConfig) -> UpdateSettings:
    return UpdateSettings(smp_port=meter.smp_port, mtu=meter.firmware_mtu,
                          reboot_timeout=meter.firmware_reboot_timeout, key_hash=meter.firmware_key_hash,
                          slot_size=software_update.MAX_IMAGE_SIZE)


def load_register_map(meter: MeterConfig) -> RegisterMap:
    if meter.register_map is None:
        return attrs.evolve(RegisterMap.default(), unit_id=meter.unit_id)
    try:
        text = meter.register_map.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"meter {meter.name!r}: register_map {meter.register_map}: cannot read: {exc}") from exc
    register_map = RegisterMap.from_toml(text, source=str(meter.register_map))
    return attrs.evolve(register_map, unit_id=meter.unit_id)


class GatewaySession(history.HistorySessionMixin, localization.LocalizedSession):
    """A client session: texts in its locale, history with its own continuation points."""


class GatewayServer:
    """An asyncua server, the meter model, and one poller per meter.

    ``async with GatewayServer(config):`` starts everything; leaving stops the pollers,
    closes every meter connection and stops the server. With history on (``[history]
    enabled``) the datalog is synced into the store under ``data_dir`` and its quantities
    are historized variables answered from it; ``history_store`` serves history from a
    store of the caller's instead (tests, benchmarks; with sync off, nothing writes it).
    """

    def __init__(self, config: ServerConfig, *, history_store: HistoryStore | None = None) -> None:
        self.config = config
        #: asyncua's Server with our Read/Write/Browse/BrowseNext/Call (services.py)
        self.server = services.OpcUaServer()
        #: every method clients may call; register more before start() (methods.py)
        self.methods = MethodRegistry()
        self.history_store = history_store
        #: the HistoryRead service (iserver.history_manager)
        self.history_service: history.HistoryService | None = None
        #: meter events: live notifications and ReadEventDetails (events.py)
        self.events: events.EventService | None = None
        self.model: MeterModel | None = None
        self.pollers: dict[str, MeterPoller] = {}
        self.publishers: dict[str, MeterPublisher] = {}
        self.syncers: dict[str, MeterSyncer] = {}
        #: the DI SoftwareUpdate AddIns (None when firmware_update is off)
        self.software_update: software_update.SoftwareUpdateService | None = None
        #: the history store and its writer thread (None when history is off)
        self.history: StoreWriter | None = None
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
        server_info.prepare_identity(self.server)
        server_info.apply_limits(self.server, self.server.guard, config)
        await configure_security(self.server, config)
        SubscriptionMethods(self.server.iserver.subscription_service).register(self.methods)
        self.services = services.Services(
            services.ServiceSettings(max_browse_continuation_points=config.max_browse_continuation_points),
            self.methods)
        await services.install(self.server, self.services)  # before the model: marks ns0's methods
        if config.history.enabled:
            self.history = StoreWriter(SqliteHistoryStore.in_directory(config.data_dir))
            pages = asyncio.Semaphore(config.history.max_concurrent_pages)
            settings = sync_settings(config.history)
        store = self.history_store
        if store is None and self.history is not None:
            store = self.history.store
        subscriptions.install(self.server)  # deadbands, honest sampling intervals
        add_in = None
        if config.firmware_update and config.meters:
            # DI SoftwareUpdate AddIn on every meter, built into the model's template
            add_in = await software_update.prepare(self.server, await import_nodeset(self.server))
        self.model = await MeterModel.build(
            self.server, [m.name for m in config.meters], history=store is not None,
            update_rates={m.name: UpdateRates.from_settings(poll_settings(m)) for m in config.meters},
            add_ins=[add_in.add_first] if add_in is not None else ())
        # DisplayName/Description in each session's locale; history per session
        localizer = localization.install(self.server, self.model, self.services, session_class=GatewaySession)
        await server_info.publish_identity(self.server, config, localizer.locales)
        # without a store too: HistoryRead of a node without history is then
        # Bad_HistoryOperationUnsupported (asyncua's own manager answers Good, no data)
        self.history_service = await history.install(
            self.server, self.model, store, max_continuation_points=config.max_history_continuation_points)
        self.events = await events.install(self.server, self.model, self.history_service, store)
        update_nodes: dict = {}
        if add_in is not None:
            # the AddIns' methods through the method seam
            update_nodes = {m.name: add_in.nodes(m.name) for m in config.meters}
            self.software_update = software_update.SoftwareUpdateService(add_in.shared)
            self.software_update.register(self.methods)
            di_idx = add_in.di_idx
        # The address space is millions of long-lived objects; without this every full
        # garbage collection walks them all (a third of a 500-meter gateway's CPU).
        gc.collect()
        gc.freeze()
        self._gc_thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            await self.server.start()
        except OSError as exc:  # port in use, address not on this machine, no permission
            why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's own text names the address again
            raise ListenError(f"cannot listen on {config.host}:{config.port}: {why}") from None
        self._tasks.append(asyncio.create_task(
            server_info.run_diagnostics(self.server, self.server.guard), name="server diagnostics"))
        for meter in config.meters:
            publisher = MeterPublisher(self.server, self.model.meters[meter.name],
                                       refresh_timestamps=meter.refresh_timestamps,
                                       on_connection=self._connection_event)
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
            if meter.name in update_nodes:
                updater = FirmwareUpdater(meter.name, http, meter.host, firmware_settings(meter))
                self.software_update.add(software_update.MeterSoftwareUpdate(
                    self.server, meter.name, update_nodes[meter.name], updater, di_idx=di_idx,
                    confirmation_timeout=meter.firmware_confirmation_timeout,
                    pause_polling=poller.pause, resume_polling=poller.resume))
            if self.history is not None:
                syncer = MeterSyncer(meter.name, http, self.history, pages, settings, report=publisher.history,
                                     on_events=self.events.emit)
                self.syncers[meter.name] = syncer
                self._tasks.append(asyncio.create_task(syncer.run(), name=f"sync {meter.name}"))
            else:
                await publisher.history_disabled()
        if self.history is not None and config.history.retention_days:
            self._tasks.append(asyncio.create_task(self._prune(config.history.retention_days), name="retention"))
        if self.pollers:
            self._tasks.append(asyncio.create_task(self._settle(), name="freeze long-lived objects"))
        log.info("serving %d meter(s) on %s", len(config.meters), config.endpoint)

    async def _connection_event(self, meter: str, lost: bool, error: str) -> None:
        """The gateway lost or regained a meter: stored (with history on), then emitted.
        Called from the poller's diagnostics: it never raises (events never stop polling)."""
        event: MeterEvent = connection_event(meter, lost, int(time.time() * 1000), error)
        try:
            if self.history is not None:
                await self.history.call(self.history.store.add_events, [event])
            if self.events is not None:
                await self.events.emit([event])
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("meter %s: the %s event was not stored or sent", meter, event.kind)

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

    async def _prune(self, days: int) -> None:
        """Retention: delete rows older than ``days``, hourly, in the writer thread."""
        assert self.history is not None
        while True:
            before = int(time.time()) - days * 86400
            removed = await self.history.call(self.history.store.prune, before)
            if removed:
                log.info("history retention: deleted %d row(s) older than %d days", removed, days)
            await asyncio.sleep(PRUNE_INTERVAL)

    async def stop(self) -> None:
        if self.software_update is not None:
            await self.software_update.close()
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
        if self.history is not None:  # after the syncers: the writer finishes its last batch
            await asyncio.to_thread(self.history.close)
            self.history = None
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
    parser.add_argument("--data-dir", type=Path,
                        help="history store folder (overrides the configuration; demo: a temporary folder)")
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
    if getattr(args, "data_dir", None) is not None:
        changes["data_dir"] = args.data_dir
    return attrs.evolve(config, **changes)


async def serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    hurry = asyncio.Event()  # a second signal: skip what is left of the grace period
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    async with contextlib.AsyncExitStack() as stack:
        if args.config is not None:
            config = load_config(args.config)
        else:
            from emu_opcua.simulator.fleet import Fleet, FleetConfig

            fleet = await stack.enter_async_context(Fleet(FleetConfig(meters=args.demo_meters, control_port=None)))
            meters = tuple(
                MeterConfig(name=f"demo-{i + 1}", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                            smp_port=p.smp_port)
                for i, p in enumerate(fleet.ports())
            )
            # the demo's meters are new on every start: their history goes with them
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="emu-opcua-demo-"))
            config = ServerConfig(meters=meters, pki_dir=Path("pki"), data_dir=Path(data_dir),
                                  history=HistoryConfig())
            print(f"demo: {len(meters)} simulated meter(s); pass --config FILE to serve real meters")
        config = _override(config, args)
        for warning in config_warnings(config):
            print(f"emu-opcua: warning: {warning}", file=sys.stderr, flush=True)
        gateway = await stack.enter_async_context(GatewayServer(config))
        print(f"emu-opcua serving {len(config.meters)} meter(s) at {config.endpoint}  (Ctrl-C stops)", flush=True)
        await stop.wait()
        if config.shutdown_grace > 0:
            print(f"stopping in {config.shutdown_grace:g} s (clients are told; again: stop now)", flush=True)
            await server_info.announce_shutdown(gateway.server, config.shutdown_grace,
                                                "the server is being stopped", cut_short=hurry)
        print("stopping", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(serve(args))
    except ConfigError as exc:
        print(f"emu-opcua: configuration error: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:
        print(f"emu-opcua: {exc}", file=sys.stderr)
        return 1
