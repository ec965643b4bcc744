"""Local MCUboot image checks against real imgtool-signed images."""

from __future__ import annotations

import hashlib
import struct

import pytest

from emu_opcua.errors import FirmwareRejected
from emu_opcua.firmware.image import (
    IMAGE_MAGIC, ImageVersion, InvalidImage, inspect_image, key_hash_of,
)
from images import HEADER_SIZE, SLOT_SIZE, imgtool, make_image, make_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return make_key(folder, "ours"), make_key(folder, "foreign"), make_key(folder, "ed", "ed25519")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("images")


def test_a_signed_image_is_described_as_imgtool_sees_it(keys, folder):
    ours, _, _ = keys
    data = make_image(folder, ours, version="1.2.3+4", size=20_000)
    info = inspect_image(data, slot_size=SLOT_SIZE, key_hash=key_hash_of(ours.public_der),
                         public_key_der=ours.public_der)
    assert info.version == ImageVersion(1, 2, 3, 4)
    assert str(info.version) == "1.2.3+4"
    assert info.header_size == HEADER_SIZE and info.image_size == 20_000 and info.size == len(data)
    assert info.signature_type == "ECDSA"
    assert info.key_hash == key_hash_of(ours.public_der)
    # the SMP hash is the SHA256 TLV, not the file's sha256; imgtool's own verify agrees
    assert info.hash != hashlib.sha256(data).digest()
    assert info.hash == hashlib.sha256(data[:info.signed_region_end]).digest()


def test_imgtool_verify_reports_the_same_hash(keys, folder, tmp_path):
    ours, _, _ = keys
    data = make_image(folder, ours, version="2.0.0", seed=7)
    path = tmp_path / "img.bin"
    path.write_bytes(data)
    out = imgtool("verify", "-k", str(ours.pem), str(path))
    assert inspect_image(data).hash_hex in out.lower()


def test_an_ed25519_signature_verifies(keys, folder):
    _, _, ed = keys
    data = make_image(folder, ed, name="ed")
    assert inspect_image(data, public_key_der=ed.public_der).signature_type == "ED25519"


@pytest.mark.parametrize("damage, reason", [
    (lambda d: b"\x00" * 4 + d[4:], "magic"),
    (lambda d: d[:100], "truncated"),
    (lambda d: d[:-10], "truncated"),
    (lambda d: d + b"\xff" * 8, "trailing-data"),
    (lambda d: d[:HEADER_SIZE + 50] + bytes([d[HEADER_SIZE + 50] ^ 1]) + d[HEADER_SIZE + 51:], "hash-mismatch"),
    (lambda d: b"PK\x03\x04" + bytes(2000), "magic"),  # a zip file, say
    (lambda d: b"", "truncated"),
])
def test_damaged_files_are_refused_with_their_reason(keys, folder, damage, reason):
    data = make_image(folder, keys[0])
    with pytest.raises(InvalidImage) as caught:
        inspect_image(damage(data))
    assert caught.value.reason == reason
    assert isinstance(caught.value, FirmwareRejected)


def test_a_version_changed_in_the_header_breaks_the_hash(keys, folder):
    data = bytearray(make_image(folder, keys[0], version="1.0.0"))
    struct.pack_into("<B", data, 20, 9)  # major version 9: the hash covers the header
    with pytest.raises(InvalidImage, match="does not match the content"):
        inspect_image(bytes(data))


def test_an_image_too_large_for_the_slot_is_refused(keys, folder):
    data = make_image(folder, keys[0], size=30_000)
    with pytest.raises(InvalidImage) as caught:
        inspect_image(data, slot_size=20_000)
    assert caught.value.reason == "too-large"


def test_a_foreign_key_is_refused_before_upload(keys, folder):
    ours, foreign, _ = keys
    data = make_image(folder, foreign, name="foreign")
    with pytest.raises(InvalidImage) as caught:
        inspect_image(data, key_hash=key_hash_of(ours.public_der))
    assert caught.value.reason == "foreign-key"


def test_a_pinned_key_requires_a_signature(keys, folder):
    data = make_image(folder, None, name="unsigned")
    assert inspect_image(data).signature_type is None
    with pytest.raises(InvalidImage) as caught:
        inspect_image(data, key_hash=key_hash_of(keys[0].public_der))
    assert caught.value.reason == "unsigned"


def test_a_signature_that_does_not_verify_is_refused(keys, folder):
    ours, foreign, _ = keys
    data = make_image(folder, foreign, name="foreign2")
    with pytest.raises(InvalidImage) as caught:
        inspect_image(data, public_key_der=ours.public_der)
    assert caught.value.reason == "bad-signature"


def test_magic_constant():
    assert IMAGE_MAGIC == 0x96F3B83D


@pytest.mark.parametrize("text, expected", [
    ("1.0.6", ImageVersion(1, 0, 6)), ("1.0.6.3", ImageVersion(1, 0, 6, 3)),
    ("1.0.6+3", ImageVersion(1, 0, 6, 3)), (" 2.1 ", ImageVersion(2, 1, 0)),
])
def test_versions_parse_and_order(text, expected):
    assert ImageVersion.parse(text) == expected
    assert ImageVersion.parse("1.0.5") < ImageVersion.parse("1.0.6") < ImageVersion.parse("1.0.10")


@pytest.mark.parametrize("text", ["", "1", "a.b", "1.2.3.4.5", "-1.0"])
def test_bad_versions_are_refused(text):
    with pytest.raises(ValueError):
        ImageVersion.parse(text)
