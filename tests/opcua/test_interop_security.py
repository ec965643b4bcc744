"""Session security on the wire, seen by an independent stack (node-opcua, session_security.mjs):
no session on a channel whose policy and mode are not configured, and no clear-text
password where the user token policy demands an encrypted one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from emu_opcua.opcua.config import ServerConfig, UserConfig
from emu_opcua.opcua.security import hash_password
from emu_opcua.opcua.serve import GatewayServer
from tests.opcua.test_interop import INTEROP, free_port, node_or_fail

SCRIPT = INTEROP / "session_security.mjs"


@pytest.fixture(scope="module")
def operator() -> UserConfig:
    return UserConfig(name="olga", password_hash=hash_password("olga-pw"), role="operator")


def server_config(tmp_path: Path, policies: tuple[str, ...], *, anonymous: bool, users=()) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp_path / "pki",
                        application_uri="urn:test:emu-opcua", hostnames=("localhost", "127.0.0.1"),
                        security_policies=policies, allow_anonymous=anonymous, users=tuple(users),
                        shutdown_grace=0)


async def node_session(config: ServerConfig, *args: str) -> dict:
    node = node_or_fail()
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), f"opc.tcp://127.0.0.1:{config.port}/", *args,
        cwd=INTEROP, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("node session_security.mjs did not finish within 60 s")
    assert proc.returncode == 0, f"node-opcua client failed:\n{err.decode(errors='replace')}"
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"no output from the node-opcua client; stderr:\n{err.decode(errors='replace')}"
    return json.loads(lines[-1])


async def test_node_opcua_gets_no_session_on_an_unconfigured_none_channel(tmp_path, operator):
    # only SignAndEncrypt is configured; a None channel is still opened (GetEndpoints)
    config = server_config(tmp_path, ("Basic256Sha256_SignAndEncrypt",), anonymous=True, users=[operator])
    async with GatewayServer(config):
        anonymous = await node_session(config)
        user = await node_session(config, "olga", "olga-pw")
    assert anonymous.get("refused") == "BadSecurityPolicyRejected", anonymous
    assert user.get("refused") == "BadSecurityPolicyRejected", user


async def test_node_opcua_password_must_be_encrypted_as_the_token_policy_says(tmp_path, operator):
    # None is configured: the UserName token policy of its endpoint demands Basic256Sha256
    config = server_config(tmp_path, ("None", "Basic256Sha256_SignAndEncrypt"), anonymous=False, users=[operator])
    async with GatewayServer(config):
        encrypted = await node_session(config, "olga", "olga-pw")
        clear = await node_session(config, "olga", "olga-pw", "clear-text")
    assert encrypted == {"session": "activated", "state": 0}, encrypted  # 0: Running
    assert clear.get("refused") == "BadIdentityTokenInvalid", clear
