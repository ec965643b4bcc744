"""Value quality policy: Good -> Uncertain (last usable) -> Bad after stale_after."""

from datetime import UTC, datetime

from emu_opcua.errors import HttpStatusError, MeterTimeout, MeterUnreachable, ParseError
from emu_opcua.gateway.health import ConnectionState, SourceHealth

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_new_source_is_connecting_and_good():
    h = SourceHealth(stale_after=10)
    assert h.state(0) is ConnectionState.CONNECTING
    assert h.quality(0) == "Good"


def test_failure_after_success_is_uncertain_then_bad():
    h = SourceHealth(stale_after=10)
    h.record_success(100.0, T0, 0.01)
    h.record_failure(101.0, MeterTimeout("no answer"), 2.0)
    assert h.quality(101.0) == "UncertainLastUsableValue"
    assert h.state(101.0) is ConnectionState.DEGRADED
    h.record_failure(109.0, MeterTimeout("no answer"), 2.0)
    assert h.quality(109.9) == "UncertainLastUsableValue"
    assert h.quality(110.0) == "BadNoCommunication"
    assert h.state(110.0) is ConnectionState.DISCONNECTED
    assert h.consecutive_failures == 2


def test_bad_status_follows_the_cause():
    h = SourceHealth(stale_after=5)
    h.record_success(0.0, T0, 0.01)
    h.record_failure(1.0, HttpStatusError("HTTP 500", 500), 0.1)
    assert h.quality(6.0) == "BadCommunicationError"
    h.record_failure(7.0, ParseError("bad JSON", where="meterdata.json"), 0.1)
    assert h.quality(7.0) == "BadDataEncodingInvalid"


def test_never_answered_is_bad_at_once_without_a_last_value():
    h = SourceHealth(stale_after=10)
    h.record_failure(0.0, MeterUnreachable("refused"), 0.0)
    # no last usable value exists, so Uncertain would be a lie
    assert h.quality(0.0) == "BadNoCommunication"
    assert h.state(0.0) is ConnectionState.CONNECTING
    assert h.state(10.0) is ConnectionState.DISCONNECTED


def test_success_resets_everything():
    h = SourceHealth(stale_after=10)
    h.record_success(0.0, T0, 0.01)
    h.record_failure(1.0, MeterUnreachable("refused"), 0.0)
    h.record_failure(20.0, MeterUnreachable("refused"), 0.0)
    assert h.quality(20.0) == "BadNoCommunication"
    h.record_success(21.0, T0, 0.02)
    assert h.quality(21.0) == "Good"
    assert h.consecutive_failures == 0
    assert h.state(21.0) is ConnectionState.CONNECTED
    assert "MeterUnreachable: refused" == h.error_text()


def test_a_slow_group_counts_staleness_from_its_first_failure():
    # polled once a minute: its last success was 50 s before the meter went away; its
    # value must not turn Bad at its first failure, but stale_after after it
    h = SourceHealth(stale_after=10, since_first_failure=True)
    h.record_success(0.0, T0, 0.01)
    h.record_failure(50.0, MeterUnreachable("refused"), 0.0)
    assert h.quality(50.0) == "UncertainLastUsableValue"
    assert h.quality(59.9) == "UncertainLastUsableValue"
    assert h.quality(60.0) == "BadNoCommunication"
    assert h.failing_since() == 50.0
    h.record_success(61.0, T0, 0.01)
    assert h.failing_since() is None and h.quality(61.0) == "Good"
