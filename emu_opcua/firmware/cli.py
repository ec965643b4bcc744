"""``emu-opcua firmware list|update|confirm|erase``: the technician's update tool.

Against one meter (``--host``) or every meter of a configuration (``--config``,
``--meter NAME`` to pick some). ``update`` runs the manual's whole sequence per meter
(checks, upload, test, reset, wait, confirm), at most ``--concurrency`` meters at a time,
with a progress line; ``--canary`` stops starting meters at the first failure (the ones
running finish). Exit status 0 when every meter ends on the new (or already running)
image, 1 when some failed (each left on a working image, see the table), 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from attrs import frozen

from emu_opcua import argtypes
from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.errors import ConfigError, EmuError
from emu_opcua.firmware.image import InvalidImage, inspect_image
from emu_opcua.firmware.update import Phase
from emu_opcua.firmware.updater import FirmwareUpdater, Progress, UpdateSettings

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
log = logging.getLogger(__name__)


@frozen
class Target:
    name: str
    host: str
    http_port: int
    password: str | None
    settings: UpdateSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions = {
        "list": "show each meter's image slots",
        "update": "install an image (upload, test, reset, wait, confirm)",
        "confirm": "confirm the image running in test",
        "erase": "erase slot 1 (the old image after a confirmed update)",
    }
    for action, help_text in actions.items():
        p = sub.add_parser(action, help=help_text, description=help_text)
        if action == "update":
            p.add_argument("image", type=Path, help="the signed MCUboot image file")
            p.add_argument("--concurrency", type=argtypes.int_range(1, 1000), default=10, metavar="N",
                           help="meters updated at the same time (default 10)")
            p.add_argument("--canary", action="store_true",
                           help="stop starting meters at the first failure")
            p.add_argument("--no-confirm", action="store_true",
                           help="leave the image running in test (it reverts at the next reset)")
            p.add_argument("--erase-old", action="store_true", help="erase the old image after confirming")
        targets = p.add_mutually_exclusive_group(required=True)
        targets.add_argument("--config", type=Path, help="every meter of this configuration")
        targets.add_argument("--host", help="one meter's address")
        p.add_argument("--meter", action="append", default=[], metavar="NAME",
                       help="with --config: only this meter (repeatable)")
        p.add_argument("--http-port", type=argtypes.port, default=80, metavar="N")
        p.add_argument("--smp-port", type=argtypes.port, default=1337, metavar="N")
        p.add_argument("--password-env", metavar="VAR", help="the meter's HTTP password from this variable")
        p.add_argument("--mtu", type=argtypes.int_range(128, 65535), default=628, metavar="BYTES")
        p.add_argument("--reboot-timeout", type=argtypes.positive_float, default=120.0, metavar="S")
        p.add_argument("--key-hash", metavar="HEX", help="refuse images not signed with this key (KEYHASH)")
        p.add_argument("--timeout", type=argtypes.positive_float, default=2.5, metavar="S",
                       help="seconds per SMP answer before it is sent again (default 2.5)")


def _targets(args: argparse.Namespace) -> list[Target]:
    key_hash = None
    if args.key_hash:
        try:
            key_hash = bytes.fromhex(args.key_hash)
        except ValueError:
            key_hash = b""
        if len(key_hash) != 32:
            raise ConfigError(f"--key-hash must be 64 hex digits, got {args.key_hash!r}")
    if args.host:
        password = None
        if args.password_env:
            if args.password_env not in os.environ:
                raise ConfigError(f"environment variable {args.password_env} is not set")
            password = os.environ[args.password_env]
        settings = UpdateSettings(smp_port=args.smp_port, mtu=args.mtu, smp_timeout=args.timeout,
                                  reboot_timeout=args.reboot_timeout, key_hash=key_hash)
        return [Target(args.host, args.host, args.http_port, password, settings)]
    from emu_opcua.opcua.config import load_config

    config = load_config(args.config)
    meters = config.meters
    if args.meter:
        unknown = sorted(set(args.meter) - {m.name for m in meters})
        if unknown:
            raise ConfigError(f"{args.config}: no meter named {', '.join(map(repr, unknown))}")
        meters = tuple(m for m in meters if m.name in args.meter)
    if not meters:
        raise ConfigError(f"{args.config}: no meters to work on")
    return [Target(m.name, m.host, m.http_port, m.password, UpdateSettings(
        smp_port=m.smp_port, mtu=m.firmware_mtu, smp_timeout=args.timeout,
        reboot_timeout=m.firmware_reboot_timeout, key_hash=key_hash or m.firmware_key_hash)) for m in meters]


class ProgressLine:
    """One line on a terminal, redrawn; on a pipe, one line per finished meter."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.done = self.failed = 0
        self.percent: dict[str, float] = {}
        self.started = time.monotonic()

    def update(self, name: str, progress: Progress) -> None:
        weight = {Phase.UPLOADING: 0.7 * progress.percent / 100, Phase.UPLOADED: 0.7,
                  Phase.INSTALLING: 0.7 + 0.25 * progress.percent / 100}.get(progress.phase)
        if weight is not None:
            self.percent[name] = weight
        self.draw()

    def finished(self, name: str, ok: bool, message: str) -> None:
        self.percent.pop(name, None)
        self.done += 1
        self.failed += not ok
        if self.tty:
            self.out.write("\r\033[K")
        self.out.write(f"{'ok  ' if ok else 'FAIL'} {name}: {message}\n")
        self.draw()

    def draw(self) -> None:
        if not self.tty:
            return
        fraction = (self.done + sum(self.percent.values())) / self.total
        width = 30
        bar = "#" * int(fraction * width)
        self.out.write(f"\r[{bar:<{width}}] {self.done}/{self.total} meters, {len(self.percent)} running, "
                       f"{self.failed} failed, {time.monotonic() - self.started:.0f} s")
        self.out.flush()


async def _update_all(targets: Sequence[Target], data: bytes, args: argparse.Namespace, out: TextIO) -> int:
    line = ProgressLine(len(targets), out)
    semaphore = asyncio.Semaphore(args.concurrency)
    stop = asyncio.Event()
    results: dict[str, bool] = {}
    actor = f"cli:{os.environ.get('USER', '?')}"

    async def one(target: Target) -> None:
        async with semaphore:
            if stop.is_set():
                results[target.name] = False
                line.finished(target.name, False, "not started (canary stop)")
                return
            async with MeterHttpClient(target.host, target.http_port, password=target.password) as http:
                updater = FirmwareUpdater(target.name, http, target.host, target.settings,
                                          on_progress=lambda p: line.update(target.name, p))
                try:
                    phase = await updater.update(data, actor=actor, confirm=not args.no_confirm,
                                                 erase_old=args.erase_old)
                except EmuError as exc:
                    results[target.name] = False
                    if args.canary:
                        stop.set()
                    line.finished(target.name, False, str(exc))
                    return
            results[target.name] = True
            line.finished(target.name, True, phase.value)

    await asyncio.gather(*(one(t) for t in targets))
    if line.tty:
        out.write("\n")
    failed = sum(not ok for ok in results.values())
    out.write(f"{len(results) - failed} of {len(results)} meters updated in "
              f"{time.monotonic() - line.started:.1f} s\n")
    return EXIT_OK if not failed else EXIT_FAILED


async def _each(targets: Sequence[Target], action: str, out: TextIO) -> int:
    failed = 0
    for target in targets:
        async with MeterHttpClient(target.host, target.http_port, password=target.password) as http:
            updater = FirmwareUpdater(target.name, http, target.host, target.settings)
            try:
                if action == "list":
                    for s in await updater.image_states():
                        flags = " ".join(f for f in ("active", "confirmed", "pending", "permanent")
                                         if getattr(s, f))
                        out.write(f"{target.name}  slot {s.slot}  {s.version:<10} {flags:<28} "
                                  f"{s.hash.hex() if s.hash else '-'}\n")
                elif action == "confirm":
                    await updater.confirm(actor="cli")
                    out.write(f"{target.name}: confirmed\n")
                elif action == "erase":
                    await updater.erase(actor="cli")
                    out.write(f"{target.name}: slot 1 erased\n")
            except EmuError as exc:
                failed += 1
                out.write(f"{target.name}: {exc}\n")
    return EXIT_OK if not failed else EXIT_FAILED


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        targets = _targets(args)
        data = None
        if args.action == "update":
            try:
                data = args.image.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{args.image}: cannot read: {exc.strerror or exc}") from None
            try:
                info = inspect_image(data, key_hash=targets[0].settings.key_hash)
            except InvalidImage as exc:
                raise ConfigError(f"{args.image}: {exc}") from None
            out.write(f"image {info.version}, {info.size} bytes, hash {info.hash_hex}\n")
    except ConfigError as exc:
        print(f"emu-opcua firmware: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.action == "update":
        return asyncio.run(_update_all(targets, data, args, out))
    return asyncio.run(_each(targets, args.action, out))
