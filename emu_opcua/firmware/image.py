"""MCUboot image checks (sans-IO): is this file an image the module can boot?

Layout (MCUboot ``bootutil/image.h``, little endian as imgtool writes by default)::

    header (ih_hdr_size bytes, 32 used)  magic 0x96f3b83d, load address, header size,
                                         protected TLV size, image size, flags,
                                         version (major.minor.revision+build)
    image body (ih_img_size bytes)
    protected TLV area (optional)        info magic 0x6908, total size, TLVs
    TLV area                             info magic 0x6907, total size, TLVs:
                                         SHA256 (0x10) of header + body + protected
                                         TLVs, KEYHASH (0x01) = SHA256 of the signing
                                         public key, the signature (ECDSA 0x22,
                                         ED25519 0x24, RSA 0x20/0x23)

The SHA256 TLV is the image's identity on the wire: mcumgr's ``image test HASH`` and
``image confirm HASH`` name it, ``image list`` reports it. It is not the sha256 of the
file. MCUboot checks the signature at boot; the gateway checks what it can before the
upload, so a damaged file or one signed with a foreign key never reaches the meter.
"""

from __future__ import annotations

import hashlib
import struct

from attrs import frozen

from emu_opcua.errors import FirmwareRejected

IMAGE_MAGIC = 0x96F3B83D
HEADER_FORMAT = "<IIHHII BBHI I"  # magic, load, hdr_size, prot_tlv_size, img_size, flags, version, pad
HEADER_USED = struct.calcsize(HEADER_FORMAT)  # 32
TLV_INFO_MAGIC = 0x6907
TLV_PROT_INFO_MAGIC = 0x6908

TLV_KEYHASH = 0x01
TLV_PUBKEY = 0x02
TLV_SHA256 = 0x10
TLV_RSA2048 = 0x20
TLV_ECDSA = 0x22
TLV_RSA3072 = 0x23
TLV_ED25519 = 0x24
SIGNATURE_TLVS = {TLV_RSA2048: "RSA2048", TLV_ECDSA: "ECDSA", TLV_RSA3072: "RSA3072", TLV_ED25519: "ED25519"}

#: Header flags an image for this module must not carry: the module boots plain images
#: from flash (an encrypted or RAM-load image is for another bootloader configuration).
FLAG_ENCRYPTED = 0x0000004 | 0x0000008
FLAG_NON_BOOTABLE = 0x0000010
FLAG_RAM_LOAD = 0x0000020


class InvalidImage(FirmwareRejected):
    """A firmware file failed a local check; ``reason`` is a short machine-readable cause."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@frozen(order=True)
class ImageVersion:
    major: int
    minor: int
    revision: int
    build: int = 0

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.revision}"
        return f"{text}+{self.build}" if self.build else text

    @classmethod
    def parse(cls, text: str) -> ImageVersion:
        """``"1.0.6"``, ``"1.0.6.3"`` or ``"1.0.6+3"`` (as status.json and SMP print them)."""
        main, _, build = text.strip().partition("+")
        parts = main.split(".")
        if build:
            parts.append(build)
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"not a version: {text!r}") from None
        if not 2 <= len(numbers) <= 4 or any(n < 0 for n in numbers):
            raise ValueError(f"not a version: {text!r}")
        numbers += [0] * (4 - len(numbers))
        return cls(*numbers)


@frozen
class Tlv:
    type: int
    value: bytes
    protected: bool


@frozen
class ImageInfo:
    """What the checks established about an image."""

    version: ImageVersion
    hash: bytes  # the SHA256 TLV: the image's identity for SMP
    size: int  # bytes of the whole file (what is uploaded)
    header_size: int
    image_size: int  # the body
    flags: int
    key_hash: bytes | None  # KEYHASH TLV, when present
    signature_type: str | None  # "ECDSA", "ED25519", "RSA2048", ... when signed
    tlvs: tuple[Tlv, ...]

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()

    @property
    def signed_region_end(self) -> int:
        """Offset where the hashed region (header, body, protected TLVs) ends."""
        protected = sum(4 + len(t.value) for t in self.tlvs if t.protected)
        return self.header_size + self.image_size + (4 + protected if protected else 0)


def _tlv_area(data: bytes, offset: int, magic: int, protected: bool) -> tuple[list[Tlv], int]:
    if offset + 4 > len(data):
        raise InvalidImage(f"image ends at byte {len(data)}, before its TLV area at {offset}", reason="truncated")
    info_magic, total = struct.unpack_from("<HH", data, offset)
    if info_magic != magic:
        raise InvalidImage(f"no TLV area at byte {offset} (magic 0x{info_magic:04x}, expected 0x{magic:04x})",
                           reason="tlv-magic")
    end = offset + total
    if end > len(data):
        raise InvalidImage(f"TLV area of {total} bytes at {offset} runs past the end of the file ({len(data)} bytes)",
                           reason="truncated")
    tlvs = []
    pos = offset + 4
    while pos < end:
        if pos + 4 > end:
            raise InvalidImage(f"TLV header at byte {pos} cut off by the end of the TLV area", reason="tlv-malformed")
        kind, _pad, length = struct.unpack_from("<BBH", data, pos)
        if pos + 4 + length > end:
            raise InvalidImage(f"TLV 0x{kind:02x} at byte {pos} ({length} bytes) runs past the TLV area",
                               reason="tlv-malformed")
        tlvs.append(Tlv(kind, bytes(data[pos + 4:pos + 4 + length]), protected))
        pos += 4 + length
    return tlvs, end


def inspect_image(data: bytes, *, slot_size: int | None = None, key_hash: bytes | None = None,
                  public_key_der: bytes | None = None) -> ImageInfo:
    """Check ``data`` as an MCUboot image and describe it; raise :class:`InvalidImage`.

    ``slot_size``: bytes the image may occupy (header through TLVs; MCUboot also needs
    its trailer at the end of the slot, which the caller includes in the figure it
    passes). ``key_hash``: the SHA256 of the one public key images must be signed with
    (the KEYHASH TLV must equal it). ``public_key_der``: when given, the signature is
    verified too (the simulator does this at "boot", as MCUboot would).
    """
    if len(data) < HEADER_USED:
        raise InvalidImage(f"{len(data)} bytes is too short for an MCUboot header ({HEADER_USED})", reason="truncated")
    (magic, _load, hdr_size, prot_size, img_size, flags,
     v_major, v_minor, v_rev, v_build, _pad) = struct.unpack_from(HEADER_FORMAT, data, 0)
    if magic != IMAGE_MAGIC:
        raise InvalidImage(f"not an MCUboot image (magic 0x{magic:08x}, expected 0x{IMAGE_MAGIC:08x})",
                           reason="magic")
    if hdr_size < HEADER_USED:
        raise InvalidImage(f"header size {hdr_size} is smaller than the header ({HEADER_USED})", reason="header")
    if flags & (FLAG_ENCRYPTED | FLAG_NON_BOOTABLE | FLAG_RAM_LOAD):
        raise InvalidImage(f"image flags 0x{flags:08x}: encrypted, RAM-load or non-bootable images cannot be "
                           "installed on this module", reason="flags")
    body_end = hdr_size + img_size
    if body_end > len(data):
        raise InvalidImage(f"header announces {img_size} bytes of image after {hdr_size} bytes of header, "
                           f"the file has {len(data)} bytes", reason="truncated")
    tlvs: list[Tlv] = []
    offset = body_end
    if prot_size:
        protected, offset = _tlv_area(data, offset, TLV_PROT_INFO_MAGIC, True)
        if offset - body_end != prot_size:
            raise InvalidImage(f"protected TLV area is {offset - body_end} bytes, the header says {prot_size}",
                               reason="tlv-malformed")
        tlvs += protected
    hashed_end = offset
    unprotected, end = _tlv_area(data, offset, TLV_INFO_MAGIC, False)
    tlvs += unprotected
    if end != len(data):
        raise InvalidImage(f"{len(data) - end} bytes after the TLV area", reason="trailing-data")
    if slot_size is not None and len(data) > slot_size:
        raise InvalidImage(f"image of {len(data)} bytes does not fit the {slot_size}-byte slot", reason="too-large")

    by_type: dict[int, bytes] = {}
    for tlv in tlvs:
        by_type.setdefault(tlv.type, tlv.value)
    stated = by_type.get(TLV_SHA256)
    if stated is None:
        raise InvalidImage("image has no SHA256 TLV (MCUboot cannot validate it)", reason="no-hash")
    actual = hashlib.sha256(data[:hashed_end]).digest()
    if stated != actual:
        raise InvalidImage(f"SHA256 TLV {stated.hex()} does not match the content ({actual.hex()}): the file is "
                           "damaged", reason="hash-mismatch")
    signature_tlv = next((t for t in tlvs if t.type in SIGNATURE_TLVS), None)
    image_key_hash = by_type.get(TLV_KEYHASH)
    if key_hash is not None:
        if signature_tlv is None:
            raise InvalidImage("image is not signed, a signed image is required", reason="unsigned")
        if image_key_hash != key_hash:
            found = image_key_hash.hex() if image_key_hash else "none"
            raise InvalidImage(f"image is signed with a different key (key hash {found}, expected "
                               f"{key_hash.hex()})", reason="foreign-key")
    info = ImageInfo(
        version=ImageVersion(v_major, v_minor, v_rev, v_build), hash=actual, size=len(data),
        header_size=hdr_size, image_size=img_size, flags=flags, key_hash=image_key_hash,
        signature_type=SIGNATURE_TLVS[signature_tlv.type] if signature_tlv else None, tlvs=tuple(tlvs),
    )
    if public_key_der is not None:
        verify_signature(data[:hashed_end], actual, signature_tlv, public_key_der)
    return info


def key_hash_of(public_key_der: bytes) -> bytes:
    """The KEYHASH TLV value for a public key (SHA256 of its DER bytes, as imgtool writes it)."""
    return hashlib.sha256(public_key_der).digest()


def verify_signature(signed: bytes, digest: bytes, signature: Tlv | None, public_key_der: bytes) -> None:
    """Verify an image signature as MCUboot does at boot; raise :class:`InvalidImage`.

    ``public_key_der``: SubjectPublicKeyInfo DER for EC and Ed25519 keys, PKCS#1 DER for
    RSA (what imgtool embeds into MCUboot, ``imgtool getpub --encoding der``).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    if signature is None:
        raise InvalidImage("image is not signed", reason="unsigned")
    try:
        try:
            key = serialization.load_der_public_key(public_key_der)
        except ValueError:  # RSA keys come as PKCS#1, not SubjectPublicKeyInfo
            key = _load_pkcs1_rsa(public_key_der)
        if signature.type == TLV_ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature.value, signed, ec.ECDSA(hashes.SHA256()))
        elif signature.type == TLV_ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature.value, digest)  # MCUboot's ed25519 signs the SHA256 digest
        elif signature.type in (TLV_RSA2048, TLV_RSA3072) and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature.value, signed, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                       hashes.SHA256())
        else:
            raise InvalidImage(f"signature type {SIGNATURE_TLVS[signature.type]} does not match the key",
                               reason="bad-signature")
    except InvalidSignature:
        raise InvalidImage("signature does not verify against the key", reason="bad-signature") from None


def _load_pkcs1_rsa(der: bytes):
    from cryptography.hazmat.primitives.serialization import load_der_public_key
    # PKCS#1 RSAPublicKey: wrap it in a SubjectPublicKeyInfo so cryptography can load it.
    algorithm = bytes.fromhex("300d06092a864886f70d0101010500")
    bit_string = b"\x03" + _der_length(len(der) + 1) + b"\x00" + der
    body = algorithm + bit_string
    return load_der_public_key(b"\x30" + _der_length(len(body)) + body)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw
