"""The meter's clock, estimated to a fraction of a second from the whole seconds it reports.

Pure arithmetic over wall-clock readings the caller passes in (epoch seconds, floats): no
I/O, no asyncio. Modbus values carry no time, so the gateway stamps them with its own
clock shifted by the meter clock's offset, learnt from ``meterdatetime`` in status.json
and meterdata.json. That field is a whole second: the meter's clock read ``s`` means it
was somewhere in ``[s, s + 1)``. Taking ``s`` as the time (``offset = s - now``) makes
every estimate up to a second early; a hysteresis of a second on top (the old code)
froze an estimate anywhere in that range, so Modbus SourceTimestamps ran a steady
fraction of a second to a second behind the meter's clock.

What a report proves: the request was sent at local ``sent`` and answered by
``received``; at some local moment ``t`` in between the meter's clock read a time in
``[s, s + 1)``. So the offset (meter minus local) lies in
``(s - received, s + 1 - sent)``. Each report gives such an interval; their intersection
holds the true offset. A report asked for when the estimated meter clock turns a whole
second halves the interval (the answer tells on which side of the estimate the true
offset is), so the poller times the extremes poll so while the estimate is coarse
(:meth:`MeterClock.delay_to_second`): a few polls pin the offset to a few ms. Between
reports the interval widens by ``drift`` (a quartz clock keeps well within 100 ppm); a
report outside it means the clock was set (NTP, a user): start again from that report.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from attrs import define

#: how far the meter's clock may drift against ours, seconds per second (100 ppm)
DRIFT = 100e-6


@define
class MeterClock:
    """Offset of the meter's clock against the local wall clock (mutable, one per meter)."""

    drift: float = DRIFT
    low: float = -math.inf  # the offset (meter - local, seconds) is in (low, high)
    high: float = math.inf
    _at: float = 0.0  # local time of the last report
    offset: float = 0.0  # the estimate: the middle of (low, high); 0 before any report
    steps: int = 0  # reports that contradicted the estimate (the clock was set)

    @property
    def known(self) -> bool:
        return math.isfinite(self.low)

    @property
    def uncertainty(self) -> float:
        """Half the width of the interval holding the offset (inf before any report)."""
        return (self.high - self.low) / 2.0

    def observe(self, meter_second: float, sent: float, received: float) -> bool:
        """A report of the meter's whole second ``meter_second`` by a request sent at
        local ``sent`` and answered by ``received``. Returns False when it contradicted
        the estimate (the meter's clock was set), True otherwise."""
        low, high = meter_second - received, meter_second + 1.0 - sent
        consistent = True
        if self.known:
            widen = self.drift * max(0.0, received - self._at)
            old_low, old_high = self.low - widen, self.high + widen
            if low < old_high and old_low < high:
                low, high = max(low, old_low), min(high, old_high)
            else:
                consistent = False
                self.steps += 1
        self.low, self.high, self._at = low, high, received
        self.offset = (low + high) / 2.0
        return consistent

    def delay_to_second(self, local: float) -> float:
        """Seconds from local time ``local`` until the estimated meter clock turns a whole
        second (0 <= delay < 1): a report asked for then halves the uncertainty."""
        return -(local + self.offset) % 1.0

    def meter_time(self, local: float) -> datetime:
        """The meter's clock at local wall-clock time ``local`` (epoch seconds)."""
        return datetime.fromtimestamp(local + self.offset, UTC)
