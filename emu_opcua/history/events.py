"""Meter events, sans-IO: what happened to a meter, derived from what sync stores.

An event is a :class:`MeterEvent`: the meter, its **kind** (one of :data:`KINDS`, each an
event type of the EmuMeter nodeset), when it happened (unix seconds), a **key** naming
its source, and its fields (JSON-able, named as the event type's properties). The key
is what makes an event the same event whenever it is derived again: the store keeps one
event per (meter, kind, key), and the EventId clients see is a hash of the three
(:attr:`MeterEvent.event_id`), so the same event always has the same id, live and from
history, before and after a restart.

Sources, and their keys:

- **logbook entries** (:func:`logbook_events`): one ``logbook`` event per entry, with the
  settings before/after, the energies at the change and the datalog index. Key
  ``<serial>:<index>:<timestamp>``: a logbook re-read after a meter replacement or a
  rescan yields the same keys, so nothing is stored twice.
- **datalog status bits** (:func:`datalog_events`), key ``<series id>:<index>`` of the
  row: 0x20 (``power_outage``) and 0x01 (``clock_changed``) mark one row each: every row
  with the bit is an event; 0x40 (``clock_not_synchronised``) and 0x80
  (``logbook_full``) stay set on every row while the condition lasts: an event where the
  bit comes on (the row before did not have it). CT/VT/S0 bits (0x02-0x10) are the
  logbook's events (the logbook says what changed).
- **series** (:func:`series_event`): ``meter_replaced`` and ``index_reset`` when sync
  starts a new series, key ``series:<series id>``.
- **the gateway** (:func:`connection_event`): ``meter_lost`` and ``meter_regained``
  when the poller's connection state turns Disconnected and back, key
  ``<kind>:<time in ms>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from emu_opcua.meter.catalogue import BY_CODE
from emu_opcua.meter.datalog import DatalogRow, DatalogStatus
from emu_opcua.meter.logbook import LogbookEntry

__all__ = [
    "KINDS",
    "MeterEvent",
    "connection_event",
    "datalog_events",
    "event_id",
    "logbook_events",
    "series_event",
]

#: Every event kind, each with its EmuMeter event type's browse name.
KINDS: Mapping[str, str] = {
    "logbook": "LogbookEntryEventType",
    "power_outage": "PowerOutageEventType",
    "clock_changed": "ClockChangedEventType",
    "clock_not_synchronised": "ClockNotSynchronisedEventType",
    "logbook_full": "LogbookFullEventType",
    "meter_replaced": "MeterReplacedEventType",
    "index_reset": "IndexResetEventType",
    "meter_lost": "MeterLostEventType",
    "meter_regained": "MeterRegainedEventType",
}

#: Severity (1..1000, OPC 10000-5 BaseEventType) of each kind.
SEVERITY: Mapping[str, int] = {
    "logbook": 500, "power_outage": 600, "clock_changed": 400, "clock_not_synchronised": 300,
    "logbook_full": 500, "meter_replaced": 700, "index_reset": 700, "meter_lost": 800,
    "meter_regained": 300,
}

#: Datalog status bits that mark one row (every row with it is an event).
#: (plain ints: IntFlag arithmetic builds an enum member per operation, 100x slower)
_ROW_BITS = ((int(DatalogStatus.POWER_OUTAGE), "power_outage"), (int(DatalogStatus.CLOCK_CHANGED), "clock_changed"))
#: Datalog status bits that stay set while a condition lasts (an event where it comes on).
_STATE_BITS = ((int(DatalogStatus.CLOCK_NOT_SYNCHRONISED), "clock_not_synchronised"),
               (int(DatalogStatus.LOGBOOK_FULL), "logbook_full"))
#: Every bit an event is derived from: rows without any of them cost one test each.
EVENT_BITS = int(DatalogStatus.POWER_OUTAGE | DatalogStatus.CLOCK_CHANGED
                 | DatalogStatus.CLOCK_NOT_SYNCHRONISED | DatalogStatus.LOGBOOK_FULL)


def event_id(meter: str, kind: str, key: str) -> bytes:
    """The EventId of an event: 16 bytes of a hash of meter, kind and key."""
    return hashlib.blake2b(f"{meter}\x00{kind}\x00{key}".encode(), digest_size=16).digest()


def _check_kind(_instance: object, _attribute: object, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(KINDS)}")


@frozen
class MeterEvent:
    meter: str
    kind: str = field(validator=_check_kind)
    time: int  # unix seconds: when it happened (as the meter's clock or the gateway says)
    key: str  # its source, unique per (meter, kind)
    message: str
    fields: Mapping[str, Any] = {}  # the event type's own properties, JSON-able

    @property
    def event_id(self) -> bytes:
        return event_id(self.meter, self.kind, self.key)

    @property
    def severity(self) -> int:
        return SEVERITY[self.kind]


def _unix(dt) -> int:
    return int(dt.timestamp())


_ENERGY_CODES = ("active_energy_import_t1", "active_energy_import_t2",
                 "active_energy_export_t1", "active_energy_export_t2")


def logbook_events(meter: str, entries: Iterable[LogbookEntry]) -> list[MeterEvent]:
    """One ``logbook`` event per entry (see the module docstring)."""
    out = []
    quantities = [BY_CODE[c] for c in _ENERGY_CODES if c in BY_CODE]
    for e in entries:
        changed = []
        if (e.ct_primary, e.ct_secondary) != (e.ct_primary_before, e.ct_secondary_before):
            changed.append(f"CT {e.ct_primary_before}/{e.ct_secondary_before} -> {e.ct_primary}/{e.ct_secondary}")
        if (e.vt_primary, e.vt_secondary) != (e.vt_primary_before, e.vt_secondary_before):
            changed.append(f"VT {e.vt_primary_before}/{e.vt_secondary_before} -> {e.vt_primary}/{e.vt_secondary}")
        if e.pulse_value != e.pulse_value_before:
            changed.append(f"S0 {e.pulse_value_before} -> {e.pulse_value} pulses/kWh")
        if e.pulse_length_ms != e.pulse_length_ms_before:
            changed.append(f"S0 pulse {e.pulse_length_ms_before} -> {e.pulse_length_ms} ms")
        if e.timestamp_after != e.timestamp:
            changed.append(f"clock {e.timestamp:%Y-%m-%d %H:%M:%S} -> {e.timestamp_after:%Y-%m-%d %H:%M:%S} UTC")
        what = "; ".join(changed) or "settings recorded"
        fields: dict[str, Any] = {
            "MeterSerial": e.serial, "LogbookIndex": e.index, "DatalogIndex": e.datalog_index,
            "TimeAfterChange": _unix(e.timestamp_after),
            "CtPrimary": e.ct_primary, "CtPrimaryBefore": e.ct_primary_before,
            "CtSecondary": e.ct_secondary, "CtSecondaryBefore": e.ct_secondary_before,
            "VtPrimary": e.vt_primary, "VtPrimaryBefore": e.vt_primary_before,
            "VtSecondary": e.vt_secondary, "VtSecondaryBefore": e.vt_secondary_before,
            "S0PulseValue": e.pulse_value, "S0PulseValueBefore": e.pulse_value_before,
            "S0PulseLength": e.pulse_length_ms, "S0PulseLengthBefore": e.pulse_length_ms_before,
        }
        for q in quantities:
            fields[q.browse_name] = e.value(q)
        out.append(MeterEvent(meter, "logbook", _unix(e.timestamp), f"{e.serial}:{e.index}:{_unix(e.timestamp)}",
                              f"logbook entry {e.index}: {what}", fields))
    return out


_MESSAGES = {
    "power_outage": "power restored after an outage (datalog row {index})",
    "clock_changed": "the meter's clock was set (datalog row {index})",
    "clock_not_synchronised": "the meter's clock is not synchronised (from datalog row {index})",
    "logbook_full": "the logbook is full: further changes are not logged (from datalog row {index})",
}


def datalog_events(meter: str, series_id: int, rows: Sequence[DatalogRow],
                   previous_status: int | None = None) -> list[MeterEvent]:
    """Events from the status bits of ``rows`` (ascending by index, one series), given
    the status of the row before them (None: not known, a set state bit is then an
    event)."""
    out = []
    before = previous_status or 0
    for row in rows:
        status = int(row.status)
        if status & EVENT_BITS:
            for bit, kind in _ROW_BITS:
                if status & bit:
                    out.append(_row_event(meter, series_id, row, kind))
            for bit, kind in _STATE_BITS:
                if status & bit and not before & bit:
                    out.append(_row_event(meter, series_id, row, kind))
        before = status
    return out


def _row_event(meter: str, series_id: int, row: DatalogRow, kind: str) -> MeterEvent:
    return MeterEvent(meter, kind, _unix(row.timestamp), f"{series_id}:{row.index}",
                      _MESSAGES[kind].format(index=row.index),
                      {"MeterSerial": row.serial, "DatalogIndex": row.index, "DatalogStatus": int(row.status)})


def series_event(meter: str, series_id: int, time: int, *, serial: str, first_index: int,
                 previous_serial: str | None) -> MeterEvent:
    """``meter_replaced`` (another serial) or ``index_reset`` (the same) for a new series."""
    if previous_serial is not None and previous_serial != serial:
        return MeterEvent(meter, "meter_replaced", time, f"series:{series_id}",
                          f"meter replaced: serial {previous_serial} -> {serial}",
                          {"MeterSerial": serial, "PreviousSerial": previous_serial, "DatalogIndex": first_index})
    return MeterEvent(meter, "index_reset", time, f"series:{series_id}",
                      f"the datalog index was reset (meter {serial}, now at index {first_index})",
                      {"MeterSerial": serial, "DatalogIndex": first_index})


def connection_event(meter: str, lost: bool, time_ms: int, error: str = "") -> MeterEvent:
    """``meter_lost`` / ``meter_regained`` at ``time_ms`` (unix milliseconds)."""
    kind = "meter_lost" if lost else "meter_regained"
    message = f"the gateway lost the meter: {error}" if lost else "the gateway reaches the meter again"
    return MeterEvent(meter, kind, time_ms // 1000, f"{kind}:{time_ms}", message,
                      {"LastError": error} if lost else {})
