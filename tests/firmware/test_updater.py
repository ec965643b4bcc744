"""FirmwareUpdater end to end against simulated meters (HTTP + SMP/UDP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from emu_opcua.clients.http import MeterHttpClient
from emu_opcua.errors import UpdatePreconditionFailed
from emu_opcua.firmware.image import InvalidImage, inspect_image, key_hash_of
from emu_opcua.firmware.update import Phase
from emu_opcua.firmware.updater import FirmwareUpdater, UpdateSettings
from emu_opcua.simulator.fleet import Fleet, FleetConfig
from emu_opcua.simulator.smp_server import SmpFaults
from images import make_image, make_key

FAST = dict(smp_timeout=0.2, smp_retries=5, reboot_timeout=5.0, poll_interval=0.1)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return make_key(folder, "sim"), make_key(folder, "foreign")


@pytest.fixture(scope="module")
def images(keys, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    ours, foreign = keys
    return {
        "new": make_image(folder, ours, version="1.1.0", size=40_000, seed=2),
        "newer": make_image(folder, ours, version="1.2.0", size=40_000, seed=3),
        "foreign": make_image(folder, foreign, version="1.1.0", size=40_000, seed=4),
    }


@pytest.fixture
async def fleet(keys):
    config = FleetConfig(meters=1, control_port=None, history_days=0.1, reboot_time=0.3,
                         firmware_key_pem=keys[0].pem.read_bytes())
    async with Fleet(config) as fleet:
        yield fleet


@pytest.fixture
async def updater(fleet):
    meter = fleet.meters[0]
    async with MeterHttpClient(meter.host, meter.http_port, timeout=1.0) as http:
        yield FirmwareUpdater("m1", http, meter.host, UpdateSettings(smp_port=meter.smp_port, **FAST))


async def status_version(fleet) -> str:
    meter = fleet.meters[0]
    async with MeterHttpClient(meter.host, meter.http_port, timeout=1.0) as http:
        return (await http.status()).firmware_version


async def test_the_whole_sequence_with_confirm(fleet, updater, images, caplog):
    caplog.set_level(logging.INFO, logger="emu_opcua.firmware.audit")
    phases = []
    updater.on_progress = lambda p: phases.append(p.phase)
    assert await status_version(fleet) == "1.0.14"
    assert await updater.update(images["new"], actor="alice", erase_old=True) is Phase.CONFIRMED
    assert await status_version(fleet) == "1.1.0"  # status.json after the reboot
    slots = await updater.image_states()
    assert [(s.slot, s.version, s.confirmed) for s in slots] == [(0, "1.1.0", True)]
    assert fleet.meters[0].module.boot_log[-1].startswith("swapped")
    for phase in (Phase.CHECKING, Phase.UPLOADING, Phase.UPLOADED, Phase.INSTALLING,
                  Phase.AWAITING_CONFIRMATION, Phase.CONFIRMED):
        assert phase in phases
    audit = [r.getMessage() for r in caplog.records if r.name == "emu_opcua.firmware.audit"]
    assert any("alice" in line and inspect_image(images["new"]).hash_hex in line and "confirmed" in line
               for line in audit)


async def test_not_confirmed_reverts_to_the_old_image(fleet, updater, images):
    assert await updater.update(images["new"], confirm=False) is Phase.AWAITING_CONFIRMATION
    assert await status_version(fleet) == "1.1.0"
    await updater.revert(inspect_image(images["new"]))
    assert await status_version(fleet) == "1.0.14"
    slots = await updater.image_states()
    assert slots[0].version == "1.0.14" and slots[0].confirmed
    assert updater.phase is Phase.REVERTED


async def test_a_file_that_is_no_image_never_reaches_the_meter(fleet, updater):
    with pytest.raises(InvalidImage):
        await updater.update(b"PK\x03\x04" + bytes(5000))
    assert fleet.meters[0].smp.requests == 0
    assert updater.phase is not Phase.UPLOADING


async def test_a_wrong_signature_is_rejected_at_boot_and_the_old_image_runs(fleet, updater, images):
    with pytest.raises(UpdatePreconditionFailed, match="rejected at boot"):
        await updater.update(images["foreign"])
    assert updater.phase is Phase.FAILED and "1.0.14 keeps running" in updater.last_error
    assert await status_version(fleet) == "1.0.14"
    assert [s.slot for s in await updater.image_states()] == [0]  # the bad image was erased


async def test_a_pinned_key_refuses_a_foreign_image_before_upload(fleet, images, keys):
    meter = fleet.meters[0]
    async with MeterHttpClient(meter.host, meter.http_port, timeout=1.0) as http:
        pinned = FirmwareUpdater("m1", http, meter.host, UpdateSettings(
            smp_port=meter.smp_port, key_hash=key_hash_of(keys[0].public_der), **FAST))
        with pytest.raises(InvalidImage, match="different key"):
            await pinned.update(images["foreign"])
    assert meter.smp.requests == 0


async def test_datagram_loss_is_retransmitted_and_the_update_completes(fleet, updater, images):
    fleet.meters[0].smp.faults = SmpFaults(drop_requests=0.05, drop_replies=0.05, random=random.Random(3))
    assert await updater.update(images["new"]) is Phase.CONFIRMED
    assert await status_version(fleet) == "1.1.0"


async def test_a_reboot_in_the_middle_of_the_upload_is_resumed(fleet, updater, images):
    fleet.meters[0].smp.faults = SmpFaults(reboot_after_upload_bytes=len(images["new"]) // 2)
    assert await updater.update(images["new"]) is Phase.CONFIRMED
    assert fleet.meters[0].module.boot_log[0].startswith("booted 1.0.14")  # the reboot mid-upload
    assert await status_version(fleet) == "1.1.0"


async def test_both_slots_full_the_stale_image_is_erased_first(fleet, updater, images):
    assert await updater.update(images["new"]) is Phase.CONFIRMED  # slot 1 keeps 1.0.14
    assert [s.version for s in await updater.image_states()] == ["1.1.0", "1.0.14"]
    assert await updater.update(images["newer"]) is Phase.CONFIRMED
    assert await status_version(fleet) == "1.2.0"


async def test_the_running_image_is_a_no_op(fleet, updater, images):
    assert await updater.update(images["new"]) is Phase.CONFIRMED
    requests = fleet.meters[0].smp.requests
    boots = len(fleet.meters[0].module.boot_log)
    assert await updater.update(images["new"]) is Phase.UNCHANGED
    assert len(fleet.meters[0].module.boot_log) == boots  # no reset
    assert fleet.meters[0].smp.requests - requests <= 2  # an image list, nothing uploaded


async def test_online_update_not_allowed(fleet, updater, images):
    fleet.meters[0].online_update_allowed = False
    with pytest.raises(UpdatePreconditionFailed, match="not allowed"):
        await updater.update(images["new"])
    assert fleet.meters[0].module.slots[1] is None


async def test_module_firmware_too_old(keys, images):
    config = FleetConfig(meters=1, control_port=None, history_days=0.1, module_version="1.0.5",
                         firmware_key_pem=keys[0].pem.read_bytes())
    async with Fleet(config) as fleet:
        meter = fleet.meters[0]
        async with MeterHttpClient(meter.host, meter.http_port, timeout=1.0) as http:
            updater = FirmwareUpdater("m1", http, meter.host, UpdateSettings(smp_port=meter.smp_port, **FAST))
            with pytest.raises(UpdatePreconditionFailed, match="older than 1.0.6"):
                await updater.update(images["new"])
        assert meter.module.slots[1] is None


async def test_a_meter_that_does_not_come_back_in_time(fleet, images):
    meter = fleet.meters[0]
    meter.reboot_time = 2.0
    async with MeterHttpClient(meter.host, meter.http_port, timeout=0.5) as http:
        updater = FirmwareUpdater("m1", http, meter.host, UpdateSettings(
            smp_port=meter.smp_port, **{**FAST, "reboot_timeout": 0.8}))
        with pytest.raises(UpdatePreconditionFailed, match="did not answer within 0.8 s"):
            await updater.update(images["new"])
        assert "reverts an unconfirmed image" in updater.last_error
        # the meter comes back later on the new image in test: never confirmed, so a
        # reset reverts it
        patient = FirmwareUpdater("m1", http, meter.host, UpdateSettings(smp_port=meter.smp_port, **FAST))
        await patient.revert(inspect_image(images["new"]))
    assert await status_version(fleet) == "1.0.14"


async def test_one_update_per_meter_at_a_time(fleet, updater, images):
    first = asyncio.create_task(updater.update(images["new"]))
    await asyncio.sleep(0.05)
    assert updater.busy
    with pytest.raises(UpdatePreconditionFailed, match="already running"):
        await updater.update(images["newer"])
    assert await first is Phase.CONFIRMED
