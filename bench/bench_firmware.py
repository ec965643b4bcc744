"""Firmware upload throughput over SMP/UDP, and a fleet update through the CLI.

    .venv/bin/python bench/bench_firmware.py [--size-kib 200] [--rounds 3] [--meters 50]

Rows, measured side by side in one run (medians over ``--rounds`` interleaved rounds),
each against a simulated module (the simulator's SMP server, in this process, on
127.0.0.1, 600-byte datagrams as the manual's mcumgr sends):

- plain smpclient 7.3 ``SMPClient.upload`` (the baseline);
- ``MeterSmpClient.upload`` (ours: drained queue, retransmits, resume);
- both with 5 % of the datagrams lost each way (smpclient alone fails: the row says at
  which offset; ours completes: its throughput);
- through OPC UA: an asyncua client (admin, Basic256Sha256 SignAndEncrypt) writes the
  image into the meter's DI FileTransfer (GenerateFileForWrite, Write, CloseAndCommit)
  of a GatewayServer in this process, timed from GenerateFileForWrite until a
  subscription on PendingVersion reports the image (the file transfer, the gateway's
  preconditions (status.json, image list), its SMP upload into slot 1 and the image
  list after it included). Timing starts once the gateway has settled (its first polls
  and the GC freeze are start-up, not upload: the smpclient rows start no gateway);
  the completion is event-driven (a subscription, 10 ms publishing interval), not polled;
- ``emu-opcua firmware update`` (the CLI, a subprocess) updating ``--meters`` simulated
  meters with ``--concurrency 10``: the total time, reboots of 2 s included.

Only 127.0.0.1 is contacted. Prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "firmware"))

from smpclient import SMPClient  # noqa: E402
from smpclient.transport.udp import SMPUDPTransport  # noqa: E402

from emu_opcua.clients.smp import DEFAULT_MTU, MeterSmpClient  # noqa: E402
from emu_opcua.simulator.fleet import SLOT_SIZE, Fleet, FleetConfig  # noqa: E402
from emu_opcua.simulator.mcuboot import ModuleFirmware  # noqa: E402
from emu_opcua.simulator.smp_server import SmpFaults, SmpServer, start_smp_server  # noqa: E402
from images import make_image, make_key  # noqa: E402  (imgtool-made test images)


async def _module(running: bytes, key, loss: float, seed: int):
    firmware = ModuleFirmware.running(running, slot_size=SLOT_SIZE, public_key_der=key.public_der)
    server = SmpServer(firmware, faults=SmpFaults(drop_requests=loss, drop_replies=loss,
                                                  random=random.Random(seed)))
    transport, port = await start_smp_server(server)
    return server, transport, port


async def plain_upload(port: int, image: bytes, timeout: float) -> tuple[float, str]:
    client = SMPClient(SMPUDPTransport(mtu=DEFAULT_MTU), "127.0.0.1", timeout_s=timeout)
    await client._transport.connect("127.0.0.1", 1.0, port)
    offset = 0
    t0 = time.perf_counter()
    try:
        async for offset in client.upload(image, first_timeout_s=timeout, subsequent_timeout_s=timeout):
            pass
    except Exception as exc:  # noqa: BLE001 - the row reports how it failed
        return 0.0, f"failed at {100 * offset / len(image):.0f} % ({type(exc).__name__})"
    finally:
        await client.disconnect()
    return len(image) / (time.perf_counter() - t0) / 1024, "ok"


async def our_upload(port: int, image: bytes, timeout: float) -> tuple[float, str]:
    async with MeterSmpClient("127.0.0.1", port, timeout=timeout, retries=10) as client:
        t0 = time.perf_counter()
        await client.upload(image)
        elapsed = time.perf_counter() - t0
        return len(image) / elapsed / 1024, f"ok, {client.retransmits} retransmits"


async def uploads(args, key, running: bytes, image: bytes) -> list[tuple[str, list[float], str]]:
    rows = {name: ([], "") for name in ("smpclient", "ours", "smpclient, 5 % loss", "ours, 5 % loss")}
    for r in range(args.rounds):
        for name, upload, loss in (("smpclient", plain_upload, 0.0), ("ours", our_upload, 0.0),
                                   ("smpclient, 5 % loss", plain_upload, 0.05), ("ours, 5 % loss", our_upload, 0.05)):
            server, transport, port = await _module(running, key, loss, seed=r)
            try:
                kib_s, note = await upload(port, image, 0.2 if loss else 2.0)
            finally:
                transport.close()
            values, _ = rows[name]
            if kib_s:
                values.append(kib_s)
            rows[name] = (values, note)
    return [(name, values, note) for name, (values, note) in rows.items()]


async def opcua_upload(key, image: bytes, folder: Path) -> float:
    """KiB/s of an image loaded through OPC UA DI FileTransfer until PendingVersion shows it."""
    import shutil
    import socket

    from asyncua import Client, ua
    from asyncua.crypto import security_policies
    from cryptography.hazmat.primitives import serialization

    from emu_opcua.opcua.config import MeterConfig, ServerConfig, UserConfig
    from emu_opcua.opcua.security import generate_certificate, hash_password
    from emu_opcua.opcua.serve import GatewayServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cert, private = generate_certificate("urn:bench:client", ["localhost"], "bench client", client=True)
    (folder / "client.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (folder / "client.pem").write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    config = FleetConfig(meters=1, control_port=None, history_days=0.0, firmware_key_pem=key.pem.read_bytes())
    async with Fleet(config) as fleet:
        p = fleet.ports()[0]
        server_config = ServerConfig(
            host="127.0.0.1", port=port, pki_dir=folder / "pki", application_uri="urn:bench:emu-opcua",
            hostnames=("localhost", "127.0.0.1"), security_policies=("Basic256Sha256_SignAndEncrypt",),
            allow_anonymous=False, shutdown_grace=0,
            users=(UserConfig(name="admin", password_hash=hash_password("admin-pw"), role="admin"),),
            meters=(MeterConfig(name="m", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                                smp_port=p.smp_port),))
        (folder / "pki" / "trusted").mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "client.der", folder / "pki" / "trusted" / "client.der")
        async with GatewayServer(server_config) as gateway:
            client = Client(server_config.endpoint, timeout=30)
            client.application_uri = "urn:bench:client"
            await client.set_security(security_policies.SecurityPolicyBasic256Sha256,
                                      certificate=str(folder / "client.der"), private_key=str(folder / "client.pem"),
                                      server_certificate=str(folder / "pki" / "own" / "cert.der"),
                                      mode=ua.MessageSecurityMode.SignAndEncrypt)
            client.set_user("admin")
            client.set_password("admin-pw")
            async with client:
                await gateway.settled.wait()
                idx = gateway.model.namespace_index
                transfer = ua.NodeId("m.SoftwareUpdate.Loading.FileTransfer", idx)
                pending = client.get_node(ua.NodeId("m.SoftwareUpdate.Loading.PendingVersion.SoftwareRevision", idx))

                async def call(obj, method, *args):
                    result = (await client.uaclient.call([ua.CallMethodRequest(
                        ObjectId=obj, MethodId=ua.NodeId(method), InputArguments=list(args))]))[0]
                    assert result.StatusCode.is_good(), result.StatusCode
                    return result.OutputArguments

                shown = asyncio.Event()

                class Handler:
                    def datachange_notification(self, node, val, data):
                        if val == "1.1.0":
                            shown.set()

                subscription = await client.create_subscription(10, Handler())
                await subscription.subscribe_data_change(pending)
                t0 = time.perf_counter()
                file_id, handle = (v.Value for v in await call(
                    transfer, ua.ObjectIds.TemporaryFileTransferType_GenerateFileForWrite, ua.Variant(1, ua.VariantType.Int32)))
                for offset in range(0, len(image), 65536):
                    await call(file_id, ua.ObjectIds.FileType_Write, ua.Variant(handle, ua.VariantType.UInt32),
                               ua.Variant(image[offset:offset + 65536], ua.VariantType.ByteString))
                await call(transfer, ua.ObjectIds.TemporaryFileTransferType_CloseAndCommit,
                           ua.Variant(handle, ua.VariantType.UInt32))
                t1 = time.perf_counter()
                await asyncio.wait_for(shown.wait(), 30)
                t2 = time.perf_counter()
                await subscription.delete()
                print(f"  (through OPC UA: file transfer {t1 - t0:.2f} s, gateway's SMP upload {t2 - t1:.2f} s)")
                return len(image) / (t2 - t0) / 1024


async def fleet_update(args, key, image_path: Path) -> tuple[float, int, str]:
    config = FleetConfig(meters=args.meters, control_port=None, history_days=0.0, reboot_time=2.0,
                         firmware_key_pem=key.pem.read_bytes())
    async with Fleet(config) as fleet:
        lines = ["[server]", "port = 4999", ""]
        for i, p in enumerate(fleet.ports()):
            lines += ["[[meters]]", f'name = "m{i}"', f'host = "{p.host}"', f"http_port = {p.http_port}",
                      f"smp_port = {p.smp_port}", "firmware_reboot_timeout = 30", ""]
        with tempfile.TemporaryDirectory() as folder:
            config_path = Path(folder) / "meters.toml"
            config_path.write_text("\n".join(lines))
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "emu_opcua.cli", "firmware", "update", str(image_path),
                "--config", str(config_path), "--concurrency", "10",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out, _ = await proc.communicate()
            elapsed = time.perf_counter() - t0
        updated = sum(m.module.version.minor == 1 and m.module.slots[0].confirmed for m in fleet.meters)
        return elapsed, updated, out.decode().strip().splitlines()[-1] if out else ""


async def main() -> None:
    import logging

    logging.getLogger("smpclient").setLevel(logging.CRITICAL)  # its timeouts are the point
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-kib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--meters", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        key = make_key(folder)
        running = make_image(folder, key, version="1.0.14", size=4096, seed=1)
        image = make_image(folder, key, version="1.1.0", size=args.size_kib * 1024 - 700, seed=2)
        image_path = folder / "update.bin"
        image_path.write_bytes(image)
        rows = await uploads(args, key, running, image)
        through_opcua = [await opcua_upload(key, image, Path(tempfile.mkdtemp(dir=folder))) for _ in range(args.rounds)]
        rows.insert(2, ("through OPC UA (DI)", through_opcua, "ok, gateway's SMP upload included"))
        elapsed, updated, summary = await fleet_update(args, key, image_path)
    base = statistics.median(rows[0][1]) if rows[0][1] else 0.0
    print(f"\nFirmware upload, {len(image) / 1024:.0f} KiB image, 600-byte datagrams, "
          f"median of {args.rounds} rounds\n")
    print(f"| {'variant':<22} | {'KiB/s':>8} | {'vs smpclient':>12} | note |")
    print(f"|{'-' * 24}|{'-' * 10}|{'-' * 14}|------|")
    for name, values, note in rows:
        if values:
            kib_s = statistics.median(values)
            ratio = f"{kib_s / base:.2f}" if base else "-"
            print(f"| {name:<22} | {kib_s:>8.0f} | {ratio:>12} | {note} ({len(values)}/{args.rounds} completed) |")
        else:
            print(f"| {name:<22} | {'-':>8} | {'-':>12} | {note} (0/{args.rounds} completed) |")
    print(f"\nFleet update through the CLI: {args.meters} meters, concurrency 10, 2 s reboots: "
          f"{elapsed:.1f} s total, {updated}/{args.meters} updated ({summary})")


if __name__ == "__main__":
    asyncio.run(main())
