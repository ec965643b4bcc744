"""The update procedure's decisions, sans-IO: what to do next, given what the meter says.

The manual's sequence (``image list`` -> ``upload`` -> ``image list`` -> ``test HASH`` ->
``reset`` -> wait -> ``confirm HASH`` -> optionally ``erase``) with the guards an
unattended gateway needs. Every step re-reads ``image list`` (OPCUA-NOTES: never confirm
an image that has not booted, never erase a pending one), and each function here turns
one reading into a decision; :mod:`emu_opcua.firmware.updater` does the I/O.
"""

from __future__ import annotations

import enum

from attrs import frozen

from emu_opcua.errors import UpdatePreconditionFailed
from emu_opcua.firmware.image import ImageInfo, ImageVersion

#: The manual: online update needs module firmware 1.0.6 or newer.
MINIMUM_MODULE_VERSION = ImageVersion(1, 0, 6)


@frozen
class SlotState:
    """One slot as the module's ``image list`` reports it."""

    slot: int
    version: str
    hash: bytes | None
    active: bool = False
    confirmed: bool = False
    pending: bool = False
    permanent: bool = False
    bootable: bool = False


class Phase(enum.Enum):
    """Where an update is; DI's Installation states map onto these (opcua layer)."""

    IDLE = "idle"
    CHECKING = "checking"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"  # slot 1 holds the image: DI PendingVersion
    INSTALLING = "installing"  # test + reset + waiting for the meter
    AWAITING_CONFIRMATION = "awaiting confirmation"  # the new image runs in test
    CONFIRMED = "confirmed"
    REVERTED = "reverted"  # not confirmed in time: the old image runs again
    UNCHANGED = "unchanged"  # the image was already running: nothing was installed
    FAILED = "failed"


class Before(enum.Enum):
    """What has to happen before an upload may start."""

    UPLOAD = "upload"
    ERASE_THEN_UPLOAD = "erase slot 1, then upload"  # slot 1 holds a stale, inactive image
    ALREADY_UPLOADED = "already uploaded"  # slot 1 holds exactly this image, not yet tested
    NOTHING_TO_DO = "nothing to do"  # this image is running


def running_slot(slots: tuple[SlotState, ...]) -> SlotState:
    for slot in slots:
        if slot.slot == 0:
            return slot
    raise UpdatePreconditionFailed("image list shows no image in slot 0")


def secondary_slot(slots: tuple[SlotState, ...]) -> SlotState | None:
    return next((s for s in slots if s.slot == 1), None)


def plan_upload(*, online_update_allowed: bool, module_version: str, slots: tuple[SlotState, ...],
                image: ImageInfo) -> Before:
    """The manual's preconditions, checked before anything is sent."""
    if not online_update_allowed:
        raise UpdatePreconditionFailed(
            "online update is not allowed on this meter (status.json updateractive is false; "
            "switch on \"allow online update\" in the meter's web interface)")
    try:
        version = ImageVersion.parse(module_version)
    except ValueError:
        raise UpdatePreconditionFailed(f"module firmware version {module_version!r} is not understood") from None
    if version < MINIMUM_MODULE_VERSION:
        raise UpdatePreconditionFailed(
            f"module firmware {version} is older than {MINIMUM_MODULE_VERSION}, the first that can be "
            "updated online (the manual: update it with the maker's tool)")
    running = running_slot(slots)
    if not running.confirmed:
        raise UpdatePreconditionFailed(
            f"the running image {running.version} is not confirmed: an update is in progress "
            "(confirm it or let it revert first)")
    if running.hash == image.hash:
        return Before.NOTHING_TO_DO
    secondary = secondary_slot(slots)
    if secondary is None:
        return Before.UPLOAD
    if secondary.pending:
        raise UpdatePreconditionFailed(
            f"slot 1 holds {secondary.version}, marked for test at the next reset: refusing to overwrite it")
    if secondary.hash == image.hash:
        return Before.ALREADY_UPLOADED
    if secondary.confirmed:
        raise UpdatePreconditionFailed(f"slot 1 holds the confirmed fallback {secondary.version}")
    return Before.ERASE_THEN_UPLOAD


def check_uploaded(slots: tuple[SlotState, ...], image: ImageInfo) -> None:
    """After the upload: slot 1 must hold exactly this image."""
    secondary = secondary_slot(slots)
    if secondary is None or secondary.hash != image.hash:
        found = secondary.hash.hex() if secondary is not None and secondary.hash else "nothing"
        raise UpdatePreconditionFailed(f"after the upload slot 1 holds {found}, not {image.hash_hex}")


def check_pending(slots: tuple[SlotState, ...], image: ImageInfo) -> None:
    secondary = secondary_slot(slots)
    if secondary is None or secondary.hash != image.hash or not secondary.pending:
        raise UpdatePreconditionFailed("after 'image test' slot 1 is not pending")


class BootOutcome(enum.Enum):
    RUNS_IN_TEST = "runs in test"  # the new image booted, unconfirmed: confirm or revert
    RUNS_CONFIRMED = "runs confirmed"
    REJECTED = "rejected at boot"  # MCUboot refused the image (signature): the old one runs
    REVERTED = "reverted"  # the old image runs again, the new one is in slot 1


def boot_outcome(slots: tuple[SlotState, ...], image: ImageInfo) -> BootOutcome:
    """What the reboot did, from ``image list`` afterwards."""
    running = running_slot(slots)
    if running.hash == image.hash:
        return BootOutcome.RUNS_CONFIRMED if running.confirmed else BootOutcome.RUNS_IN_TEST
    secondary = secondary_slot(slots)
    if secondary is not None and secondary.hash == image.hash:
        return BootOutcome.REVERTED
    return BootOutcome.REJECTED
