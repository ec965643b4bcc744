"""How often each variable of a meter is refreshed: its MinimumSamplingInterval.

A variable's value changes only when the poll group that carries it polls the meter, so
the group's interval is the fastest rate at which the server can honestly sample it
(OPC 10000-3 5.6.2 MinimumSamplingInterval; OPC 10000-4 5.13.1.2 revised sampling
interval). The model writes it into every variable's MinimumSamplingInterval attribute,
per meter (meters may poll at different rates), and the subscription layer
(:mod:`emu_opcua.opcua.subscriptions`) revises a client's requested sampling interval to
no faster than that attribute.

Which group writes what mirrors ``emu_opcua.gateway.poller``:

- fast (``fast_interval``): the Modbus measurements;
- diagnostics: published after every group's poll, so as often as the fastest group
  (DeviceHealth too);
- extremes (``extremes_interval``): min/max with their times, the tariff energies only
  meterdata.json carries;
- cross-check (the larger of ``extremes_interval`` and ``crosscheck_interval``): counters
  read over Modbus with the cross-check (PowerFailCount);
- status (``status_interval``): identification, configuration, MeterTime;
- datalog (``datalog_interval``): quantities only the datalog carries;
- constant (0, "continuously"): properties fixed by the model (EngineeringUnits, EURange).
"""

from __future__ import annotations

from typing import Literal

from attrs import frozen

from emu_opcua.gateway.poller import (
    DATALOG_ONLY_CODES,
    METERDATA_ONLY_CODES,
    SLOW_MODBUS_CODES,
    PollSettings,
)
from emu_opcua.opcua.nodeset import Group, Member

UpdateGroup = Literal["fast", "diagnostics", "extremes", "crosscheck", "status", "datalog"]
#: MinimumSamplingInterval of values fixed by the model: they are current at any time.
CONSTANT_MS = 0.0

_STATUS_DIAGNOSTICS = frozenset({"MeterTime"})  # written with status.json


@frozen
class UpdateRates:
    """One meter's refresh interval per poll group, in milliseconds."""

    fast: float = 1000.0
    extremes: float = 5000.0
    crosscheck: float = 30000.0
    status: float = 60000.0
    datalog: float = 60000.0

    @classmethod
    def from_settings(cls, settings: PollSettings) -> UpdateRates:
        return cls(
            fast=1000.0 * settings.fast_interval,
            extremes=1000.0 * settings.extremes_interval,
            crosscheck=1000.0 * max(settings.extremes_interval, settings.crosscheck_interval),
            status=1000.0 * settings.status_interval,
            datalog=1000.0 * settings.datalog_interval,
        )

    def interval(self, group: UpdateGroup) -> float:
        if group == "diagnostics":
            # published after every group's poll: as often as the fastest of them
            return min(self.fast, self.extremes, self.status, self.datalog)
        return getattr(self, group)


def update_group(group: Group, member: Member) -> UpdateGroup:
    """The poll group whose polls change ``member``'s Value."""
    if member.extreme is not None or group.browse_name == "Extremes":
        return "extremes"
    if group.browse_name in ("Identification", "Configuration"):
        return "diagnostics" if member.browse_name == "DeviceHealth" else "status"
    code = member.quantity.code if member.quantity is not None else None
    if code in SLOW_MODBUS_CODES:
        return "crosscheck"
    if code in METERDATA_ONLY_CODES:
        return "extremes"
    if code in DATALOG_ONLY_CODES:
        return "datalog"
    if group.browse_name == "Diagnostics":
        return "status" if member.browse_name in _STATUS_DIAGNOSTICS else "diagnostics"
    return "fast"
