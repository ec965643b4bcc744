"""Per-source health and the quality a value gets when its source fails.

Pure bookkeeping over an injected clock (monotonic seconds): no I/O, no asyncio.
The policy follows what SCADA users expect from a commercial gateway: a failed poll keeps
the last value as UncertainLastUsableValue; once the source has failed for longer than
``stale_after`` the value turns Bad (BadNoCommunication when the meter cannot be reached,
otherwise the cause's own StatusCode, e.g. BadCommunicationError).
"""

from __future__ import annotations

import enum
from datetime import datetime

from attrs import define

from emu_opcua.errors import MeterTimeout, MeterUnreachable, status_code_name

GOOD = "Good"
UNCERTAIN_LAST_USABLE = "UncertainLastUsableValue"


class ConnectionState(str, enum.Enum):
    CONNECTING = "Connecting"  # never answered yet
    CONNECTED = "Connected"  # last poll succeeded
    DEGRADED = "Degraded"  # failing, last values still usable (Uncertain)
    DISCONNECTED = "Disconnected"  # failing for longer than stale_after (Bad)


@define
class SourceHealth:
    """Health of one poll group of one meter (mutable, owned by that group's task)."""

    stale_after: float
    #: count staleness from the first failure rather than the last success: for a group
    #: polled once a minute (status, datalog) its last value was as current as its interval
    #: allows until it failed, and the poller makes it poll at once when the meter goes
    #: away; counted from its last success it would turn Bad at its first failure.
    since_first_failure: bool = False
    last_success: float | None = None  # monotonic
    last_success_utc: datetime | None = None
    first_failure: float | None = None  # monotonic time of the first failure in a row
    consecutive_failures: int = 0
    last_error: BaseException | None = None
    last_duration: float = 0.0  # seconds

    def record_success(self, now: float, now_utc: datetime, duration: float) -> None:
        self.last_success = now
        self.last_success_utc = now_utc
        self.first_failure = None
        self.consecutive_failures = 0
        self.last_duration = duration

    def record_failure(self, now: float, error: BaseException, duration: float) -> None:
        if self.consecutive_failures == 0:
            self.first_failure = now
        self.consecutive_failures += 1
        self.last_error = error
        self.last_duration = duration

    def is_stale(self, now: float) -> bool:
        """True once the source has been failing for longer than ``stale_after``."""
        if self.consecutive_failures == 0:
            return False
        since = self.failing_since()
        return since is not None and now - since >= self.stale_after

    def failing_since(self) -> float | None:
        """When the stale_after count started (monotonic), None while not failing."""
        if self.consecutive_failures == 0:
            return None
        if self.since_first_failure or self.last_success is None:
            return self.first_failure
        return self.last_success

    def quality(self, now: float) -> str:
        """StatusCode name for values from this source, as of ``now``."""
        if self.consecutive_failures == 0:
            return GOOD
        if not self.is_stale(now) and self.last_success is not None:
            return UNCERTAIN_LAST_USABLE
        error = self.last_error
        if isinstance(error, (MeterUnreachable, MeterTimeout)):
            return "BadNoCommunication"
        return status_code_name(error) if error is not None else "BadNoCommunication"

    def state(self, now: float) -> ConnectionState:
        if self.consecutive_failures == 0:
            return ConnectionState.CONNECTED if self.last_success is not None else ConnectionState.CONNECTING
        if self.last_success is None:
            return ConnectionState.DISCONNECTED if self.is_stale(now) else ConnectionState.CONNECTING
        return ConnectionState.DISCONNECTED if self.is_stale(now) else ConnectionState.DEGRADED

    def error_text(self) -> str:
        if self.last_error is None:
            return ""
        return f"{type(self.last_error).__name__}: {self.last_error}"
