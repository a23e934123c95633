"""YAML 1.1 surprises do not corrupt values: plain scalars are read as the models expect."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from callwhisper.config import load_configuration_text
from tests.unit.config.helpers import MINIMAL, problems


def test_tracking_number_keeps_its_plus_sign_unquoted() -> None:
    text = MINIMAL.replace("number: '+18005550100'", "number: +18005550100")
    assert load_configuration_text(text).numbers[0].number == "+18005550100"


def test_norway_is_not_false() -> None:
    text = MINIMAL.replace(
        "    campaign: auto\n", "    campaign: auto\n    tags: {country: NO, opt_in: no}\n"
    )
    assert load_configuration_text(text).numbers[0].tags == {"country": "NO", "opt_in": "no"}


def test_on_and_off_stay_strings_where_strings_are_expected() -> None:
    text = MINIMAL.replace("  - id: acme\n", "  - id: acme\n    name: on\n")
    assert load_configuration_text(text).buyers[0].name == "on"


def test_unquoted_times_are_not_sexagesimal() -> None:
    text = MINIMAL.replace(
        "    conversion: {revenue: 40}\n",
        "    conversion: {revenue: 40}\n    schedule:\n      hours:\n"
        "        mon: [8:00-12:00, 13:00-17:30]\n",
    )
    schedule = load_configuration_text(text).buyers[0].schedule
    assert schedule is not None
    assert schedule.hours == {"mon": ["8:00-12:00", "13:00-17:30"]}


def test_money_keeps_its_exact_digits() -> None:
    text = MINIMAL.replace("revenue: 40", "revenue: 0.1")
    assert load_configuration_text(text).buyers[0].conversion.revenue == Decimal("0.1")


def test_ids_that_look_like_numbers_stay_strings() -> None:
    text = MINIMAL.replace("id: main", "id: 007")
    assert load_configuration_text(text).buyers[0].targets[0].id == "007"


def test_zip_codes_keep_leading_zeros() -> None:
    text = MINIMAL.replace(
        "    conversion: {revenue: 40}\n",
        "    conversion: {revenue: 40}\n    filters: {zips: [02134, 10001], area_codes: [212]}\n",
    )
    filters = load_configuration_text(text).buyers[0].filters
    assert filters is not None
    assert (filters.zips, filters.area_codes) == (["02134", "10001"], ["212"])


def test_numeric_ivr_answers_are_string_keys() -> None:
    text = MINIMAL.replace(
        "    routing:\n",
        "    ivr:\n      start: q\n      nodes:\n        - id: q\n          say: Press 1\n"
        "          branches: {1: {action: route}, 2: {action: hangup}}\n    routing:\n",
    )
    ivr = load_configuration_text(text).campaigns[0].ivr
    assert ivr is not None
    assert list(ivr.nodes[0].branches) == ["1", "2"]


def test_accept_key_may_be_written_as_a_number() -> None:
    text = MINIMAL.replace(
        "    routing:\n", "    whisper: {text: Hi, accept_key: 5}\n    routing:\n"
    )
    assert load_configuration_text(text).campaigns[0].whisper.accept_key == "5"


def test_dates_are_dates() -> None:
    text = MINIMAL.replace(
        "    conversion: {revenue: 40}\n",
        "    conversion: {revenue: 40}\n    schedule: {closed_dates: [2025-12-25]}\n",
    )
    schedule = load_configuration_text(text).buyers[0].schedule
    assert schedule is not None
    assert schedule.closed_dates == [date(2025, 12, 25)]


@pytest.mark.parametrize(("written", "value"), [("true", True), ("false", False), ("True", True)])
def test_booleans_are_true_and_false(written: str, value: bool) -> None:
    text = MINIMAL.replace("  - id: acme\n", f"  - id: acme\n    enabled: {written}\n")
    assert load_configuration_text(text).buyers[0].enabled is value


def test_tag_rule_numbers_stay_numbers() -> None:
    text = MINIMAL.replace(
        "    conversion: {revenue: 40}\n",
        "    conversion: {revenue: 40}\n    filters:\n      tags:\n"
        "        - {tag: age, op: '>', value: 64}\n        - {tag: answer, op: ==, value: '1'}\n",
    )
    filters = load_configuration_text(text).buyers[0].filters
    assert filters is not None
    assert [rule.value for rule in filters.tags] == [64, "1"]


def test_sexagesimal_is_not_an_integer() -> None:
    text = MINIMAL.replace("revenue: 40", "revenue: 1:30")
    assert problems(text) == [
        "cfg.yaml:3: buyers[0].conversion.revenue: must be a number, not '1:30'"
    ]


def test_explicit_str_tag_is_honoured() -> None:
    text = MINIMAL.replace("    campaign: auto\n", "    campaign: auto\n    tags: {n: !!str 5}\n")
    assert load_configuration_text(text).numbers[0].tags == {"n": "5"}


def test_explicit_int_tag_with_text_is_a_problem() -> None:
    text = MINIMAL.replace("revenue: 40", "revenue: !!int forty")
    assert problems(text) == ["cfg.yaml:3: buyers[0].conversion.revenue: 'forty' is not an integer"]
