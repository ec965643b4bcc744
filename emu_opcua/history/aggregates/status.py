"""StatusCode values used by the aggregate engine, as plain ints (one place).

Values from OPC 10000-6 (StatusCode table; cross-checked against asyncua's
``ua.StatusCodes`` in tests/history/test_aggregates.py) and the historian information bits
of OPC 10000-11 6.3 (valid when the InfoType bits say DataValue, 0x400).
"""

from __future__ import annotations

GOOD = 0x00000000
UNCERTAIN = 0x40000000
BAD = 0x80000000
GOOD_NO_DATA = 0x00A50000
UNCERTAIN_DATA_SUB_NORMAL = 0x40A40000
BAD_NO_DATA = 0x809B0000
BAD_TYPE_MISMATCH = 0x80740000
BAD_AGGREGATE_NOT_SUPPORTED = 0x80D50000
BAD_AGGREGATE_INVALID_INPUTS = 0x80D60000
BAD_AGGREGATE_CONFIGURATION_REJECTED = 0x80DA0000

# InfoType (bits 10-11) DataValue: the low bits are historian bits
INFO_TYPE_DATA_VALUE = 0x400
# historian bits (OPC 10000-11 6.3)
CALCULATED = 0x1
INTERPOLATED = 0x2
PARTIAL = 0x4
EXTRA_DATA = 0x8
MULTI_VALUE = 0x10

SEVERITY_MASK = 0xC0000000
CODE_MASK = 0xFFFF0000
HISTORIAN_BITS_MASK = 0x1F


def is_bad(status: int) -> bool:
    return status & SEVERITY_MASK == BAD


def is_uncertain(status: int) -> bool:
    return status & SEVERITY_MASK == UNCERTAIN


def is_good(status: int) -> bool:
    return status & SEVERITY_MASK == GOOD


def code(status: int) -> int:
    """The code bits (severity, subcode) without info bits."""
    return status & CODE_MASK


def with_bits(status: int, bits: int) -> int:
    """``status`` with historian ``bits`` added (and InfoType DataValue when any is set)."""
    if not bits:
        return status
    return status | INFO_TYPE_DATA_VALUE | bits
