"""Firmware update of the meter's TCP module, sans-IO.

The meter's module boots through MCUboot and is updated over mcumgr's SMP (UDP port
1337, manual "Firmware-Update"). What lives here never touches a socket:

    image.py     MCUboot image checks before anything is sent: magic, header, TLV area,
                 the SHA256 TLV against the content (that hash is what SMP calls the
                 image's hash), size against the slot, an optional pinned key hash
                 (KEYHASH TLV) and, given a public key, the signature

The SMP transport adapter lives in ``emu_opcua.clients``; the OPC UA mapping (DI
SoftwareUpdate) in ``emu_opcua.opcua``.
"""
