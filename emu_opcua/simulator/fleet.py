"""Run one or many simulated meters in one asyncio loop: ports, clock, faults, ports file.

:class:`SimulatedMeter` is one meter: a :class:`~emu_opcua.simulator.physics.MeterPhysics`
(advanced to the simulated clock whenever the meter is asked something), its
:class:`~emu_opcua.simulator.faults.Faults`, an aiohttp site and a pymodbus TCP server.
:class:`Fleet` builds N meters from a :class:`FleetConfig` (serials ``serial_base + i``,
consecutive ports when a base port is given, else ephemeral ports), plus an optional
control server on 127.0.0.1 (``/_sim/meters/{n}/...``, see ``http_app``; the meters'
own ports serve only what a real meter serves), reachable while a meter refuses
connections or is without power.

Time: :class:`SimClock` maps the monotonic clock onto true time,
``start + elapsed * speed``; a meter's clock adds its own offset (set by a clock change
event, see ``physics``). During a power outage the meter's listeners are closed (as
with ``refuse_connections``) and a task reopens them when the simulated time reaches
the outage's end. The history on record at start is integrated lazily, the first time a
meter is asked anything (about 30 ms per meter for 30 days), and in a background task
right after :meth:`Fleet.start`, one meter per loop iteration, so ports open at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from attrs import frozen

from emu_opcua.firmware.image import ImageVersion
from emu_opcua.meter.datalog import DatalogRow
from emu_opcua.meter.logbook import LogbookEntry
from emu_opcua.meter.meterdata import Extreme, Extremes, MeterData
from emu_opcua.meter.registers import RegisterMap
from emu_opcua.meter.status import MeterStatus
from emu_opcua.simulator import http_app
from emu_opcua.simulator.faults import Faults
from emu_opcua.simulator.mcuboot import ModuleFirmware, ReplyStyle, build_image, public_key_der, test_key
from emu_opcua.simulator.modbus_server import MeterModbusServer
from emu_opcua.simulator.physics import (
    DATALOG_CAPACITY, LOGBOOK_CAPACITY, MeterPhysics, PhysicsConfig, TariffSchedule, hash64,
)
from emu_opcua.simulator.smp_server import SmpServer, start_smp_server

log = logging.getLogger(__name__)

#: Meters with a serial from this one on report min/max in meterdata.json (manual).
MIN_MAX_SERIAL = 22350000
FIRMWARE_VERSION = "1.0.14"
#: Bytes an image may occupy in one of the module's two slots.
SLOT_SIZE = 0x40000
#: Seconds a simulated module is off the network while it reboots (real ones: ~10-30 s).
REBOOT_TIME = 2.0
#: The control server listens here only, whatever the meters' host: simulator control is
#: for the machine running it, not for the meters' network.
CONTROL_HOST = "127.0.0.1"
#: Real seconds between checks whether an outage is over (only while one lasts).
OUTAGE_POLL = 0.1


def _mac(serial: int) -> str:
    tail = serial & 0xFFFFFF
    return "10:2C:EF:" + ":".join(f"{(tail >> s) & 0xFF:02X}" for s in (16, 8, 0))


class SimClock:
    """Meter time (epoch seconds) = ``start + (monotonic() - m0) * speed``."""

    def __init__(self, start: float | None = None, speed: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.start = time.time() if start is None else float(start)
        self.speed = float(speed)
        self.monotonic = monotonic  # also times the Modbus register refresh
        self._m0 = monotonic()

    def now(self) -> float:
        return self.start + (self.monotonic() - self._m0) * self.speed


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), timezone.utc)


class SimulatedMeter:
    """One simulated EMU Professional II TCP/IP meter on real sockets."""

    def __init__(
        self,
        serial: int,
        *,
        clock: SimClock,
        seed: int = 0,
        password: str | None = None,
        physics_config: PhysicsConfig = PhysicsConfig(),
        host: str = "127.0.0.1",
        http_port: int = 0,
        modbus_port: int = 0,
        refresh_interval: float = 1.0,
        register_map: RegisterMap | None = None,
        smp_port: int = 0,
        firmware_key=None,
        module_version: str = FIRMWARE_VERSION,
        reboot_time: float = REBOOT_TIME,
        smp_style: ReplyStyle = ReplyStyle.V2,
        verify_at_upload: bool = False,
    ) -> None:
        if password is not None and not 0 < len(password) <= 20:
            raise ValueError("a meter password has 1..20 characters")
        self.serial = str(serial)
        self.clock = clock
        self.password = password
        self.host = host
        self.http_port = http_port
        self.seed = seed
        self.physics = MeterPhysics(serial, seed=seed, start=clock.start, config=physics_config)
        self.faults = Faults()
        self._outage: asyncio.Task | None = None
        self.modbus = MeterModbusServer(
            self.register_values, lambda: self.faults, host=host, port=modbus_port,
            register_map=register_map, refresh_interval=refresh_interval,
            monotonic=clock.monotonic,
        )
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        # the TCP module's firmware: two MCUboot slots behind an SMP/UDP server; a
        # module reset takes the meter off the network for reboot_time
        key = firmware_key if firmware_key is not None else test_key()
        running = build_image(hash64(seed, int(serial), 1337).to_bytes(8, "little") * 512,
                              ImageVersion.parse(module_version), private_key=key)
        self.module = ModuleFirmware.running(running, slot_size=SLOT_SIZE, public_key_der=public_key_der(key),
                                             verify_at_upload=verify_at_upload)
        self.smp = SmpServer(self.module, style=smp_style, on_reset=self._module_reset)
        self.smp_port = smp_port
        self.reboot_time = reboot_time
        self.rebooting = False
        self.online_update_allowed = True
        self._smp_transport = None
        self._reboot_task: asyncio.Task | None = None
        self.mac = _mac(int(serial))

    # --- ports ---------------------------------------------------------------------------
    @property
    def modbus_port(self) -> int:
        return self.modbus.port

    async def start(self) -> tuple[int, int]:
        """Open both listeners; returns (http_port, modbus_port)."""
        if self._runner is None:
            self._runner = web.AppRunner(http_app.make_app(self), access_log=None,
                                         handle_signals=False, shutdown_timeout=0.5)
            await self._runner.setup()
        await self._reconcile()
        if self._smp_transport is None:
            self._smp_transport, self.smp_port = await start_smp_server(self.smp, self.host, self.smp_port)
        return self.http_port, self.modbus_port

    async def stop(self) -> None:
        if self._reboot_task is not None:
            self._reboot_task.cancel()
            self._reboot_task = None
        if self._smp_transport is not None:
            self._smp_transport.close()
            self._smp_transport = None
        outage, self._outage = self._outage, None
        if outage is not None:
            outage.cancel()
            try:
                await outage
            except asyncio.CancelledError:
                pass
        await self.modbus.stop()
        await self._stop_http()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _start_http(self) -> None:
        if self._site is not None or self._runner is None:
            return
        site = web.TCPSite(self._runner, self.host, self.http_port, reuse_address=True)
        await site.start()
        self._site = site
        if not self.http_port:
            self.http_port = self._runner.addresses[-1][1]

    async def _stop_http(self) -> None:
        site, self._site = self._site, None
        if site is None:
            return
        await site.stop()
        if self._runner is not None and self._runner.server is not None:
            for conn in self._runner.server.connections:  # keep-alive connections too
                conn.force_close()
                if conn.transport is not None:
                    conn.transport.close()

    async def _reconcile(self) -> None:
        """Open or close the listeners as the faults and the power say."""
        powered = self.physics.powered
        if powered and not self.rebooting and self.faults.http_listening():
            await self._start_http()
        else:
            await self._stop_http()
        if powered and not self.rebooting and self.faults.modbus_listening():
            await self.modbus.start()
        else:
            await self.modbus.stop()

    # --- faults --------------------------------------------------------------------------
    async def apply_faults(self, **changes: Any) -> Faults:
        """Switch faults (see ``faults.Faults``); ValueError on an unknown name or bad value."""
        self.faults = self.faults.updated(changes)
        await self._reconcile()
        return self.faults

    async def clear_faults(self) -> Faults:
        self.faults = Faults()
        await self._reconcile()
        return self.faults

    async def refuse_connections(self, on: bool = True) -> None:
        await self.apply_faults(refuse_connections=on)

    async def slow_responses(self, delay: float) -> None:
        await self.apply_faults(delay=delay)

    async def drop_modbus_connections(self, on: bool = True) -> None:
        await self.apply_faults(drop_modbus=on)

    async def http_errors(self, on: bool = True) -> None:
        await self.apply_faults(http_500=on)

    async def malformed_json(self, on: bool = True) -> None:
        await self.apply_faults(malformed_json=on)

    async def truncated_csv(self, on: bool = True) -> None:
        await self.apply_faults(truncated_csv=on)

    async def demand_wrong_password(self, password: str | None = "not-the-password") -> None:
        await self.apply_faults(wrong_password=password)

    async def disable_modbus(self, on: bool = True) -> None:
        await self.apply_faults(modbus_disabled=on)

    # --- the TCP module ----------------------------------------------------------------------
    _MODULE_SWITCHES = {"drop_requests": float, "drop_replies": float, "reply_delay": float,
                        "reboot_after_upload_bytes": int}

    def set_module(self, **changes: Any) -> None:
        """Switch the module's SMP link faults, whether online update is allowed, its
        reboot time; ValueError on an unknown name or a bad value."""
        for name, value in changes.items():
            if name in self._MODULE_SWITCHES:
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ValueError(f"{name} must be a number, got {value!r}")
                if name.startswith("drop_") and not 0 <= value <= 1:
                    raise ValueError(f"{name} must be a probability 0..1, got {value!r}")
                setattr(self.smp.faults, name, None if value is None else self._MODULE_SWITCHES[name](value))
            elif name == "online_update_allowed":
                if not isinstance(value, bool):
                    raise ValueError(f"online_update_allowed must be true or false, got {value!r}")
                self.online_update_allowed = value
            elif name == "reboot_time":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"reboot_time must be seconds >= 0, got {value!r}")
                self.reboot_time = float(value)
            else:
                raise ValueError(f"unknown module switch {name!r}")

    def module_info(self) -> dict[str, Any]:
        f = self.smp.faults
        return {
            "smp_port": self.smp_port, "reply_style": self.smp.style.value, "rebooting": self.rebooting,
            "online_update_allowed": self.online_update_allowed, "reboot_time": self.reboot_time,
            "slots": [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in state.items()}
                      for state in self.module.image_states()],
            "boot_log": list(self.module.boot_log),
            "faults": {"drop_requests": f.drop_requests, "drop_replies": f.drop_replies,
                       "reply_delay": f.reply_delay, "reboot_after_upload_bytes": f.reboot_after_upload_bytes},
        }

    # --- the TCP module's reboot ------------------------------------------------------------
    def _module_reset(self, outcome: str) -> None:
        log.info("meter %s: module reset (%s), off the network for %g s", self.serial, outcome, self.reboot_time)
        if self._reboot_task is None or self._reboot_task.done():
            self._reboot_task = asyncio.get_running_loop().create_task(self._reboot())

    async def _reboot(self) -> None:
        self.rebooting = True
        self.smp.online = False
        try:
            await self._reconcile()
            await asyncio.sleep(self.reboot_time)
        finally:
            self.rebooting = False
            self.smp.online = True
        await self._reconcile()

    # --- events ---------------------------------------------------------------------------
    async def power_outage(self, seconds: float = 0.0) -> None:
        """The meter loses power for ``seconds`` of simulated time: both ports close at
        once and reopen when the simulated clock reaches the end (see ``physics``)."""
        self.advance()
        self.physics.power_outage(seconds)
        self.modbus.invalidate()
        if not self.physics.powered:
            await self._reconcile()
            if self._outage is None or self._outage.done():
                self._outage = asyncio.create_task(self._wait_for_power())

    async def _wait_for_power(self) -> None:
        while True:
            self.advance()
            if self.physics.powered:
                break
            remaining = (self.physics.power_back_at - self.physics.time) / self.clock.speed
            await asyncio.sleep(min(max(remaining, 0.0), OUTAGE_POLL))
        self._outage = None
        await self._reconcile()

    def index_reset(self) -> None:
        """A factory reset: the datalog is cleared, its index restarts at 1."""
        self.advance()
        self.physics.index_reset()

    def replace_meter(self, serial: int | None = None) -> None:
        """Another meter at this address: a new serial (default: this one + 1,000,000),
        counters from 0, a new datalog (index from 1) and logbook. Ports stay."""
        physics = self.advance()
        new_serial = int(self.serial) + 1_000_000 if serial is None else int(serial)
        if not 0 < new_serial <= 0xFFFFFFFF:
            raise ValueError(f"a serial is 1..{0xFFFFFFFF}, got {new_serial}")
        self.seed = hash64(self.seed, new_serial, 7)
        self.physics = MeterPhysics(new_serial, seed=self.seed, start=physics.time,
                                    config=physics.config, new_meter=True)
        self.serial = str(new_serial)
        self.mac = _mac(new_serial)
        self.modbus.invalidate()

    def set_load(self, watts: float | None) -> None:
        """Force the total active power to ``watts`` from now on (None: back to the load
        profile); the Modbus registers show it at the next read."""
        self.advance()
        self.physics.load_override = None if watts is None else float(watts)
        self.modbus.invalidate()

    def clock_change(self, offset_s: float) -> None:
        self.advance()
        self.physics.clock_change(offset_s)
        self.modbus.invalidate()

    def change_ct_ratio(self, primary: int, secondary: int) -> None:
        self.advance()
        self.physics.change_ct_ratio(primary, secondary)

    def change_vt_ratio(self, primary: int, secondary: int) -> None:
        self.advance()
        self.physics.change_vt_ratio(primary, secondary)

    def change_pulse(self, value: int | None = None, length_ms: int | None = None) -> None:
        self.advance()
        self.physics.change_pulse(value, length_ms)

    # --- what the meter says ------------------------------------------------------------------
    @property
    def has_logbook(self) -> bool:
        return self.physics.config.logbook

    @property
    def shows_min_max(self) -> bool:
        return int(self.serial) >= MIN_MAX_SERIAL

    def meter_time(self) -> float:
        """The meter's clock now."""
        return self.advance().meter_time

    def advance(self) -> MeterPhysics:
        """Bring the physics up to the simulated time (integrates the history the first time)."""
        self.physics.advance_to(self.clock.now())
        return self.physics

    def register_values(self) -> dict[str, float]:
        return self.advance().values()

    def status(self) -> MeterStatus:
        physics = self.advance()
        return MeterStatus(
            dhcp_enabled=False, ip=self.host, netmask="255.255.255.0", gateway="0.0.0.0",
            dns="0.0.0.0", modbus_enabled=not self.faults.modbus_disabled,
            modbus_port=self.modbus_port, ntp_enabled=True, ntp_server="pool.ntp.org",
            serial=self.serial, factory_number=0, meter_time=_utc(physics.meter_time), mac=self.mac,
            firmware_version=str(self.module.version), online_update_allowed=self.online_update_allowed,
        )

    def meterdata(self) -> MeterData:
        physics = self.advance()
        extremes = None
        if self.shows_min_max:
            extremes = {
                code: Extremes(Extreme(e.minimum, _utc(e.minimum_time)), Extreme(e.maximum, _utc(e.maximum_time)))
                for code, e in physics.extremes().items()
            }
        return MeterData(_utc(physics.meter_time), physics.values(), extremes)

    def datalog_rows(self, indices: Iterable[int]) -> list[DatalogRow]:
        physics = self.advance()
        serial = self.serial
        return [DatalogRow(_utc(r.timestamp), r.index, r.status, serial, r.raw)
                for r in physics.rows(indices)]

    def logbook_entries(self, indices: Iterable[int]) -> list[LogbookEntry]:
        physics = self.advance()
        out = []
        for i in indices:
            e = physics.logbook_entry(i)
            out.append(LogbookEntry(
                _utc(e.timestamp), _utc(e.timestamp_after), e.index, self.serial, e.energies,
                e.datalog_index, *e.ct, *e.vt, *e.pulse_value, *e.pulse_length_ms,
            ))
        return out

    def info(self) -> dict[str, Any]:
        physics = self.advance()
        return {
            "serial": self.serial, "host": self.host, "http_port": self.http_port,
            "modbus_port": self.modbus_port, "password_protected": self.password is not None,
            "smp_port": self.smp_port,
            "meter_time": int(physics.meter_time), "speed": self.clock.speed,
            "powered": physics.powered, "clock_synchronised": physics.clock_synchronised,
            "datalog_rows": physics.row_count, "datalog_first_index": physics.first_index,
            "datalog_last_index": physics.last_index, "logbook_entries": physics.logbook_count,
            "logbook": self.has_logbook, "faults": self.faults.as_dict(),
            "profile": {"kind": physics.profile.kind, "base_w": round(physics.profile.base_w),
                        "pv_wp": round(physics.profile.pv_wp)},
        }


@frozen
class FleetConfig:
    meters: int = 1
    host: str = "127.0.0.1"
    http_port: int = 0  # first meter's port; consecutive for the others; 0 = ephemeral
    modbus_port: int = 0
    password: str | None = None
    serial_base: int = MIN_MAX_SERIAL
    speed: float = 1.0
    datalog_interval: int = 900
    history_days: float = 30.0
    step: int = 60
    logbook: bool = True
    sync_delay: float = 60.0  # seconds after a start until the clock is synchronised
    datalog_capacity: int = DATALOG_CAPACITY
    logbook_capacity: int = LOGBOOK_CAPACITY
    seed: int = 0
    refresh_interval: float = 1.0
    start_time: float | None = None  # meter time at start (epoch s); None = now
    control_port: int | None = 0  # None = no control server
    tariffs: TariffSchedule = TariffSchedule()
    smp_port: int = 0  # UDP, first meter's; consecutive for the others; 0 = ephemeral
    firmware_key_pem: bytes | None = None  # the key the modules trust (PEM); None: a fresh test key
    reboot_time: float = REBOOT_TIME
    smp_style: str = "v2"  # "v1": the 2021 mcumgr generation's replies
    module_version: str = FIRMWARE_VERSION

    def __attrs_post_init__(self) -> None:
        if self.meters < 1:
            raise ValueError("meters must be at least 1")
        for name in ("http_port", "modbus_port", "smp_port"):
            port = getattr(self, name)
            if port and not 0 < port + self.meters - 1 <= 65535:
                raise ValueError(f"{name} {port} + {self.meters} meters runs past 65535")


@frozen
class MeterPorts:
    serial: str
    host: str
    http_port: int
    modbus_port: int
    smp_port: int = 0


class Fleet:
    """N simulated meters and a control server. ``async with Fleet(config) as fleet:``."""

    def __init__(self, config: FleetConfig = FleetConfig(), *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = SimClock(config.start_time, config.speed, monotonic)
        physics_config = PhysicsConfig(
            datalog_interval=config.datalog_interval, history_days=config.history_days,
            step=config.step, tariffs=config.tariffs, logbook=config.logbook,
            sync_delay=config.sync_delay, datalog_capacity=config.datalog_capacity,
            logbook_capacity=config.logbook_capacity,
        )
        self.meters: list[SimulatedMeter] = []
        if config.firmware_key_pem is not None:
            from emu_opcua.simulator.mcuboot import load_private_key

            firmware_key = load_private_key(config.firmware_key_pem)
        else:
            firmware_key = test_key()
        for i in range(config.meters):
            serial = config.serial_base + i
            self.meters.append(SimulatedMeter(
                serial, clock=self.clock, seed=hash64(config.seed, serial, 7),
                password=config.password, physics_config=physics_config, host=config.host,
                http_port=config.http_port + i if config.http_port else 0,
                modbus_port=config.modbus_port + i if config.modbus_port else 0,
                refresh_interval=config.refresh_interval,
                smp_port=config.smp_port + i if config.smp_port else 0, firmware_key=firmware_key,
                module_version=config.module_version, reboot_time=config.reboot_time,
                smp_style=ReplyStyle(config.smp_style),
            ))
        self._control: web.AppRunner | None = None
        self.control_port: int | None = None
        self._warmup: asyncio.Task | None = None

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self, *, warm_up: bool = True) -> list[MeterPorts]:
        """Open every meter's listeners (and the control server); returns the ports."""
        try:
            for meter in self.meters:
                await meter.start()
            if self.config.control_port is not None:
                self._control = web.AppRunner(control_app(self), access_log=None, handle_signals=False)
                await self._control.setup()
                site = web.TCPSite(self._control, CONTROL_HOST, self.config.control_port,
                                   reuse_address=True)
                await site.start()
                self.control_port = self._control.addresses[-1][1]
        except BaseException:
            await self.stop()
            raise
        if warm_up:
            self._warmup = asyncio.create_task(self._warm_up())
        return self.ports()

    async def _warm_up(self) -> None:
        for meter in self.meters:
            meter.advance()
            await asyncio.sleep(0)

    async def wait_warm(self) -> None:
        """Wait until every meter's history has been integrated."""
        if self._warmup is not None:
            await self._warmup
        for meter in self.meters:
            meter.advance()

    async def stop(self) -> None:
        if self._warmup is not None:
            self._warmup.cancel()
            try:
                await self._warmup
            except (asyncio.CancelledError, Exception):
                pass
            self._warmup = None
        for meter in self.meters:
            await meter.stop()
        if self._control is not None:
            await self._control.cleanup()
            self._control = None

    def meter(self, key: int | str) -> SimulatedMeter:
        """A meter by position (0-based int or digit string below the meter count) or serial."""
        if isinstance(key, int) and 0 <= key < len(self.meters):
            return self.meters[key]
        text = str(key)
        for meter in self.meters:  # by serial (a replaced meter has a new one)
            if meter.serial == text:
                return meter
        if text.isdigit() and int(text) < len(self.meters):
            return self.meters[int(text)]
        raise KeyError(key)

    def ports(self) -> list[MeterPorts]:
        return [MeterPorts(m.serial, m.host, m.http_port, m.modbus_port, m.smp_port) for m in self.meters]

    def ports_document(self) -> dict[str, Any]:
        return {
            "host": self.config.host,
            "control_port": self.control_port,
            "meters": [
                {"serial": p.serial, "host": p.host, "http_port": p.http_port, "modbus_port": p.modbus_port,
                 "smp_port": p.smp_port}
                for p in self.ports()
            ],
        }

    def write_ports_file(self, path: str | os.PathLike) -> None:
        """The ports as JSON, written atomically (readers never see half a file)."""
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.ports_document(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)

    def ports_table(self) -> str:
        rows = [("serial", "host", "http", "modbus", "smp/udp")]
        rows += [(p.serial, p.host, str(p.http_port), str(p.modbus_port), str(p.smp_port)) for p in self.ports()]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.control_port is not None:
            lines.append(f"control: http://{CONTROL_HOST}:{self.control_port}/_sim/meters/{{n}}/faults")
        return "\n".join(lines)


def control_app(fleet: Fleet) -> web.Application:
    """The fleet's control server: ``GET /_sim/meters`` and, per meter (position or
    serial), the ``/_sim/`` routes of ``http_app`` under ``/_sim/meters/{n}``."""
    app = web.Application()

    def lookup(request: web.Request) -> SimulatedMeter:
        try:
            return fleet.meter(request.match_info["n"])
        except KeyError:
            raise web.HTTPNotFound(text="404 Not Found: no such meter\n") from None

    async def meters(_request: web.Request) -> web.Response:
        return web.json_response(fleet.ports_document())

    app.router.add_get("/_sim/meters", meters)
    http_app.add_control_routes(app, "/_sim/meters/{n}", lookup)
    return app


def seeds(base: int, serials: Sequence[int]) -> list[int]:
    """The per-meter seeds a fleet derives from its seed (for reproducing one meter)."""
    return [hash64(base, s, 7) for s in serials]
