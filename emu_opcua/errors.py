"""Every error emu-opcua raises, one class per cause, grouped under a few bases.

Lower libraries' exceptions (httpx, pymodbus, json, csv) are translated into these at the
adapter boundary, so callers handle one hierarchy. ``STATUS_CODES`` maps each cause to
the OPC UA StatusCode name a value gets when its source fails that way.
"""

from __future__ import annotations


class EmuError(Exception):
    """Base of every error raised by emu-opcua."""


# --- talking to a meter ------------------------------------------------------------
class MeterCommunicationError(EmuError):
    """The meter could not be talked to."""


class MeterUnreachable(MeterCommunicationError):
    """The meter refused or dropped the connection, or its address does not resolve."""


class MeterTimeout(MeterCommunicationError):
    """The meter did not answer in time."""


class AuthenticationFailed(MeterCommunicationError):
    """The meter rejected the HTTP Basic credentials (HTTP 401)."""


class HttpStatusError(MeterCommunicationError):
    """The meter answered with an unexpected HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ModbusDisabled(MeterCommunicationError):
    """The meter's Modbus TCP server is switched off (status.json ``mbactive`` false)."""


class ModbusProtocolError(MeterCommunicationError):
    """The meter answered a Modbus request with an exception or a malformed response."""

    def __init__(self, message: str, *, exception_code: int | None = None) -> None:
        super().__init__(message)
        self.exception_code = exception_code  # the Modbus exception code, if the meter sent one


# --- what a meter sent -------------------------------------------------------------
class ParseError(EmuError):
    """Bytes from a meter (JSON, CSV, registers) could not be understood.

    ``where`` names the document and position (row, column or key) so an operator can
    find the offending input.
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


class TruncatedDataError(ParseError):
    """A CSV document ended in the middle of a row (the last line is incomplete)."""


class RegisterMapMismatch(EmuError):
    """Modbus values disagree with meterdata.json beyond tolerance: the register map is wrong."""


# --- configuration -----------------------------------------------------------------
class ConfigError(EmuError):
    """A configuration or register-map file is invalid; the message names file and field."""


class ListenError(EmuError):
    """The OPC UA server cannot listen where configured (port in use, address not on this machine)."""


# --- firmware ----------------------------------------------------------------------
class FirmwareRejected(EmuError):
    """The meter rejected a firmware image, or the image is not a valid mcuboot image."""


class SmpCommandRefused(FirmwareRejected):
    """The module answered an SMP (mcumgr) command with an error; ``rc`` is its code."""

    def __init__(self, message: str, *, command: str, rc: int, group: int | None = None) -> None:
        super().__init__(message)
        self.command = command
        self.rc = rc  # mcumgr's MGMT_ERR (v1) or the group's error code (v2)
        self.group = group  # the v2 error's group; None for v1 replies


class UpdatePreconditionFailed(FirmwareRejected):
    """The meter does not allow this update now (online update off, firmware too old, slots)."""


#: OPC UA StatusCode name for a value whose last poll failed with this error.
STATUS_CODES: dict[type[EmuError], str] = {
    MeterUnreachable: "BadNoCommunication",
    MeterTimeout: "BadTimeout",
    AuthenticationFailed: "BadUserAccessDenied",
    HttpStatusError: "BadCommunicationError",
    ModbusDisabled: "BadNotSupported",
    ModbusProtocolError: "BadCommunicationError",
    ParseError: "BadDataEncodingInvalid",
    TruncatedDataError: "BadDataEncodingInvalid",
    RegisterMapMismatch: "BadConfigurationError",
    ConfigError: "BadConfigurationError",
    FirmwareRejected: "BadInvalidArgument",
}


def status_code_name(error: BaseException) -> str:
    """The OPC UA StatusCode name for ``error``, most specific class first."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return "BadCommunicationError"
