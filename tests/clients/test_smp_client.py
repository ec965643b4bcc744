"""MeterSmpClient against the simulator's SMP server on 127.0.0.1 (real UDP)."""

from __future__ import annotations

import asyncio
import random

import pytest
from smpclient import SMPClient
from smpclient.exceptions import SMPBadSequence
from smpclient.requests.image_management import ImageStatesRead
from smpclient.transport.udp import SMPUDPTransport

from emu_opcua.clients.smp import MeterSmpClient
from emu_opcua.errors import MeterTimeout, MeterUnreachable, SmpCommandRefused
from emu_opcua.firmware.image import inspect_image
from emu_opcua.simulator.mcuboot import ModuleFirmware, ReplyStyle
from emu_opcua.simulator.smp_server import SmpFaults, SmpServer, start_smp_server
from images import SLOT_SIZE, make_image, make_key


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(scope="module")
def images(key, tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    return {
        "running": make_image(folder, key, version="1.0.6", size=30_000, seed=1),
        "new": make_image(folder, key, version="1.1.0", size=60_000, seed=2),
    }


@pytest.fixture
async def module(request, key, images):
    style = getattr(request, "param", ReplyStyle.V2)
    firmware = ModuleFirmware.running(images["running"], slot_size=SLOT_SIZE, public_key_der=key.public_der)
    server = SmpServer(firmware, style=style)
    transport, port = await start_smp_server(server)
    yield server, port
    transport.close()


def smp(port: int, **kwargs) -> MeterSmpClient:
    kwargs.setdefault("timeout", 0.3)
    return MeterSmpClient("127.0.0.1", port, **kwargs)


@pytest.mark.parametrize("module", [ReplyStyle.V2, ReplyStyle.V1], indirect=True)
async def test_the_manuals_sequence_in_both_reply_styles(module, images):
    server, port = module
    new = inspect_image(images["new"])
    async with smp(port) as client:
        states = await client.image_states()
        assert [(s.slot, s.version, s.active, s.confirmed) for s in states] == [(0, "1.0.6", True, True)]
        seen = []
        await client.upload(images["new"], progress=lambda off, total: seen.append((off, total)))
        assert seen[-1] == (len(images["new"]), len(images["new"]))
        assert all(b > a for (a, _), (b, _) in zip(seen, seen[1:]))
        states = await client.image_states()
        assert states[1].hash == new.hash and states[1].version == "1.1.0" and not states[1].pending
        await client.test(new.hash)
        assert (await client.image_states())[1].pending
        await client.reset()
        await asyncio.sleep(0.05)
        states = await client.image_states()
        assert states[0].version == "1.1.0" and states[0].active and not states[0].confirmed
        await client.confirm(new.hash)
        states = await client.image_states()
        assert states[0].confirmed and not states[1].confirmed
        await client.erase()  # v1: a success that looks like an error with rc 0
        assert [s.slot for s in await client.image_states()] == [0]


@pytest.mark.parametrize("module", [ReplyStyle.V2, ReplyStyle.V1], indirect=True)
async def test_refusals_keep_the_modules_code(module, images):
    server, port = module
    async with smp(port) as client:
        await client.upload(images["new"])
        with pytest.raises(SmpCommandRefused) as caught:  # both slots full
            await client.upload(images["running"])
        assert caught.value.rc != 0 and caught.value.command == "image upload"
        with pytest.raises(SmpCommandRefused) as caught:
            await client.test(b"\x01" * 32)
        assert caught.value.rc == 3  # EINVAL
        if server.style is ReplyStyle.V2:
            assert caught.value.group == 1
        else:
            assert caught.value.group is None


async def test_lost_datagrams_are_sent_again_and_the_upload_completes(module, images):
    server, port = module
    server.faults = SmpFaults(drop_requests=0.05, drop_replies=0.05, random=random.Random(5))
    async with smp(port, timeout=0.1, retries=8) as client:
        await client.upload(images["new"])
        assert client.retransmits > 0
    assert server.firmware.slots[1].info.hash == inspect_image(images["new"]).hash


async def test_plain_smpclient_fails_on_the_same_loss(module, images):
    """The reason for the adapter: smpclient alone never retransmits."""
    server, port = module
    server.faults = SmpFaults(drop_requests=0.05, drop_replies=0.05, random=random.Random(5))
    client = SMPClient(SMPUDPTransport(mtu=628), "127.0.0.1", timeout_s=0.1)
    await client._transport.connect("127.0.0.1", 1.0, port)
    with pytest.raises(TimeoutError):
        async for _ in client.upload(images["new"], subsequent_timeout_s=0.1, first_timeout_s=0.1):
            pass
    await client.disconnect()


async def test_a_late_answer_does_not_leave_the_client_one_behind(module):
    server, port = module
    async with smp(port, timeout=0.2, retries=3) as client:
        server.faults.reply_delay = 0.3  # every answer arrives after the client gave up once
        states = await client.image_states()
        server.faults.reply_delay = 0.0
        for _ in range(3):  # later requests get their own answers
            assert (await client.image_states()) == states
    # smpclient alone: the late answer is taken as the next request's reply
    plain = SMPClient(SMPUDPTransport(mtu=628), "127.0.0.1", timeout_s=0.2)
    await plain._transport.connect("127.0.0.1", 1.0, port)
    server.faults.reply_delay = 0.3
    with pytest.raises(TimeoutError):
        await plain.request(ImageStatesRead())
    server.faults.reply_delay = 0.0
    await asyncio.sleep(0.2)
    with pytest.raises(SMPBadSequence):
        await plain.request(ImageStatesRead())
    await plain.disconnect()


async def test_an_upload_resumes_from_the_modules_offset(module, images):
    server, port = module
    data = images["new"]
    firmware = server.firmware
    offsets = []
    async with smp(port, timeout=0.1, retries=0) as client:
        seen = 0

        def cut(off, total):
            nonlocal seen
            seen = off
            if off > total // 2:
                server.faults.drop_requests = 1.0

        with pytest.raises(MeterTimeout):
            await client.upload(data, progress=cut)
        server.faults.drop_requests = 0.0
        await client.upload(data, progress=lambda off, total: offsets.append(off))
    assert offsets[0] >= seen > len(data) // 2  # resumed, not started over
    assert firmware.slots[1].info.hash == inspect_image(data).hash


async def test_a_port_nobody_listens_on_is_unreachable():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = smp(port, timeout=0.2, retries=1)
    await client.connect()
    with pytest.raises((MeterUnreachable, MeterTimeout)) as caught:
        await client.image_states()
    assert isinstance(caught.value, MeterUnreachable)  # ICMP port unreachable on loopback
    await client.close()
