"""FirmwareUpdater: one meter's module update, the I/O around :mod:`.update`'s decisions.

Drives the meter's SMP client (upload, test, reset, confirm, erase) and its HTTP client
(``status.json``: online update allowed, module version, and whether the meter is back
after a reboot). Every step re-reads ``image list``. Progress goes to ``on_progress`` (the
OPC UA SoftwareUpdate variables and the CLI's progress bar both listen); every attempt
is logged with who asked, the meter, the image hash and the outcome. Whatever fails, the
meter is left on a working image: the worst case is an unconfirmed image, which MCUboot
reverts at the next reset, and :meth:`revert` does that reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from attrs import frozen

from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.clients.smp import MeterSmpClient
from emu_opcua.errors import EmuError, MeterCommunicationError, UpdatePreconditionFailed
from emu_opcua.firmware.image import ImageInfo, inspect_image
from emu_opcua.firmware.update import (
    Before, BootOutcome, Phase, SlotState, boot_outcome, check_pending, check_uploaded, plan_upload,
    running_slot, secondary_slot,
)

log = logging.getLogger(__name__)
audit = logging.getLogger("emu_opcua.firmware.audit")  # one line per attempt and outcome

#: Seconds between upload progress reports (and so UpdateStatus writes): at most ten a
#: second, and only when a new whole percent is reached; the last chunk always reports.
PROGRESS_INTERVAL = 0.1


@frozen
class Progress:
    phase: Phase
    percent: float  # of the current phase's work (upload bytes; 0/100 elsewhere)
    message: str


@frozen
class UpdateSettings:
    smp_port: int = 1337
    mtu: int = 628
    smp_timeout: float = 2.5
    smp_retries: int = 5
    reboot_timeout: float = 120.0  # seconds the meter may take to answer again after a reset
    poll_interval: float = 1.0  # while waiting for the meter to come back
    slot_size: int | None = None  # bytes an image may have (None: not checked locally)
    key_hash: bytes | None = None  # pinned signing key (KEYHASH TLV); None: not checked
    upload_attempts: int = 3  # an upload broken off by a module reboot is resumed this often


class FirmwareUpdater:
    """The update steps of one meter; one update at a time (``busy``)."""

    def __init__(self, name: str, http: MeterHttpClient, host: str, settings: UpdateSettings = UpdateSettings(),
                 *, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.name = name
        self.http = http
        self.host = host
        self.settings = settings
        self.on_progress = on_progress
        self.phase = Phase.IDLE
        self.last_error: str | None = None
        self.last_rc: int | None = None  # the module's code of the last refusal (DI VendorErrorCode)
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def _smp(self) -> MeterSmpClient:
        s = self.settings
        return MeterSmpClient(self.host, s.smp_port, mtu=s.mtu, timeout=s.smp_timeout, retries=s.smp_retries)

    def _report(self, phase: Phase, percent: float, message: str) -> None:
        self.phase = phase
        log.info("%s: %s (%.0f %%) %s", self.name, phase.value, percent, message)
        if self.on_progress is not None:
            self.on_progress(Progress(phase, percent, message))

    def check(self, data: bytes) -> ImageInfo:
        """The local image checks (nothing is sent)."""
        return inspect_image(data, slot_size=self.settings.slot_size, key_hash=self.settings.key_hash)

    async def image_states(self) -> tuple[SlotState, ...]:
        async with self._smp() as smp:
            return await smp.image_states()

    # --- the steps (DI: Loading, Installation, Confirmation) ----------------------------
    async def upload(self, data: bytes, *, actor: str = "-") -> tuple[ImageInfo, Before]:
        """Checks, preconditions, then the image into slot 1. Returns what it found."""
        image = self.check(data)
        self._report(Phase.CHECKING, 0, f"image {image.version} {image.hash_hex[:16]}")
        async with self._smp() as smp:
            # both preconditions at once: status.json (HTTP) and image list (SMP)
            status, slots = await asyncio.gather(self.http.status(), smp.image_states())
            before = plan_upload(online_update_allowed=status.online_update_allowed,
                                 module_version=status.firmware_version, slots=slots, image=image)
            audit.info("upload requested by %s on %s: image %s (%s), plan: %s", actor, self.name,
                       image.hash_hex, image.version, before.value)
            if before is Before.NOTHING_TO_DO:
                self._report(Phase.UNCHANGED, 100, f"{image.version} is already running")
                return image, before
            if before is Before.ERASE_THEN_UPLOAD:
                stale = secondary_slot(slots)
                log.info("%s: erasing the stale image %s in slot 1 first", self.name, stale.version)
                await smp.erase(1)
        if before is not Before.ALREADY_UPLOADED:
            await self._upload_resuming(data, image)
        async with self._smp() as smp:
            check_uploaded(await smp.image_states(), image)
        self._report(Phase.UPLOADED, 100, f"{image.version} in slot 1")
        return image, before

    async def _upload_resuming(self, data: bytes, image: ImageInfo) -> None:
        """The upload, picked up again when the link or the module went away mid-way
        (lost datagrams are retransmitted by the client; this covers a reboot)."""
        self._report(Phase.UPLOADING, 0, f"0 of {image.size} bytes")
        loop = asyncio.get_running_loop()
        last = [loop.time(), 0]  # when and at which whole percent the last report went out

        def progress(off: int, total: int) -> None:
            # a report per chunk (~360 for 200 KiB) cost ~8 % of the upload's throughput
            # through OPC UA: report a new whole percent at most every PROGRESS_INTERVAL s
            percent = 100 * off // total
            now = loop.time()
            if percent > last[1] and (now - last[0] >= PROGRESS_INTERVAL or off >= total):
                last[:] = now, percent
                self._report(Phase.UPLOADING, 100.0 * off / total, f"{off} of {total} bytes")

        for attempt in range(1, self.settings.upload_attempts + 1):
            try:
                async with self._smp() as smp:
                    await smp.upload(data, progress=progress)
                return
            except MeterCommunicationError as exc:
                if attempt == self.settings.upload_attempts:
                    raise
                log.warning("%s: upload interrupted (%s); waiting for the module to resume (%d/%d)",
                            self.name, exc, attempt, self.settings.upload_attempts)
                await self._wait_answering()

    async def _wait_answering(self) -> tuple[SlotState, ...]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.reboot_timeout
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                async with self._smp() as smp:
                    return await smp.image_states()
            except MeterCommunicationError:
                if loop.time() >= deadline:
                    raise

    async def install(self, image: ImageInfo, *, actor: str = "-") -> BootOutcome:
        """``image test`` + ``reset`` + wait until the meter answers again."""
        audit.info("install requested by %s on %s: image %s", actor, self.name, image.hash_hex)
        self._report(Phase.INSTALLING, 0, "marking the image for test")
        async with self._smp() as smp:
            await smp.test(image.hash)
            check_pending(await smp.image_states(), image)
            self._report(Phase.INSTALLING, 30, "resetting the module")
            await smp.reset()
        slots = await self._wait_back(image)
        outcome = boot_outcome(slots, image)
        if outcome is BootOutcome.RUNS_IN_TEST:
            self._report(Phase.AWAITING_CONFIRMATION, 100, f"{image.version} runs in test; confirm it")
        elif outcome is BootOutcome.RUNS_CONFIRMED:
            self._report(Phase.CONFIRMED, 100, f"{image.version} runs")
        else:
            running = running_slot(slots)
            raise UpdatePreconditionFailed(
                f"the module's bootloader {outcome.value}: {image.version} did not boot "
                f"(bad signature?); {running.version} keeps running")
        return outcome

    async def _wait_back(self, image: ImageInfo) -> tuple[SlotState, ...]:
        """Until the module has rebooted (slot 1 no longer pending) and HTTP answers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.reboot_timeout
        last_problem = "no answer yet"
        while loop.time() < deadline:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                async with self._smp() as smp:
                    slots = await smp.image_states()
                secondary = secondary_slot(slots)
                if secondary is not None and secondary.pending:
                    last_problem = "the module has not rebooted yet"
                    continue
                await self.http.status()
                self._report(Phase.INSTALLING, 90, "the meter answers again")
                return slots
            except MeterCommunicationError as exc:
                last_problem = str(exc)
                self._report(Phase.INSTALLING, 50, "waiting for the meter to come back")
        raise UpdatePreconditionFailed(
            f"the meter did not answer within {self.settings.reboot_timeout:g} s after the reset "
            f"({last_problem}); MCUboot reverts an unconfirmed image at the next reset")

    async def confirm(self, image: ImageInfo | None = None, *, actor: str = "-") -> None:
        async with self._smp() as smp:
            slots = await smp.image_states()
            running = running_slot(slots)
            if image is not None and running.hash != image.hash:
                raise UpdatePreconditionFailed(
                    f"{image.version} is not running ({running.version} is): nothing to confirm")
            await smp.confirm(running.hash)
            slots = await smp.image_states()
        if not running_slot(slots).confirmed:
            raise UpdatePreconditionFailed("the module did not confirm the running image")
        audit.info("confirmed by %s on %s: %s (%s)", actor, self.name, running.hash.hex(), running.version)
        self._report(Phase.CONFIRMED, 100, f"{running.version} confirmed")

    async def revert(self, image: ImageInfo, *, actor: str = "-") -> None:
        """Reset an unconfirmed image so MCUboot swaps the old one back."""
        audit.info("revert by %s on %s: %s not confirmed", actor, self.name, image.hash_hex)
        slots = await self._wait_answering()  # the module may still be rebooting
        if running_slot(slots).confirmed:
            return
        async with self._smp() as smp:
            await smp.reset()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.reboot_timeout
        while loop.time() < deadline:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                async with self._smp() as smp:
                    slots = await smp.image_states()
                if running_slot(slots).confirmed:
                    await self.http.status()
                    self._report(Phase.REVERTED, 100, f"{running_slot(slots).version} runs again")
                    return
            except MeterCommunicationError:
                continue
        raise UpdatePreconditionFailed("the module did not come back after the revert reset")

    async def erase(self, *, actor: str = "-") -> None:
        async with self._smp() as smp:
            slots = await smp.image_states()
            secondary = secondary_slot(slots)
            if secondary is None:
                return
            if secondary.pending or not running_slot(slots).confirmed:
                raise UpdatePreconditionFailed(
                    "slot 1 is pending or is the fallback of an unconfirmed image: not erased")
            await smp.erase(1)
        audit.info("slot 1 (%s) erased by %s on %s", secondary.version, actor, self.name)

    # --- the whole documented sequence (vendor method, CLI) ------------------------------
    async def update(self, data: bytes, *, actor: str = "-", confirm: bool = True,
                     erase_old: bool = False) -> Phase:
        """Upload, install, confirm (and optionally erase the old image) in one go."""
        if self._lock.locked():
            raise UpdatePreconditionFailed(f"an update of {self.name} is already running")
        async with self._lock:
            self.last_error = None
            self.last_rc = None
            try:
                image, before = await self.upload(data, actor=actor)
                if before is Before.NOTHING_TO_DO:
                    return Phase.UNCHANGED
                await self.install(image, actor=actor)
                if confirm:
                    await self.confirm(image, actor=actor)
                    if erase_old:
                        await self.erase(actor=actor)
                audit.info("update by %s on %s: image %s: %s", actor, self.name, image.hash_hex, self.phase.value)
                return self.phase
            except EmuError as exc:
                self.last_error = str(exc)
                self.last_rc = getattr(exc, "rc", None)
                self._report(Phase.FAILED, 0, str(exc))
                audit.warning("update by %s on %s failed: %s", actor, self.name, exc)
                raise
