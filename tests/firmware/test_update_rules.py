"""The update procedure's decisions (pure: no sockets)."""

from __future__ import annotations

import pytest

from emu_opcua.errors import UpdatePreconditionFailed
from emu_opcua.firmware.image import ImageInfo, ImageVersion
from emu_opcua.firmware.update import Before, BootOutcome, SlotState, boot_outcome, plan_upload

OLD, NEW, OTHER = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
IMAGE = ImageInfo(version=ImageVersion(1, 1, 0), hash=NEW, size=1000, header_size=32, image_size=900,
                  flags=0, key_hash=None, signature_type=None, tlvs=())
RUNNING = SlotState(0, "1.0.14", OLD, active=True, confirmed=True)


def plan(slots, *, allowed=True, version="1.0.14"):
    return plan_upload(online_update_allowed=allowed, module_version=version, slots=tuple(slots), image=IMAGE)


def test_a_free_slot_1_means_upload():
    assert plan([RUNNING]) is Before.UPLOAD


def test_the_running_image_is_a_no_op():
    assert plan([SlotState(0, "1.1.0", NEW, active=True, confirmed=True)]) is Before.NOTHING_TO_DO


def test_a_stale_inactive_image_is_erased_first():
    assert plan([RUNNING, SlotState(1, "0.9.0", OTHER)]) is Before.ERASE_THEN_UPLOAD


def test_the_same_image_already_in_slot_1_is_not_uploaded_again():
    assert plan([RUNNING, SlotState(1, "1.1.0", NEW)]) is Before.ALREADY_UPLOADED


@pytest.mark.parametrize("slots, allowed, version, words", [
    ([RUNNING], False, "1.0.14", "not allowed"),
    ([RUNNING], True, "1.0.5", "older than 1.0.6"),
    ([RUNNING], True, "garbage", "not understood"),
    ([RUNNING, SlotState(1, "0.9.0", OTHER, pending=True)], True, "1.0.14", "marked for test"),
    ([RUNNING, SlotState(1, "0.9.0", OTHER, confirmed=True)], True, "1.0.14", "confirmed fallback"),
    ([SlotState(0, "1.0.14", OLD, active=True), SlotState(1, "1.0.9", OTHER, confirmed=True)], True, "1.0.14",
     "not confirmed"),
    ([SlotState(1, "1.0.9", OTHER)], True, "1.0.14", "no image in slot 0"),
])
def test_refusals_say_why(slots, allowed, version, words):
    with pytest.raises(UpdatePreconditionFailed, match=words):
        plan(slots, allowed=allowed, version=version)


def test_the_minimum_version_itself_is_allowed():
    assert plan([RUNNING], version="1.0.6") is Before.UPLOAD


@pytest.mark.parametrize("slots, outcome", [
    ([SlotState(0, "1.1.0", NEW, active=True), SlotState(1, "1.0.14", OLD, confirmed=True)], BootOutcome.RUNS_IN_TEST),
    ([SlotState(0, "1.1.0", NEW, active=True, confirmed=True)], BootOutcome.RUNS_CONFIRMED),
    ([RUNNING], BootOutcome.REJECTED),
    ([RUNNING, SlotState(1, "1.1.0", NEW)], BootOutcome.REVERTED),
])
def test_what_the_reboot_did(slots, outcome):
    assert boot_outcome(tuple(slots), IMAGE) is outcome
