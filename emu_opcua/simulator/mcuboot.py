"""A simulated TCP module's two MCUboot slots and its SMP image/OS commands, pure.

No sockets, no clock: :mod:`emu_opcua.simulator.smp_server` feeds requests in and the
simulated meter asks :meth:`ModuleFirmware.reset` what happens on a reboot. What it
models, as MCUboot's swap upgrade does (the state lives in the image trailer):

- slot 0 runs the active, confirmed image; uploads go to slot 1. With both slots full
  (slot 1 holds any image) no upload starts until slot 1 is erased (the manual).
- ``test`` marks slot 1 pending; a reset then checks the image (hash and signature
  against the simulator's own test key, when one is configured), swaps it into slot 0
  and runs it unconfirmed; a bad image is erased and the old one keeps running.
- ``confirm`` makes the running image permanent; a reset before confirm swaps back.
- Replies in SMP v2 style (errors in an ``err`` map) or in the 2021 generation's v1
  style: upload errors inside a success reply's ``rc``, a successful erase as ``rc: 0``.
"""

from __future__ import annotations

import enum

import attrs
from attrs import frozen

from emu_opcua.firmware.image import ImageInfo, ImageVersion, InvalidImage, inspect_image

#: mcumgr's MGMT_ERR codes the device answers with (smp.error.MGMT_ERR).
EOK, EUNKNOWN, ENOMEM, EINVAL, ETIMEOUT, ENOENT, EBADSTATE, EMSGSIZE, ENOTSUP, ECORRUPT, EBUSY = range(11)


class ReplyStyle(enum.Enum):
    V1 = "v1"  # 2021 mcumgr generation: rc in success replies
    V2 = "v2"


@frozen
class SlotImage:
    data: bytes
    info: ImageInfo
    confirmed: bool = False
    pending: bool = False
    permanent: bool = False


@frozen
class SmpError:
    """A refused command: mcumgr's rc and a reason for the log."""

    rc: int
    reason: str


@frozen
class UploadProgress:
    off: int
    match: bool | None = None  # in the last reply: the upload matches its announced sha


@attrs.define
class _Upload:
    length: int
    sha: bytes | None
    buffer: bytearray


@attrs.define
class ModuleFirmware:
    """The module's flash: slot 0 (running) and slot 1 (upload target)."""

    slot_size: int
    public_key_der: bytes | None = None  # the simulator's test key; None: hash check only
    verify_at_upload: bool = False  # some builds check the signature as the upload ends
    slots: list[SlotImage | None] = attrs.field(factory=lambda: [None, None])
    _upload: _Upload | None = None
    boot_log: list[str] = attrs.field(factory=list)

    @classmethod
    def running(cls, image: bytes, *, slot_size: int, public_key_der: bytes | None = None,
                verify_at_upload: bool = False) -> ModuleFirmware:
        info = inspect_image(image, slot_size=slot_size)
        fw = cls(slot_size=slot_size, public_key_der=public_key_der, verify_at_upload=verify_at_upload)
        fw.slots[0] = SlotImage(image, info, confirmed=True, permanent=True)
        return fw

    @property
    def version(self) -> ImageVersion:
        return self.slots[0].info.version

    # --- image management ---------------------------------------------------------------
    def image_states(self) -> list[dict]:
        states = []
        for number, slot in enumerate(self.slots):
            if slot is None:
                continue
            state = {"slot": number, "version": str(slot.info.version), "hash": slot.info.hash,
                     "bootable": True}
            if slot.pending:
                state["pending"] = True
            if slot.confirmed:
                state["confirmed"] = True
            if number == 0:
                state["active"] = True
            if slot.permanent:
                state["permanent"] = True
            states.append(state)
        return states

    def upload(self, off: int, data: bytes, *, length: int | None = None, sha: bytes | None = None,
               image: int | None = None) -> UploadProgress | SmpError:
        if image not in (None, 0):
            return SmpError(EINVAL, f"image {image}: this module has one image pair")
        if off == 0:
            if length is None:
                return SmpError(EINVAL, "first chunk without len")
            upload = self._upload
            if upload is not None and sha is not None and upload.sha == sha and upload.length == length:
                # the same upload announced again (a client resuming): continue where it is
                return UploadProgress(len(upload.buffer))
            if self.slots[1] is not None:
                return SmpError(ENOMEM, "both slots hold an image: erase slot 1 first")
            if length > self.slot_size:
                return SmpError(EINVAL, f"image of {length} bytes does not fit the {self.slot_size}-byte slot")
            self._upload = _Upload(length, sha, bytearray())
        upload = self._upload
        if upload is None:
            # no upload in progress (the module rebooted): mcumgr answers with the offset
            # it expects, 0, and the client starts over with a first chunk
            return UploadProgress(0)
        if off != len(upload.buffer):
            return UploadProgress(len(upload.buffer))  # mcumgr answers with the offset it expects
        if off + len(data) > upload.length:
            return SmpError(EINVAL, "chunk runs past the announced length")
        upload.buffer += data
        if len(upload.buffer) < upload.length:
            return UploadProgress(len(upload.buffer))
        # complete: the image goes into slot 1 if it is an image at all
        blob = bytes(upload.buffer)
        self._upload = None
        match = None
        if upload.sha is not None:
            import hashlib

            match = hashlib.sha256(blob).digest() == upload.sha
            if not match:
                return SmpError(ECORRUPT, "uploaded data does not match the announced sha")
        try:
            info = inspect_image(blob, slot_size=self.slot_size,
                                 public_key_der=self.public_key_der if self.verify_at_upload else None)
        except InvalidImage as exc:
            return SmpError(EINVAL, f"not a valid image: {exc}")
        self.slots[1] = SlotImage(blob, info)
        return UploadProgress(upload.length, match)

    def test(self, hash_: bytes | None) -> SmpError | None:
        slot = self.slots[1]
        if slot is None or hash_ is None or slot.info.hash != hash_:
            if self.slots[0] is not None and self.slots[0].info.hash == hash_:
                return None  # testing the running image: nothing to do
            return SmpError(EINVAL, "no image with that hash in slot 1")
        self.slots[1] = attrs.evolve(slot, pending=True)
        return None

    def confirm(self, hash_: bytes | None) -> SmpError | None:
        running = self.slots[0]
        if hash_ is not None and running.info.hash != hash_:
            # confirming the image in slot 1 before it booted: MCUboot would install it
            # permanently unbooted; the module refuses (never confirm what has not booted)
            return SmpError(EBADSTATE, "only the running image can be confirmed")
        self.slots[0] = attrs.evolve(running, confirmed=True, permanent=True)
        if self.slots[1] is not None:  # the old image is no longer the fallback
            self.slots[1] = attrs.evolve(self.slots[1], confirmed=False)
        return None

    def erase(self, slot: int | None = None) -> SmpError | None:
        number = 1 if slot is None else slot
        if number != 1:
            return SmpError(EINVAL, "only slot 1 can be erased")
        target = self.slots[1]
        if target is not None and target.pending:
            return SmpError(EBADSTATE, "slot 1 is pending: it would be installed at the next reset")
        if not self.slots[0].confirmed:
            return SmpError(EBADSTATE, "the running image is not confirmed: slot 1 is its fallback")
        self.slots[1] = None
        self._upload = None
        return None

    # --- boot -----------------------------------------------------------------------------
    def reset(self) -> str:
        """What MCUboot does at the next boot; returns what happened, for the log."""
        self._upload = None
        primary, secondary = self.slots
        if secondary is not None and secondary.pending:
            try:
                inspect_image(secondary.data, slot_size=self.slot_size, public_key_der=self.public_key_der)
            except InvalidImage as exc:
                self.slots[1] = None
                outcome = f"slot 1 rejected at boot ({exc.reason}): erased, {primary.info.version} keeps running"
            else:
                self.slots[0] = attrs.evolve(secondary, pending=False, confirmed=False, permanent=False)
                self.slots[1] = attrs.evolve(primary, pending=False, permanent=False)
                outcome = f"swapped: {secondary.info.version} runs in test, {primary.info.version} is the fallback"
        elif not primary.confirmed and secondary is not None:
            # booted in test and not confirmed: MCUboot swaps back
            self.slots[0] = attrs.evolve(secondary, confirmed=True, permanent=True)
            self.slots[1] = attrs.evolve(primary, confirmed=False, pending=False)
            outcome = f"reverted: {secondary.info.version} runs again, {primary.info.version} was not confirmed"
        else:
            outcome = f"booted {primary.info.version}"
        self.boot_log.append(outcome)
        return outcome


# --- the image the simulated module runs at start -------------------------------------------
def build_image(body: bytes, version: ImageVersion, *, private_key=None, header_size: int = 0x200) -> bytes:
    """An MCUboot image as imgtool writes it (header, body, SHA256, KEYHASH, ECDSA
    signature), for the simulated module's running image; ``private_key``: a
    cryptography EC P-256 key (the simulator's own test key), None for hash only."""
    import hashlib
    import struct

    from emu_opcua.firmware.image import HEADER_FORMAT, IMAGE_MAGIC, TLV_ECDSA, TLV_INFO_MAGIC, TLV_KEYHASH, TLV_SHA256

    header = struct.pack(HEADER_FORMAT, IMAGE_MAGIC, 0, header_size, 0, len(body), 0,
                         version.major, version.minor, version.revision, version.build, 0)
    signed = header.ljust(header_size, b"\x00") + body
    digest = hashlib.sha256(signed).digest()
    tlvs = struct.pack("<BBH", TLV_SHA256, 0, len(digest)) + digest
    if private_key is not None:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        public = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        key_hash = hashlib.sha256(public).digest()
        signature = private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        tlvs += struct.pack("<BBH", TLV_KEYHASH, 0, len(key_hash)) + key_hash
        tlvs += struct.pack("<BBH", TLV_ECDSA, 0, len(signature)) + signature
    return signed + struct.pack("<HH", TLV_INFO_MAGIC, 4 + len(tlvs)) + tlvs


def public_key_der(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, password=None)


def test_key():
    """A fresh throwaway EC P-256 key: the simulator's own, never the maker's."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())
