"""Real signed MCUboot images for tests, made with MCUboot's own imgtool (PyPI).

The keys are throwaway test keys generated per test session; nothing here pretends
to be the meter maker's key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from attrs import frozen

IMGTOOL = [sys.executable, "-m", "imgtool.main"]
SLOT_SIZE = 0x40000  # the tests' slot: 256 KiB
HEADER_SIZE = 0x200


@frozen
class TestKey:
    pem: Path
    public_der: bytes


def imgtool(*args: str) -> str:
    result = subprocess.run([*IMGTOOL, *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"imgtool {' '.join(args)} failed: {result.stderr or result.stdout}")
    return result.stdout


def make_key(folder: Path, name: str = "test", kind: str = "ecdsa-p256") -> TestKey:
    pem = folder / f"{name}.pem"
    imgtool("keygen", "-k", str(pem), "-t", kind)
    der = folder / f"{name}.pub.der"
    imgtool("getpub", "-k", str(pem), "--encoding", "raw", "-o", str(der))
    return TestKey(pem, der.read_bytes())


def make_image(folder: Path, key: TestKey | None, *, version: str = "1.1.0", size: int = 20_000,
               name: str = "app", seed: int = 1) -> bytes:
    """A signed (or, with ``key=None``, hash-only) image of ``size`` body bytes."""
    body = folder / f"{name}-{version}-{seed}.bin"
    body.write_bytes(_pseudo_random(size, seed))
    out = folder / f"{name}-{version}-{seed}.signed.bin"
    args = ["sign", "--header-size", hex(HEADER_SIZE), "--pad-header", "--align", "4",
            "--version", version, "--slot-size", hex(SLOT_SIZE)]
    if key is not None:
        args += ["--key", str(key.pem)]
    imgtool(*args, str(body), str(out))
    return out.read_bytes()


def _pseudo_random(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)
