"""Geography and tag filters, with the reasons routing shows for a skipped buyer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callwhisper.domain.filters import Filters, TagRule


def rule(tag: str, op: str, value: object) -> TagRule:
    return TagRule.model_validate({"tag": tag, "op": op, "value": value})


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("==", "auto", "AUTO", True),
        ("==", 3, "3.0", True),
        ("!=", "auto", "home", True),
        ("in", ["CA", "NV"], "nv", True),
        ("not_in", ["CA", "NV"], "TX", True),
        (">", 64, "65", True),
        (">", 64, "64", False),
        ("<", 18, "17", True),
        ("<", 18, "abc", False),
        ("~", "^(yes|y)$", "yes", True),
        ("~", "^(yes|y)$", "no", False),
    ],
)
def test_tag_rule_operators(op: str, value: object, actual: str, expected: bool) -> None:
    assert rule("t", op, value).matches({"t": actual}) is expected


def test_missing_tag_fails_except_negative_operators() -> None:
    assert not rule("t", "==", "x").matches({})
    assert not rule("t", ">", 1).matches({})
    assert rule("t", "!=", "x").matches({})
    assert rule("t", "not_in", ["x"]).matches({})


@pytest.mark.parametrize(
    ("op", "value", "message"),
    [
        ("in", "CA", "operator in needs a list value"),
        ("==", ["a"], "operator == needs a single value, not a list"),
        (">", "old", "operator > needs a number, got 'old'"),
        ("~", "(", "invalid regular expression '\\('"),
    ],
)
def test_tag_rule_value_must_fit_its_operator(op: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule("t", op, value)


def test_state_filter_reason_lists_the_accepted_states() -> None:
    filters = Filters(states=["ca", "NV"])
    assert filters.rejection("CA", "415", None, {}) is None
    assert filters.rejection("TX", "512", None, {}) == "state TX not in [CA, NV]"
    assert filters.rejection(None, None, None, {}) == "state unknown"


def test_unknown_geography_passes_when_allowed() -> None:
    filters = Filters(states=["CA"], allow_unknown_geo=True)
    assert filters.rejection(None, None, None, {}) is None


def test_excluded_state_and_area_code() -> None:
    filters = Filters(exclude_states=["NY"], exclude_area_codes=["900"])
    assert filters.rejection("NY", "212", None, {}) == "state NY excluded"
    assert filters.rejection("CA", "900", None, {}) == "area code 900 excluded"
    assert filters.rejection("CA", "415", None, {}) is None


def test_area_code_and_zip_filters() -> None:
    filters = Filters(area_codes=["415", "628"], zips=["94103"])
    assert filters.rejection("CA", "510", "94103", {}) == "area code 510 not in [415, 628]"
    assert filters.rejection("CA", "415", "94110", {}) == "ZIP 94110 not accepted"
    assert filters.rejection("CA", "415", None, {}) == "ZIP unknown"


def test_tag_rule_reason_shows_the_rule_and_the_actual_value() -> None:
    filters = Filters(tags=[rule("age", ">", 64), rule("insured", "==", "yes")])
    assert filters.rejection(None, None, None, {"age": "70", "insured": "yes"}) is None
    young = filters.rejection(None, None, None, {"age": "40"})
    assert young == "tag rule age > 64 failed (age '40')"
    assert filters.rejection(None, None, None, {"age": "70"}) == (
        "tag rule insured == yes failed (insured missing)"
    )


def test_bad_state_and_area_codes_are_rejected() -> None:
    with pytest.raises(ValidationError, match="'CAL' is not a two-letter state code"):
        Filters(states=["CAL"])
    with pytest.raises(ValidationError, match="'41' is not a three-digit area code"):
        Filters(area_codes=["41"])
