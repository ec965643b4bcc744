"""An evolving, physically consistent meter state: pure, deterministic, clock injected.

Nothing here reads a clock or touches a socket: the caller says what time it is
(:meth:`MeterPhysics.advance_to`) and asks for values. Given the same seed, start time,
configuration and sequence of times, the results are the same.

The model
---------
Every channel (P, Q and U per phase, f) is *piecewise linear* between knots whose values
are a pure function of (seed, knot time): a daily load profile (office or household),
weekend reduction, slow (quarter-hour) and fast (per-knot) noise, and, on about half of
the meters, a PV plant whose output can exceed the load, so that P turns negative
(export). Because P and Q are linear between knots, the energy counters are their exact
integrals (a zero crossing inside a segment is split analytically between import and
export), and the extremes of every derived value occur at knots.

Knots are every ``datalog_interval`` seconds over the history already on record at start
(cheap: 2880 knots for 30 days) and every ``step`` seconds (default 60 s) from then on.

Derived values: ``I = sign(P) * sqrt(P^2 + Q^2) / U`` per phase (the meter signs current by
the direction of active power; see the manual's negative ``i_min``), the total current is
the sum of the signed phase currents (as in the manual's example), ``PF = P / S`` (signed,
1.0 when S = 0), the neutral current is the magnitude of the phasor sum of the phase
currents.

Active import/export follow the sign of the total P (a netting three-phase meter);
reactive import/export the sign of the total Q. Tariff T1/T2 by :class:`TariffSchedule`
(UTC). Counters are kept in Wh/varh as floats and reported floored to whole Wh (a counter
shows completed units), so T1 + T2 = total exactly.

Datalog rows are stored as counters only (8 integers and a status byte per row); the
instantaneous columns are recomputed from the pure knot function when a row is served.

Time: the state's :attr:`~MeterPhysics.time` is the *true* (physical) time; the
meter's clock is that plus :attr:`~MeterPhysics.clock_offset`. Energy is integrated over
true time, datalog rows are written when the meter's clock passes a multiple of the
interval and carry the meter's clock as their timestamp. Setting the clock
(:meth:`~MeterPhysics.clock_change`) therefore only moves the timestamps: forward, no rows
are invented for the skipped intervals; backward, timestamps repeat while the index keeps
rising; energy counts at the real rate throughout; 0x01 marks the next row.

Datalog status bits, as a meter sets them:

- 0x01, 0x02, 0x04, 0x08, 0x10: the row of the interval in which the clock, the CT or VT
  ratio, the pulse length or the pulse value was changed (each change also appends a
  logbook entry on the LP variant, naming that row's index; the commissioning entry of
  the record marks row 1 with 0x02);
- 0x20: the first row after a power outage. During an outage
  (:meth:`~MeterPhysics.power_outage` with a duration) nothing is measured and no row is
  written; the meter is off the network (the fleet closes its ports);
- 0x40: every row written after a start (the simulator's start, the end of an outage, a
  factory reset) until the clock is synchronised, ``sync_delay`` seconds later (NTP);
- 0x80: every row written while the logbook is full (``logbook_capacity`` entries; later
  changes are not logged).

The datalog holds at most ``datalog_capacity`` rows (default about three years of
quarter hours, as reported from real meters); older rows drop out (a ring), the index
keeps rising, so :attr:`~MeterPhysics.first_index` grows. :meth:`~MeterPhysics.index_reset`
(a factory reset) clears the datalog and restarts the index at 1.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from typing import NamedTuple

from attrs import frozen

from emu_opcua.meter.catalogue import BY_CODE, CATALOGUE, WITH_EXTREMES
from emu_opcua.meter.datalog import DatalogStatus


_MASK = (1 << 64) - 1
_TWO_PI = 2.0 * math.pi
_COS120 = -0.5
_SIN120 = math.sqrt(3.0) / 2.0

#: Counter slots, in datalog column order (columns 5..12).
COUNTER_CODES = (
    "active_energy_import_t1", "active_energy_import_t2",
    "active_energy_export_t1", "active_energy_export_t2",
    "reactive_energy_import_t1", "reactive_energy_import_t2",
    "reactive_energy_export_t1", "reactive_energy_export_t2",
)
#: Derived instantaneous values, in the order of :class:`Sample`'s ``values`` tuple.
SAMPLE_CODES = (
    "active_power_total", "active_power_l1", "active_power_l2", "active_power_l3",
    "reactive_power_total", "reactive_power_l1", "reactive_power_l2", "reactive_power_l3",
    "current_total", "current_l1", "current_l2", "current_l3",
    "voltage_l1", "voltage_l2", "voltage_l3",
    "power_factor_l1", "power_factor_l2", "power_factor_l3",
    "frequency", "current_neutral",
)
_SAMPLE_INDEX = {code: i for i, code in enumerate(SAMPLE_CODES)}
#: Codes whose min/max (with time) the meter reports, and their slot in a Sample.
EXTREME_CODES = tuple(q.code for q in WITH_EXTREMES)
_EXTREME_SLOTS = tuple(_SAMPLE_INDEX[c] for c in EXTREME_CODES)


def _base_factor(code: str) -> float:
    """Divide a value in the physics' base unit (W, var, Wh, varh, A, V, Hz) by this to get
    it in the quantity's served unit."""
    unit = BY_CODE[code].unit
    return 1.0 if unit is None else unit.factor


def hash64(seed: int, t: int, channel: int) -> int:
    """splitmix64 of (seed, t, channel): a cheap, stateless, well-mixed 64-bit value."""
    x = (seed * 0x9E3779B97F4A7C15 + t * 0xD1B54A32D192ED03 + channel * 0x8CB92BA72F3D8DD7) & _MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _tri(bits: int) -> float:
    """Two 16-bit fields -> a triangular variate in (-1, 1) (mean 0)."""
    return ((bits & 0xFFFF) + ((bits >> 16) & 0xFFFF)) / 65535.0 - 1.0


@frozen
class TariffSchedule:
    """When T1 applies (UTC); T2 otherwise. Default: weekdays 06:00-22:00 UTC."""

    t1_start_hour: float = 6.0
    t1_end_hour: float = 22.0
    t1_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0

    def tariff(self, t: float) -> int:
        day, sec = divmod(int(t), 86400)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        hour = sec / 3600.0
        if weekday in self.t1_weekdays and self.t1_start_hour <= hour < self.t1_end_hour:
            return 1
        return 2

    def boundaries_every(self) -> int:
        """Tariff changes only on multiples of this many seconds."""
        g = 0
        for h in (self.t1_start_hour, self.t1_end_hour):
            g = math.gcd(g, int(round(h * 3600)) or 86400)
        return math.gcd(g, 86400)


@frozen
class LoadProfile:
    """What kind of installation a meter measures; drawn from the seed."""

    kind: str  # "office" or "household"
    base_w: float  # peak load, all phases
    pv_wp: float  # PV peak, 0 when none
    tan_phi: float  # Q/P of the load
    q_comp_var: float  # capacitor compensation (capacitive Q at low load)
    weights: tuple[float, float, float]  # share of the load per phase
    u_offset: float  # the feeder's voltage offset from 230 V

    @classmethod
    def from_seed(cls, seed: int) -> LoadProfile:
        h = [hash64(seed, 0x51, i) / 2.0**64 for i in range(8)]
        kind = "office" if h[0] < 0.5 else "household"
        base = (8_000.0 + 40_000.0 * h[1]) if kind == "office" else (3_000.0 + 9_000.0 * h[1])
        pv = base * (0.4 + 1.4 * h[2]) if h[3] < 0.55 else 0.0
        w = [0.8 + 0.4 * h[4], 0.8 + 0.4 * h[5], 0.8 + 0.4 * h[6]]
        s = sum(w)
        return cls(
            kind=kind, base_w=base, pv_wp=pv, tan_phi=0.2 + 0.4 * h[7],
            q_comp_var=base * 0.04 * h[2], weights=(w[0] / s, w[1] / s, w[2] / s),
            u_offset=-3.0 + 6.0 * h[5],
        )


#: Rows the datalog holds by default (older ones drop out): about three years of quarter
#: hours, as reported from real meters (the manual gives no figure).
DATALOG_CAPACITY = 3 * 365 * 96
#: Logbook entries held by default (the manual gives no figure); when full, rows carry
#: 0x80 and later changes are not logged.
LOGBOOK_CAPACITY = 4096
#: Days of history before the start that min/max cover (a meter's min/max are reset
#: from time to time; and a 3-year history is then cheap to build).
EXTREMES_DAYS = 30


@frozen
class PhysicsConfig:
    datalog_interval: int = 900  # seconds between datalog rows (on multiples of it)
    history_days: float = 30.0  # datalog already on record at start
    step: int = 60  # knot spacing after start, seconds
    tariffs: TariffSchedule = TariffSchedule()
    logbook: bool = True  # the "LP" variant (has a logbook)
    initial_ct: tuple[int, int] = (100, 5)
    initial_vt: tuple[int, int] = (1, 1)
    initial_pulse: tuple[int, int] = (1000, 40)  # pulses/kWh, pulse length ms
    #: Seconds after a start until the clock is NTP-synchronised (rows before: 0x40).
    sync_delay: float = 60.0
    datalog_capacity: int = DATALOG_CAPACITY
    logbook_capacity: int = LOGBOOK_CAPACITY

    def __attrs_post_init__(self) -> None:
        if self.datalog_interval <= 0 or self.step <= 0:
            raise ValueError("datalog_interval and step must be positive")
        if self.history_days < 0:
            raise ValueError("history_days must not be negative")
        if self.sync_delay < 0:
            raise ValueError("sync_delay must not be negative")
        if self.datalog_capacity < 1 or self.logbook_capacity < 1:
            raise ValueError("datalog_capacity and logbook_capacity must be at least 1")


class Sample(NamedTuple):
    """Instantaneous values at ``time`` in base units, ordered as :data:`SAMPLE_CODES`."""

    time: float
    values: tuple[float, ...]

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return self.values[_SAMPLE_INDEX[key]]
        return tuple.__getitem__(self, key)


class RowData(NamedTuple):
    """One datalog row in the meter's integers; columns 5..28 in ``raw``."""

    timestamp: int
    index: int
    status: int
    raw: tuple[int, ...]


class LogbookData(NamedTuple):
    timestamp: int
    timestamp_after: int
    index: int
    energies: tuple[int, int, int, int]  # Wh: import T1, T2, export T1, T2
    datalog_index: int
    ct: tuple[int, int, int, int]  # primary, primary before, secondary, secondary before
    vt: tuple[int, int, int, int]
    pulse_value: tuple[int, int]  # now, before
    pulse_length_ms: tuple[int, int]


@frozen
class Extreme:
    minimum: float
    minimum_time: float
    maximum: float
    maximum_time: float


def _datalog_layout() -> tuple[tuple[int, str, float, bool], ...]:
    """(raw slot, code, divisor from base unit to raw, is counter) for columns 5..28."""
    layout = []
    for q in CATALOGUE:
        if q.datalog is None or len(q.datalog.columns) != 1 or q.datalog.columns[0] < 5:
            continue
        divisor = q.datalog.unit.factor * q.datalog.scale
        layout.append((q.datalog.columns[0] - 5, q.code, divisor, q.code in COUNTER_CODES))
    return tuple(sorted(layout))


_LAYOUT = _datalog_layout()


class MeterPhysics:
    """One meter's state. Call :meth:`advance_to` with the meter time, then read."""

    def __init__(self, serial: int, *, seed: int, start: float,
                 config: PhysicsConfig = PhysicsConfig(), new_meter: bool = False) -> None:
        """``start``: the true time the meter starts (the history on record ends there);
        ``new_meter``: a meter fresh from the factory (counters at 0, no history)."""
        self.serial = int(serial)
        self.seed = int(seed) & _MASK
        self.config = config
        self.profile = LoadProfile.from_seed(self.seed)
        iv = config.datalog_interval
        self._iv = iv
        self._step = config.step
        n_hist = 0 if new_meter else int(config.history_days * 86400 // iv)
        self._coarse_end = int(start // iv) * iv if n_hist else int(start)
        t0 = self._coarse_end - (n_hist - 1) * iv if n_hist else float(start)
        self.start = float(start)
        self.time = float(t0)  # the state's true time
        self.clock_offset = 0.0  # the meter's clock minus the true time (clock_change)
        self._next_row = int(-(-t0 // iv) * iv)  # meter clock of the next row
        self._knot_cache: dict[int, tuple[float, ...]] = {}
        # counters (Wh/varh floats), COUNTER_CODES order; seeded with a plausible age
        h = [hash64(self.seed, 0xE0, i) / 2.0**64 for i in range(4)]
        if new_meter:
            self._counters = [0.0] * 8
            self.power_fail_count = 0
        else:
            age_h = 2000.0 + 20000.0 * h[0]
            imp = self.profile.base_w * 0.45 * age_h
            self._counters = [imp * 0.7, imp * 0.3,
                              self.profile.pv_wp * 0.05 * age_h * h[1] * 0.6,
                              self.profile.pv_wp * 0.05 * age_h * h[1] * 0.4,
                              imp * self.profile.tan_phi * 0.7, imp * self.profile.tan_phi * 0.3,
                              imp * 0.01 * h[2], imp * 0.005 * h[2]]
            self.power_fail_count = int(3 + 20 * h[3])
        # The datalog: parallel arrays, position 0 holds index ``_base``; the first
        # ``_start`` positions have dropped out of the ring (deleted in chunks).
        self._rows_counters = array("q")  # 8 per row
        self._rows_status = bytearray()
        self._rows_stamp = array("q")  # meter clock (the row's timestamp)
        self._rows_true = array("d")  # true time (the instantaneous columns' instant)
        self._base = 1
        self._start = 0
        self._pending_status = 0
        self._off_until = float("-inf")  # true time the power comes back (outage)
        # the last start (the history before it was synchronised) and when the clock is synced
        self._started_at = self.start
        self._unsynced_until = self.start + config.sync_delay
        self._extremes: list[list[float]] | None = None  # per EXTREME_CODES: min, tmin, max, tmax
        #: Min/max cover at most the last EXTREMES_DAYS of the history (cheap long histories).
        self._extremes_from = max(float(t0), self.start - EXTREMES_DAYS * 86400)
        #: Total active power forced by a "load step" (W), spread evenly over the phases;
        #: None follows the load profile. Lets a benchmark or a demo change a value at a
        #: known instant.
        self.load_override: float | None = None
        self.ct = config.initial_ct
        self.vt = config.initial_vt
        self.pulse = config.initial_pulse
        self._logbook: list[LogbookData] = []
        if config.logbook and n_hist:
            # the commissioning: CT ratio set from 5/5 in the first interval of the record
            self._logbook.append(LogbookData(
                int(t0) - 300, int(t0) - 300, 1, self._energies4(), 1,
                (self.ct[0], 5, self.ct[1], 5), (self.vt[0], self.vt[0], self.vt[1], self.vt[1]),
                (self.pulse[0], self.pulse[0]), (self.pulse[1], self.pulse[1]),
            ))
            self._pending_status |= DatalogStatus.CT_RATIO_CHANGED
        self._record_point(self._extremes_from)

    @property
    def meter_time(self) -> float:
        """The meter's clock at the state's time."""
        return self.time + self.clock_offset

    @property
    def powered(self) -> bool:
        """False during a power outage (the meter is off: no values, no network)."""
        return self.time >= self._off_until

    @property
    def power_back_at(self) -> float:
        """True time the current outage ends (in the past when there is none)."""
        return self._off_until

    @property
    def clock_synchronised(self) -> bool:
        return self.time >= self._unsynced_until

    # --- the knot function (pure) -------------------------------------------------
    def _knot(self, t: int) -> tuple[float, ...]:
        """(P1, P2, P3, Q1, Q2, Q3, U1, U2, U3, f) at knot time ``t`` (W, var, V, Hz)."""
        cache = self._knot_cache
        v = cache.get(t)
        if v is not None:
            return v
        prof = self.profile
        seed = self.seed
        day, sec = divmod(t, 86400)
        hour = sec / 3600.0
        weekday = (day + 3) % 7
        quarter = t // 900
        slow = hash64(seed, quarter, 1)
        fast = hash64(seed, t, 2)
        fast2 = hash64(seed, t, 3)
        # load profile, 0..1
        if prof.kind == "office":
            work = 0.5 - 0.5 * math.cos(_TWO_PI * (hour - 5.0) / 16.0) if 5.0 < hour < 21.0 else 0.0
            level = 0.25 + 0.75 * work * (0.35 if weekday >= 5 else 1.0)
        else:
            morning = math.exp(-((hour - 6.5) / 1.2) ** 2)
            evening = math.exp(-((hour - 18.5) / 2.2) ** 2)
            level = 0.18 + 0.35 * morning + 0.7 * evening + (0.15 if weekday >= 5 and 9 < hour < 17 else 0.0)
        level *= 1.0 + 0.25 * _tri(slow)
        load = prof.base_w * level
        # PV, symmetric over the phases
        pv = 0.0
        if prof.pv_wp:
            doy = (day % 365.25) / 365.25
            season = math.cos(_TWO_PI * (doy - 172.0 / 365.25))
            half = 6.0 + 2.0 * season
            x = (hour - (11.5 - half)) / (2.0 * half)
            if 0.0 < x < 1.0:
                clear = 0.35 + 0.65 * ((slow >> 32) & 0xFFFF) / 65535.0
                pv = prof.pv_wp * (0.6 + 0.4 * season) * math.sin(math.pi * x) ** 1.3 * clear
        w = prof.weights
        out = []
        for i in range(3):
            n = _tri(fast >> (16 * i)) if i < 2 else _tri((fast >> 32) ^ fast2)
            out.append(load * w[i] * (1.0 + 0.12 * n) - pv / 3.0)
        for i in range(3):
            n = _tri(fast2 >> (16 * i))
            lp = load * w[i]
            out.append(lp * prof.tan_phi * (1.0 + 0.1 * n) - prof.q_comp_var / 3.0)
        diurnal = 2.0 * math.sin(_TWO_PI * (hour - 4.0) / 24.0)
        for i in range(3):
            n = _tri((fast2 >> (16 * i + 8)) ^ (slow >> (8 * i)))
            out.append(230.0 + prof.u_offset + diurnal + 1.2 * n - 4.0e-5 * out[i] * 3.0)
        out.append(50.0 + 0.025 * _tri(fast >> 24) + 0.02 * math.sin(_TWO_PI * t / 1234.0))
        v = tuple(out)
        if len(cache) > 64:
            cache.clear()
        cache[t] = v
        return v

    def _prev_knot(self, t: float) -> int:
        c = self._coarse_end
        if t < c:
            return int(t // self._iv) * self._iv
        return max(c, int(t // self._step) * self._step)

    def _next_knot(self, t: float) -> int:
        """The first knot strictly after ``t``."""
        c = self._coarse_end
        if t < c:
            return min(c, (int(t // self._iv) + 1) * self._iv)
        return (int(t // self._step) + 1) * self._step

    def _raw(self, t: float) -> tuple[float, ...]:
        a = self._prev_knot(t)
        ka = self._knot(a)
        if t == a:
            raw = ka
        else:
            b = self._next_knot(t)
            kb = self._knot(b)
            x = (t - a) / (b - a)
            raw = tuple(p + (q - p) * x for p, q in zip(ka, kb))
        if self.load_override is not None:
            p = self.load_override / 3.0
            q = p * self.profile.tan_phi
            raw = (p, p, p, q, q, q) + tuple(raw[6:])
        return raw

    def sample(self, t: float) -> Sample:
        """Instantaneous values at meter time ``t`` (pure: does not change the state)."""
        p1, p2, p3, q1, q2, q3, u1, u2, u3, f = self._raw(t)
        i_ = []
        pf = []
        re = im = 0.0
        for k, (p, q, u) in enumerate(((p1, q1, u1), (p2, q2, u2), (p3, q3, u3))):
            s = math.hypot(p, q)
            cur = (s / u if u > 0 else 0.0)
            i_.append(cur if p >= 0 else -cur)
            pf.append(p / s if s > 0 else 1.0)
            # phasor of the current: phase angle of the voltage minus phi
            ang = -_TWO_PI * k / 3.0 - math.atan2(q, p)
            re += cur * math.cos(ang)
            im += cur * math.sin(ang)
        return Sample(t, (
            p1 + p2 + p3, p1, p2, p3, q1 + q2 + q3, q1, q2, q3,
            i_[0] + i_[1] + i_[2], i_[0], i_[1], i_[2], u1, u2, u3,
            pf[0], pf[1], pf[2], f, math.hypot(re, im),
        ))

    # --- time evolution ------------------------------------------------------------
    def advance_to(self, t: float) -> None:
        """Integrate up to true time ``t``; a ``t`` in the past is ignored."""
        t = float(t)
        while self.time < t:
            if self.time < self._off_until:  # power outage: nothing measured, no rows
                self.time = min(t, self._off_until)
                if self.time == self._off_until:
                    self._power_back()
                continue
            a = self.time
            row_at = self._next_row - self.clock_offset  # true time the next row is due
            b = min(self._next_knot(a), row_at, t)
            self._integrate(a, b)
            self.time = b
            if b == row_at:
                if b >= self._extremes_from:
                    self._record_point(b)
                self._log_row(b)
                self._next_row += self._iv
            elif (b == t and b != self._prev_knot(b)) or b < self._extremes_from:
                pass  # between knots: extremes are reached at knots, nothing to record
            else:
                self._record_point(b)

    def _power_back(self) -> None:
        """The end of an outage: the meter starts again (0x20 on its first row, the clock
        unsynchronised for ``sync_delay``); the intervals it missed get no rows."""
        self.power_fail_count = (self.power_fail_count + 1) & 0xFFFF
        self._pending_status |= DatalogStatus.POWER_OUTAGE
        self._started_at = self.time
        self._unsynced_until = self.time + self.config.sync_delay
        self._next_row = (int(self.meter_time // self._iv) + 1) * self._iv
        self._record_point(self.time)

    def _integrate(self, a: float, b: float) -> None:
        ra = self._raw(a)
        rb = self._raw(b)
        dt_h = (b - a) / 3600.0
        tariff = self.config.tariffs.tariff(a + self.clock_offset)  # by the meter's clock
        c = self._counters
        off = 0 if tariff == 1 else 1
        for base, pa, pb in ((0, ra[0] + ra[1] + ra[2], rb[0] + rb[1] + rb[2]),
                             (4, ra[3] + ra[4] + ra[5], rb[3] + rb[4] + rb[5])):
            if pa >= 0 and pb >= 0:
                c[base + off] += 0.5 * (pa + pb) * dt_h
            elif pa <= 0 and pb <= 0:
                c[base + 2 + off] -= 0.5 * (pa + pb) * dt_h
            else:  # zero crossing at fraction x
                x = pa / (pa - pb)
                first = 0.5 * pa * x * dt_h
                second = 0.5 * pb * (1.0 - x) * dt_h
                if pa > 0:
                    c[base + off] += first
                    c[base + 2 + off] -= second
                else:
                    c[base + 2 + off] -= first
                    c[base + off] += second

    def _record_point(self, t: float) -> None:
        s = self.sample(t).values
        ext = self._extremes
        mt = t + self.clock_offset  # extremes are stamped by the meter's clock
        if ext is None:
            self._extremes = [[s[k], mt, s[k], mt] for k in _EXTREME_SLOTS]
            return
        for e, k in zip(ext, _EXTREME_SLOTS):
            v = s[k]
            if v < e[0]:
                e[0] = v
                e[1] = mt
            if v > e[2]:
                e[2] = v
                e[3] = mt

    def _log_row(self, t: float) -> None:
        status = self._pending_status
        if self._started_at <= t < self._unsynced_until:
            status |= DatalogStatus.CLOCK_NOT_SYNCHRONISED
        if self.logbook_full:
            status |= DatalogStatus.LOGBOOK_FULL
        self._pending_status = 0
        self._rows_counters.extend(map(int, self._counters))
        self._rows_status.append(status & 0xFF)
        self._rows_stamp.append(self._next_row)
        self._rows_true.append(t)
        held = len(self._rows_status) - self._start
        if held > self.config.datalog_capacity:
            self._start += held - self.config.datalog_capacity
            if self._start >= max(1024, self.config.datalog_capacity // 8):
                k = self._start
                del self._rows_counters[: 8 * k]
                del self._rows_status[:k]
                del self._rows_stamp[:k]
                del self._rows_true[:k]
                self._base += k
                self._start = 0

    # --- reading ---------------------------------------------------------------------
    def counters_wh(self) -> tuple[int, ...]:
        """Energy counters at the state's time, whole Wh/varh, :data:`COUNTER_CODES` order."""
        return tuple(int(x) for x in self._counters)

    def _energies4(self) -> tuple[int, int, int, int]:
        c = self.counters_wh()
        return (c[0], c[1], c[2], c[3])

    def values(self) -> dict[str, float]:
        """Every quantity the meter reports, at the state's time, in the quantity's unit."""
        s = self.sample(self.time).values
        out: dict[str, float] = {}
        for code, v in zip(SAMPLE_CODES, s):
            out[code] = v / _base_factor(code)
        c = self.counters_wh()
        for code, v in zip(COUNTER_CODES, c):
            out[code] = v / _base_factor(code)
        for kind in ("active_energy_import", "active_energy_export",
                     "reactive_energy_import", "reactive_energy_export"):
            i = COUNTER_CODES.index(f"{kind}_t1")
            code = f"{kind}_total"
            out[code] = (c[i] + c[i + 1]) / _base_factor(code)
        out["meter_serial"] = float(self.serial)
        out["power_fail_count"] = float(self.power_fail_count)
        return out

    def extremes(self) -> dict[str, Extreme]:
        """Min/max since the start of the record, including the current value; times by
        the meter's clock."""
        assert self._extremes is not None
        s = self.sample(self.time).values
        out = {}
        for code, e, k in zip(EXTREME_CODES, self._extremes, _EXTREME_SLOTS):
            lo, tlo, hi, thi = e
            v = s[k]
            if v < lo:
                lo, tlo = v, self.meter_time
            if v > hi:
                hi, thi = v, self.meter_time
            f = _base_factor(code)
            out[code] = Extreme(lo / f, tlo, hi / f, thi)
        return out

    @property
    def row_count(self) -> int:
        """Rows the datalog holds now."""
        return len(self._rows_status) - self._start

    @property
    def first_index(self) -> int:
        """Index of the oldest row held (``last_index + 1`` when there is none)."""
        return self._base + self._start

    @property
    def last_index(self) -> int:
        """Index of the newest datalog row (``first_index - 1`` when there is none; 0
        before the first row)."""
        return self._base + len(self._rows_status) - 1

    def _position(self, index: int) -> int:
        if not self.first_index <= index <= self.last_index:
            raise IndexError(index)
        return index - self._base

    def row_time(self, index: int) -> int:
        """Timestamp (meter clock) of row ``index``."""
        return self._rows_stamp[self._position(index)]

    def row(self, index: int) -> RowData:
        """Datalog row ``index`` in the meter's integers (IndexError when not held)."""
        pos = self._position(index)
        s = self.sample(self._rows_true[pos]).values
        c = self._rows_counters[pos * 8: pos * 8 + 8]
        raw = [0] * 24
        for slot, code, divisor, is_counter in _LAYOUT:
            if is_counter:
                raw[slot] = c[COUNTER_CODES.index(code)]
            else:
                raw[slot] = int(round(s[_SAMPLE_INDEX[code]] / divisor))
        return RowData(self._rows_stamp[pos], index, self._rows_status[pos], tuple(raw))

    def rows(self, indices) -> Iterator[RowData]:
        for i in indices:
            yield self.row(i)

    @property
    def logbook_count(self) -> int:
        return len(self._logbook)

    def logbook_entry(self, index: int) -> LogbookData:
        if not 1 <= index <= len(self._logbook):
            raise IndexError(index)
        return self._logbook[index - 1]

    @property
    def logbook_full(self) -> bool:
        return self.config.logbook and len(self._logbook) >= self.config.logbook_capacity

    # --- events ------------------------------------------------------------------------
    def power_outage(self, duration_s: float = 0.0) -> None:
        """The meter loses power now for ``duration_s`` seconds (0: a blip): nothing is
        measured or logged meanwhile; then 0x20 on the first row, the counter + 1."""
        if duration_s < 0:
            raise ValueError("an outage cannot last a negative time")
        if not self.powered:
            self._off_until = max(self._off_until, self.time + duration_s)
            return
        if duration_s == 0:
            self._power_back()
        else:
            self._off_until = self.time + duration_s

    def clock_change(self, offset_s: float) -> None:
        """The meter's clock is set by ``offset_s``: only the clock moves (timestamps
        follow it, energy counts on), 0x01 on the next row, a logbook entry (LP)."""
        before = self.meter_time
        self.clock_offset += offset_s
        self._pending_status |= DatalogStatus.CLOCK_CHANGED
        self._next_row = (int(self.meter_time // self._iv) + 1) * self._iv
        self._append_logbook(int(before), int(self.meter_time))

    def index_reset(self) -> None:
        """A factory reset: the datalog is cleared and its index restarts at 1; the
        module restarts (clock unsynchronised for ``sync_delay``). Metering goes on."""
        self._rows_counters = array("q")
        self._rows_status = bytearray()
        self._rows_stamp = array("q")
        self._rows_true = array("d")
        self._base = 1
        self._start = 0
        self._pending_status = 0
        self._started_at = self.time
        self._unsynced_until = self.time + self.config.sync_delay

    def change_ct_ratio(self, primary: int, secondary: int) -> None:
        old = self.ct
        self.ct = (int(primary), int(secondary))
        self._pending_status |= DatalogStatus.CT_RATIO_CHANGED
        self._append_logbook(int(self.meter_time), int(self.meter_time), ct_before=old)

    def change_vt_ratio(self, primary: int, secondary: int) -> None:
        old = self.vt
        self.vt = (int(primary), int(secondary))
        self._pending_status |= DatalogStatus.VT_RATIO_CHANGED
        self._append_logbook(int(self.meter_time), int(self.meter_time), vt_before=old)

    def change_pulse(self, value: int | None = None, length_ms: int | None = None) -> None:
        old = self.pulse
        self.pulse = (old[0] if value is None else int(value),
                      old[1] if length_ms is None else int(length_ms))
        if self.pulse[0] != old[0]:
            self._pending_status |= DatalogStatus.PULSE_VALUE_CHANGED
        if self.pulse[1] != old[1]:
            self._pending_status |= DatalogStatus.PULSE_LENGTH_CHANGED
        self._append_logbook(int(self.meter_time), int(self.meter_time), pulse_before=old)

    def _append_logbook(self, t: int, t_after: int, *, ct_before=None, vt_before=None,
                        pulse_before=None) -> None:
        if not self.config.logbook or self.logbook_full:
            return
        ct_b = ct_before or self.ct
        vt_b = vt_before or self.vt
        pb = pulse_before or self.pulse
        self._logbook.append(LogbookData(
            t, t_after, len(self._logbook) + 1, self._energies4(), self.last_index + 1,
            (self.ct[0], ct_b[0], self.ct[1], ct_b[1]),
            (self.vt[0], vt_b[0], self.vt[1], vt_b[1]),
            (self.pulse[0], pb[0]), (self.pulse[1], pb[1]),
        ))
