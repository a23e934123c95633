"""Eligibility filters on a call's geography and tags."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import Field, field_validator, model_validator

from callwhisper.domain.base import Model

TagOperator = Literal["==", "!=", "in", "not_in", ">", "<", "~"]
TagValue = str | int | float | list[str | int | float]


class TagRule(Model):
    """A condition on one call attribute or tag, e.g. ``{tag: age, op: ">", value: 64}``.

    A missing tag fails every operator except ``!=`` and ``not_in``. ``>`` and
    ``<`` compare numbers; ``~`` matches a regular expression anywhere in the value.
    """

    tag: str = Field(min_length=1, description="Name of the tag or call attribute.")
    op: TagOperator = Field(description="Comparison: == != in not_in > < ~ (regex).")
    value: TagValue = Field(description="A value, a list for in/not_in, a pattern for ~.")

    @model_validator(mode="after")
    def _value_fits_operator(self) -> TagRule:
        value = self.value
        if self.op in ("in", "not_in"):
            if not isinstance(value, list):
                raise ValueError(f"operator {self.op} needs a list value")
            return self
        if isinstance(value, list):
            raise ValueError(f"operator {self.op} needs a single value, not a list")
        if self.op in (">", "<") and _number(value) is None:
            raise ValueError(f"operator {self.op} needs a number, got {value!r}")
        if self.op == "~":
            try:
                re.compile(str(value))
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return self

    def matches(self, tags: dict[str, str]) -> bool:
        """Whether the call's ``tags`` satisfy this rule."""
        actual = tags.get(self.tag)
        if actual is None:
            return self.op in ("!=", "not_in")
        value = self.value
        if isinstance(value, list):
            found = any(_equal(actual, v) for v in value)
            return found if self.op == "in" else not found
        if self.op in ("==", "!="):
            return _equal(actual, value) == (self.op == "==")
        if self.op == "~":
            return re.search(str(value), actual) is not None
        left, right = _number(actual), _number(value)
        if left is None or right is None:
            return False
        return left > right if self.op == ">" else left < right

    def describe(self) -> str:
        """The rule as text, e.g. ``age > 64``."""
        value = self.value
        shown = "[" + ", ".join(str(v) for v in value) + "]" if isinstance(value, list) else value
        return f"{self.tag} {self.op} {shown}"


def _number(value: str | int | float) -> Decimal | None:
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _equal(actual: str, expected: str | int | float) -> bool:
    if isinstance(expected, str):
        return actual.strip().lower() == expected.strip().lower()
    number = _number(actual)
    return number is not None and number == _number(expected)


def _upper_codes(values: list[str]) -> list[str]:
    return [v.strip().upper() for v in values]


class Filters(Model):
    """Which calls an owner takes, by geography and tags. Empty lists do not filter."""

    states: list[str] = Field(
        default_factory=list, description="Accepted states or provinces (two-letter codes)."
    )
    exclude_states: list[str] = Field(default_factory=list, description="Refused states.")
    area_codes: list[str] = Field(default_factory=list, description="Accepted area codes.")
    exclude_area_codes: list[str] = Field(default_factory=list, description="Refused area codes.")
    zips: list[str] = Field(default_factory=list, description="Accepted ZIP codes (when known).")
    allow_unknown_geo: bool = Field(
        default=False, description="Accept calls whose state/area code is unknown under geo lists."
    )
    tags: list[TagRule] = Field(default_factory=list, description="Every rule must match.")

    @field_validator("states", "exclude_states")
    @classmethod
    def _state_codes(cls, values: list[str]) -> list[str]:
        codes = _upper_codes(values)
        for code in codes:
            if len(code) != 2 or not code.isalpha():
                raise ValueError(f"{code!r} is not a two-letter state code")
        return codes

    @field_validator("area_codes", "exclude_area_codes")
    @classmethod
    def _area_codes(cls, values: list[str]) -> list[str]:
        for code in values:
            if len(code) != 3 or not code.isdigit():
                raise ValueError(f"{code!r} is not a three-digit area code")
        return values

    def rejection(
        self, state: str | None, area_code: str | None, zip_code: str | None, tags: dict[str, str]
    ) -> str | None:
        """``None`` if the call passes, else why not, e.g. ``state TX not in [CA, NV]``."""
        geography = self._listed("state", state, self.states, self.exclude_states) or self._listed(
            "area code", area_code, self.area_codes, self.exclude_area_codes
        )
        if geography is not None:
            return geography
        if self.zips:
            if zip_code is None:
                if not self.allow_unknown_geo:
                    return "ZIP unknown"
            elif zip_code not in self.zips:
                return f"ZIP {zip_code} not accepted"
        for rule in self.tags:
            if not rule.matches(tags):
                actual = tags.get(rule.tag)
                got = "missing" if actual is None else repr(actual)
                return f"tag rule {rule.describe()} failed ({rule.tag} {got})"
        return None

    def _listed(
        self, what: str, value: str | None, accepted: list[str], excluded: list[str]
    ) -> str | None:
        """Why ``value`` fails an accepted and an excluded list (both empty: it passes)."""
        if not (accepted or excluded):
            return None
        if value is None:
            return None if self.allow_unknown_geo else f"{what} unknown"
        if accepted and value not in accepted:
            return f"{what} {value} not in [{', '.join(accepted)}]"
        if value in excluded:
            return f"{what} {value} excluded"
        return None
