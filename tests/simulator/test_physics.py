"""The physics on its own: pure, deterministic, physically consistent."""

import math

import pytest

from emu_opcua.meter.datalog import DatalogStatus
from emu_opcua.simulator.physics import (
    COUNTER_CODES, MeterPhysics, PhysicsConfig,
    TariffSchedule,
)

START = 1718186850.0  # Wednesday 2024-06-12 10:07:30 UTC


def physics(seed=1, **kw):
    kw.setdefault("history_days", 2)
    return MeterPhysics(22350000, seed=seed, start=START, config=PhysicsConfig(**kw))


def test_deterministic_with_a_seed():
    a, b, c = physics(seed=5), physics(seed=5), physics(seed=6)
    for p in (a, b, c):
        p.advance_to(START + 3600)
    assert a.values() == b.values()
    assert a.row(a.last_index) == b.row(b.last_index)
    assert a.values() != c.values()


def test_history_on_record_at_start():
    p = physics(history_days=30)
    p.advance_to(START)
    assert p.row_count == 2880
    assert p.row_time(p.last_index) == int(START // 900) * 900


def test_datalog_index_contiguous_and_on_the_interval():
    p = physics()
    p.advance_to(START + 86400)
    times = [p.row(i).timestamp for i in range(1, p.last_index + 1)]
    assert [p.row(i).index for i in range(1, p.last_index + 1)] == list(range(1, p.last_index + 1))
    assert all(t % 900 == 0 for t in times)
    assert all(b - a == 900 for a, b in zip(times, times[1:]))
    # counters never run backwards
    rows = [p.row(i).raw[:8] for i in range(1, p.last_index + 1)]
    assert all(all(y >= x for x, y in zip(r0, r1)) for r0, r1 in zip(rows, rows[1:]))


def test_accelerated_run_produces_the_expected_rows():
    p = physics(history_days=0, datalog_interval=900)
    p.advance_to(START)
    assert p.row_count == 0
    p.advance_to(START + 365 * 86400)  # a year
    first = -(-int(START) // 900) * 900
    assert p.row_count == (int(START + 365 * 86400) - first) // 900 + 1
    assert p.row_count == 35040


def test_energy_is_the_integral_of_power():
    p = physics(seed=3)
    p.advance_to(START)
    t0 = p.time
    before = p.counters_wh()
    step = 15.0
    integral = 0.0
    prev = p.sample(t0)["active_power_total"]
    t = t0
    while t < t0 + 6 * 3600:
        t += step
        p.advance_to(t)
        now = p.sample(t)["active_power_total"]
        integral += 0.5 * (prev + now) * step / 3600.0
        prev = now
    after = p.counters_wh()
    net = (after[0] + after[1] - after[2] - after[3]) - (before[0] + before[1] - before[2] - before[3])
    assert net == pytest.approx(integral, rel=1e-3, abs=5)


def test_import_and_export_follow_the_sign_of_power():
    # find a meter with PV export at midday in June
    for seed in range(40):
        p = physics(seed=seed)
        p.advance_to(START + 3 * 3600)
        ext = p.extremes()["active_power_total"]
        if ext.minimum < 0:
            break
    else:
        pytest.fail("no meter of 40 exports")
    c = p.counters_wh()
    assert c[2] + c[3] > 0  # exported energy was counted
    assert ext.maximum > 0


def test_tariffs_split_and_totals_add_up():
    p = physics(seed=2)
    p.advance_to(START + 2 * 86400)
    v = p.values()
    for kind in ("active_energy_import", "active_energy_export", "reactive_energy_import",
                 "reactive_energy_export"):
        assert v[f"{kind}_t1"] + v[f"{kind}_t2"] == pytest.approx(v[f"{kind}_total"], abs=1e-9)
    # a weekend: only T2 grows
    sat = 1718445600.0  # Saturday 2024-06-15 10:00 UTC
    w = MeterPhysics(1, seed=2, start=sat, config=PhysicsConfig(history_days=0))
    w.advance_to(sat)
    c0 = w.counters_wh()
    w.advance_to(sat + 4 * 3600)
    c1 = w.counters_wh()
    assert c1[0] == c0[0] and c1[1] > c0[1]


def test_tariff_schedule():
    ts = TariffSchedule()
    assert ts.tariff(START) == 1  # Wednesday 10:07
    assert ts.tariff(1718164800.0) == 2  # Wednesday 04:00
    assert ts.tariff(1718445600.0) == 2  # Saturday 10:00


def test_power_factor_and_current_are_consistent():
    p = physics(seed=4)
    for k in range(50):
        t = START + k * 1234.5
        p.advance_to(t)
        v = p.values()
        for ph in ("l1", "l2", "l3"):
            P, Q, U = v[f"active_power_{ph}"], v[f"reactive_power_{ph}"], v[f"voltage_{ph}"]
            S = math.hypot(P, Q)
            assert v[f"power_factor_{ph}"] == pytest.approx(P / S)
            assert abs(v[f"current_{ph}"]) == pytest.approx(S * 1000 / U)
            assert math.copysign(1, v[f"current_{ph}"]) == math.copysign(1, P)
            assert 215 < U < 245
        assert v["active_power_total"] == pytest.approx(sum(v[f"active_power_{ph}"] for ph in ("l1", "l2", "l3")))
        assert v["current_total"] == pytest.approx(sum(v[f"current_{ph}"] for ph in ("l1", "l2", "l3")))
        assert 49.9 < v["frequency"] < 50.1


def test_extremes_bracket_the_values():
    p = physics(seed=7)
    for k in range(30):
        p.advance_to(START + k * 777)
        v = p.values()
        for code, e in p.extremes().items():
            assert e.minimum <= v[code] <= e.maximum, code
            assert e.minimum_time <= p.time and e.maximum_time <= p.time


def test_events_set_status_bits_and_logbook():
    p = physics()
    p.advance_to(START)
    n_log = p.logbook_count
    p.power_outage()
    p.change_ct_ratio(200, 5)
    fails = p.power_fail_count
    p.advance_to(START + 900)
    row = p.row(p.last_index)
    assert row.status == DatalogStatus.POWER_OUTAGE | DatalogStatus.CT_RATIO_CHANGED
    assert p.power_fail_count == fails
    assert p.logbook_count == n_log + 1
    entry = p.logbook_entry(p.logbook_count)
    assert entry.ct == (200, 100, 5, 5)
    assert entry.datalog_index == row.index
    p.clock_change(-30)
    assert p.clock_offset == -30
    p.advance_to(START + 1800 - 30)
    assert p.row(p.last_index).status == DatalogStatus.CLOCK_CHANGED
    p.advance_to(START + 2700)
    assert p.row(p.last_index).status == 0


def test_no_logbook_without_lp_variant():
    p = physics(logbook=False)
    p.advance_to(START)
    p.change_ct_ratio(200, 5)
    assert p.logbook_count == 0
    assert len(COUNTER_CODES) == 8


def _series(p, code, t0, seconds, step=60):
    out = []
    for k in range(0, seconds, step):
        p.advance_to(t0 + k)
        out.append(p.values()[code])
    return out


def _lag1_correlation(xs):
    n = len(xs)
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs)
    return sum((a - mean) * (b - mean) for a, b in zip(xs, xs[1:])) / var


def test_frequency_wanders_slowly_and_bounded_around_50_hz():
    p = physics(seed=11, history_days=0)
    f = _series(p, "frequency", START, 2 * 86400)
    assert all(49.94 < x < 50.06 for x in f)  # the grid's band, +-0.06 Hz
    assert max(f) - min(f) > 0.04  # it does wander
    assert abs(sum(f) / len(f) - 50.0) < 0.02
    # a random walk, not white noise: minute to minute, f moves little of its range
    assert _lag1_correlation(f) > 0.95
    assert sum(abs(b - a) for a, b in zip(f, f[1:])) / len(f) < 0.1 * (max(f) - min(f))


def test_each_phase_voltage_has_its_own_variation():
    p = physics(seed=12, history_days=2)
    p.advance_to(START)
    ext = p.extremes()
    lows = [(ext[f"voltage_l{i}"].minimum, ext[f"voltage_l{i}"].minimum_time) for i in (1, 2, 3)]
    highs = [(ext[f"voltage_l{i}"].maximum, ext[f"voltage_l{i}"].maximum_time) for i in (1, 2, 3)]
    assert len({v for v, _ in lows}) == 3 and len({t for _, t in lows}) == 3
    assert len({v for v, _ in highs}) == 3 and len({t for _, t in highs}) == 3
    # the datalog's voltage columns (0.1 V) differ between the phases row by row
    rows = [p.row(i).raw for i in range(1, p.last_index + 1)]
    u = [[r[17 + k] for r in rows] for k in range(3)]
    assert all(sum(a != b for a, b in zip(u[i], u[j])) > 0.9 * len(rows) for i, j in ((0, 1), (0, 2), (1, 2)))
    # ... and are not one curve shifted: their deviations from the mean correlate weakly
    dev = [[x - sum(col) / len(col) for x in col] for col in u]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        cov = sum(a * b for a, b in zip(dev[i], dev[j]))
        norm = math.sqrt(sum(a * a for a in dev[i]) * sum(b * b for b in dev[j]))
        assert cov / norm < 0.9
    for col in u:
        assert 2200 < sum(col) / len(col) < 2400  # around 230 V


def test_rows_keep_the_values_measured_when_they_were_written():
    p = physics(seed=3, history_days=10)
    p.advance_to(START + 1800)
    recent, deep = p.row(p.last_index), p.row(1)
    p.load_override = 5000.0  # a load step now must not rewrite the record
    p.advance_to(START + 2700)
    assert p.row(recent.index) == recent and p.row(1) == deep
    assert p.row(p.last_index).raw[8] == 5000  # column 13, active power L123 [W]
