"""Checking the analytics API's parameters, without a database."""

from datetime import datetime, timezone

import pytest

from services.battles import params as p
from services.battles.params import Param
from services.battles.service import HEATMAP, SEARCH, TOP
from services.common.errors import ValidationFailed


def fields_of(params, specs) -> dict:
    with pytest.raises(ValidationFailed) as caught:
        p.parse(params, specs)
    return caught.value.fields


def test_defaults_filled_in():
    result = p.parse({}, SEARCH)
    assert result["page"] == 1 and result["limit"] == 20
    assert result["player"] is None and result["since"] is None


def test_query_strings_and_json_values_mean_the_same():
    from_query = p.parse({"page": "2", "limit": "5", "x": "-7", "pvp": "true"}, SEARCH)
    from_json = p.parse({"page": 2, "limit": 5, "x": -7, "pvp": True}, SEARCH)
    assert from_query == from_json
    assert from_query["x"] == -7 and from_query["pvp"] is True


@pytest.mark.parametrize("value", [True, "1.5", 2.0, "", " ", "ten", "1e3", "0x10", [], {}])
def test_integer_rejects_everything_else(value):
    assert fields_of({"limit": value}, SEARCH)["limit"][0] in ("param.integer", "param.repeated")


@pytest.mark.parametrize("name, value", [("limit", "0"), ("limit", "101"), ("page", "0"), ("page", "10001"),
                                         ("x", "40000"), ("x", "999999999999999999999"), ("page", "-" + "9" * 100)])
def test_bounds_named_in_the_message(name, value):
    key, values = fields_of({name: value}, SEARCH)[name]
    assert key == "param.range"
    assert set(values) == {"min", "max"}


def test_every_bad_parameter_reported_at_once():
    fields = fields_of({"limit": "x", "page": "-1", "colour": "red", "pvp": "maybe"}, SEARCH)
    assert set(fields) == {"limit", "page", "colour", "pvp"}
    assert fields["colour"][0] == "param.unknown"
    assert fields["pvp"][0] == "param.boolean"


def test_repeated_parameter_rejected():
    assert fields_of({"player": ["A", "B"]}, SEARCH)["player"][0] == "param.repeated"
    assert p.parse({"player": ["A"]}, SEARCH)["player"] == "A"


@pytest.mark.parametrize("text, expected", [
    ("2025-10-01", datetime(2025, 10, 1, tzinfo=timezone.utc)),
    ("2025-10-01T12:30:00Z", datetime(2025, 10, 1, 12, 30, tzinfo=timezone.utc)),
    ("2025-10-01T12:30:00", datetime(2025, 10, 1, 12, 30, tzinfo=timezone.utc)),
    ("2025-10-01T15:30:00+03:00", datetime(2025, 10, 1, 12, 30, tzinfo=timezone.utc)),
])
def test_datetimes_become_utc(text, expected):
    assert p.parse({"since": text}, SEARCH)["since"] == expected


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01", "2025-10-01T25:00", "1759276800", "2025-10-01X"])
def test_bad_datetime(text):
    assert fields_of({"since": text}, SEARCH)["since"][0] == "param.datetime"


def test_period_must_be_ordered():
    assert fields_of({"since": "2025-10-02", "until": "2025-10-01"}, SEARCH)["until"][0] == "param.order"
    assert fields_of({"since": "2025-10-02", "until": "2025-10-02"}, SEARCH)["until"][0] == "param.order"


def test_choice_lists_the_allowed_values():
    key, values = fields_of({"metric": "wins"}, TOP)["metric"]
    assert key == "param.choice"
    assert "survival_rate" in values["choices"]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", "Europe/Moscow\n", "", "A" * 80])
def test_unknown_time_zone(zone):
    assert fields_of({"tz": zone}, HEATMAP)["tz"][0] == "param.timezone"


def test_known_time_zone():
    assert p.parse({"tz": "Asia/Vladivostok"}, HEATMAP)["tz"] == "Asia/Vladivostok"


@pytest.mark.parametrize("value", ["", "a\x00b", "tab\there", "x" * 65, 5])
def test_text_rejects_control_characters_and_long_values(value):
    assert fields_of({"player": value}, SEARCH)["player"][0] == "param.text"


def test_not_a_mapping():
    with pytest.raises(ValidationFailed):
        p.parse(["limit", 5], SEARCH)


def test_path_values():
    assert p.battle_id("4000001") == 4000001
    assert p.identifier("Ёжик & Co", "login") == "Ёжик & Co"
    for bad in ("0", "-5", "abc", True, "1.0"):
        with pytest.raises(ValidationFailed):
            p.battle_id(bad)
    with pytest.raises(ValidationFailed):
        p.identifier("", "login")


def test_number_parameter():
    spec = {"score": Param("number", minimum=0, maximum=1)}
    assert p.parse({"score": "0.55"}, spec)["score"] == 0.55
    assert fields_of({"score": "1.5"}, spec)["score"][0] == "param.range"
    assert fields_of({"score": "NaN"}, spec)["score"][0] == "param.number"
