import json
from datetime import datetime, timezone

import pytest

from emu_opcua.errors import ParseError
from emu_opcua.meter.catalogue import BY_METERDATA_KEY, WITH_EXTREMES
from emu_opcua.meter.meterdata import Extreme, Extremes, MeterData, format_meterdata, parse_meterdata

from .manual_examples import METERDATA_JSON


def utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def manual() -> dict:
    return json.loads(METERDATA_JSON)


def test_manual_example_values():
    md = parse_meterdata(METERDATA_JSON)
    assert md.meter_time == datetime(2023, 4, 18, 8, 59, 52, tzinfo=timezone.utc)
    assert set(md.values) == {q.code for q in BY_METERDATA_KEY.values()}
    assert md.values["active_energy_import_total"] == 306.722
    assert md.values["active_energy_import_t2"] == 0.0
    assert md.values["active_power_total"] == 6.973
    assert md.values["reactive_power_l1"] == 1.229
    assert md.values["current_l3"] == 11.374
    assert md.values["voltage_l2"] == 230.4
    assert md.values["power_factor_l1"] == 0.88
    assert md.values["frequency"] == 50.0


def test_manual_example_extremes():
    md = parse_meterdata(METERDATA_JSON)
    assert md.extremes is not None
    assert set(md.extremes) == {q.code for q in WITH_EXTREMES}
    assert md.extremes["active_power_total"] == Extremes(
        minimum=Extreme(-11.834, utc(1680628117)), maximum=Extreme(12.379, utc(1680457945))
    )
    assert md.extremes["voltage_l2"].maximum == Extreme(233.9, utc(1681400952))
    assert md.extremes["voltage_l1"].maximum.time == utc(1681400950)
    assert md.extremes["reactive_power_l3"].maximum == Extreme(1.304, utc(1679896832))
    assert md.extremes["frequency"].minimum == Extreme(49.8, utc(1679742136))
    assert md.extremes["power_factor_l3"].minimum.value == -1.0


def test_format_reproduces_manual_document():
    out = format_meterdata(parse_meterdata(METERDATA_JSON))
    assert isinstance(out, bytes)
    assert json.loads(out) == manual()  # same keys, same decimal strings, same ints
    assert list(json.loads(out)) == list(manual())  # in the manual's order


@pytest.mark.parametrize("show", [False, None])
def test_show_min_max_false_or_absent(show):
    doc = manual()
    if show is None:
        del doc["showMinMax"]
    else:
        doc["showMinMax"] = show
    md = parse_meterdata(json.dumps(doc))
    assert md.extremes is None
    assert md.values == parse_meterdata(METERDATA_JSON).values


def test_show_min_max_false_without_extreme_keys():
    doc = {k: v for k, v in manual().items() if "_act_e" in k or k.startswith("wpulse") or k == "meterdatetime"}
    md = parse_meterdata(json.dumps(doc))
    assert md.extremes is None and len(md.values) == len(BY_METERDATA_KEY)


def test_show_min_max_must_be_boolean():
    with pytest.raises(ParseError, match="showMinMax"):
        parse_meterdata(json.dumps(manual() | {"showMinMax": "true"}))


def test_timestamp_zero_or_missing_is_none():
    doc = manual()
    doc["ts_p_max_L1_e"] = 0
    del doc["ts_p_min_L1_e"]
    md = parse_meterdata(json.dumps(doc))
    assert md.extremes["active_power_l1"] == Extremes(Extreme(-4.049, None), Extreme(4.192, None))


def test_unknown_keys_tolerated():
    doc = manual() | {"x_new_value_e": "1.0", "nested": {"a": 1}, "ts_unknown": "no"}
    assert parse_meterdata(json.dumps(doc)) == parse_meterdata(METERDATA_JSON)


def test_missing_value_key_is_absent():
    doc = manual()
    del doc["q_L2_act_e"]
    md = parse_meterdata(json.dumps(doc))
    assert "reactive_power_l2" not in md.values
    assert md.values["reactive_power_l1"] == 1.229


@pytest.mark.parametrize("key", ["p_L1_act_e", "u_max_L3_e", "f_min_L123_e"])
@pytest.mark.parametrize("bad", ["abc", "", "1.2.3", "nan", "inf", "1,5", None, [1], True])
def test_non_numeric_value_named(key, bad):
    with pytest.raises(ParseError) as info:
        parse_meterdata(json.dumps(manual() | {key: bad}))
    assert key in info.value.where


def test_json_number_tolerated_and_signs_accepted():
    md = parse_meterdata(json.dumps(manual() | {"p_L1_act_e": 2.5, "p_L2_act_e": "-0.125", "p_L3_act_e": " 1 "}))
    assert (md.values["active_power_l1"], md.values["active_power_l2"], md.values["active_power_l3"]) == (2.5, -0.125, 1.0)


@pytest.mark.parametrize("bad", ["1681808392", 1.5, None, True])
def test_bad_meterdatetime(bad):
    with pytest.raises(ParseError, match="meterdatetime"):
        parse_meterdata(json.dumps(manual() | {"meterdatetime": bad}))


def test_missing_meterdatetime():
    doc = manual()
    del doc["meterdatetime"]
    with pytest.raises(ParseError, match="meterdatetime.*missing"):
        parse_meterdata(json.dumps(doc))


def test_bad_extreme_timestamp_named():
    with pytest.raises(ParseError, match="ts_i_max_L2_e"):
        parse_meterdata(json.dumps(manual() | {"ts_i_max_L2_e": "1680457945"}))


@pytest.mark.parametrize("text", ["", "{", '{"meterdatetime": 1,}', "[]", b"\x80"])
def test_malformed_json(text):
    with pytest.raises(ParseError, match="meterdata.json"):
        parse_meterdata(text)


def test_round_trip_without_extremes_and_rounding():
    md = MeterData(utc(1700000000), {"active_energy_import_total": 1234.5678, "voltage_l1": 229.96, "power_factor_l2": -0.876})
    out = json.loads(format_meterdata(md))
    assert out["wpulse_cnt_L123_e"] == "1234.568"
    assert out["u_L1_act_e"] == "230.0"
    assert out["pf_L2_act_e"] == "-0.88"
    assert out["showMinMax"] is False
    assert parse_meterdata(format_meterdata(md)).values == {
        "active_energy_import_total": 1234.568, "voltage_l1": 230.0, "power_factor_l2": -0.88,
    }


def test_values_are_read_only():
    md = parse_meterdata(METERDATA_JSON)
    with pytest.raises(TypeError):
        md.values["active_power_total"] = 1.0  # type: ignore[index]
