"""Pydantic's validation errors in plain words, at the right place.

``Input should be greater than or equal to 0`` becomes ``must be >= 0``;
a model-level error whose message starts with a sub-field
(``buyers[0].weight: must be > 0 ...``) moves to that sub-field; errors of
the members of a union become one message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from callwhisper.config.schema import child_type, is_model, union_members
from callwhisper.domain.configuration import Location

_SUBPATH = re.compile(r"((?:[A-Za-z_][A-Za-z0-9_]*)(?:\[\d+\]|\.[A-Za-z0-9_]+)*): (.+)", re.S)
_PATH_PART = re.compile(r"\[(\d+)\]|\.?([A-Za-z0-9_]+)")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _literal(ctx: Mapping[str, Any], value: Any) -> str:
    return f"must be {ctx['expected']}, not {value!r}"


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "date_type": "a date such as 2025-12-25",
    "date_parsing": "a date such as 2025-12-25",
    "date_from_datetime_parsing": "a date such as 2025-12-25",
    "date_from_datetime_inexact": "a date such as 2025-12-25",
}

_MESSAGES: dict[str, Callable[[Mapping[str, Any], Any], str]] = {
    "missing": lambda ctx, value: "required",
    "extra_forbidden": lambda ctx, value: "unknown field",
    "greater_than_equal": lambda ctx, value: f"must be >= {ctx['ge']}",
    "greater_than": lambda ctx, value: f"must be > {ctx['gt']}",
    "less_than_equal": lambda ctx, value: f"must be <= {ctx['le']}",
    "less_than": lambda ctx, value: f"must be < {ctx['lt']}",
    "too_short": lambda ctx, value: f"must have at least {_plural(ctx['min_length'], 'item')}",
    "too_long": lambda ctx, value: f"must have at most {_plural(ctx['max_length'], 'item')}",
    "string_too_short": lambda ctx, value: (
        "must not be empty"
        if ctx["min_length"] == 1
        else f"must have at least {_plural(ctx['min_length'], 'character')}"
    ),
    "string_too_long": lambda ctx, value: (
        f"must have at most {_plural(ctx['max_length'], 'character')}"
    ),
    "int_from_float": lambda ctx, value: f"must be a whole number, not {value!r}",
    "decimal_max_places": lambda ctx, value: (
        f"must have at most {_plural(ctx['decimal_places'], 'decimal place')}"
    ),
    "decimal_max_digits": lambda ctx, value: (
        f"must have at most {_plural(ctx['max_digits'], 'digit')}"
    ),
    "decimal_whole_digits": lambda ctx, value: (
        f"must have at most {_plural(ctx['whole_digits'], 'digit')} before the point"
    ),
    "finite_number": lambda ctx, value: "must be a finite number",
    "literal_error": _literal,
    "enum": _literal,
}


def friendly_message(error: ErrorDetails) -> str:
    """One pydantic error in our wording, without its location."""
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", error["msg"]))
        return message[len("Value error, ") :] if message.startswith("Value error, ") else message
    if kind in _MESSAGES:
        return _MESSAGES[kind](ctx, value)
    if kind in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[kind]}, not {_describe(value)}"
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def translate(error: ValidationError, root_type: Any, data: Any) -> list[tuple[Location, str]]:
    """Every error of ``error`` as (location, message), merged and folded into sub-fields."""
    merged: dict[Location, list[str]] = {}
    for item in error.errors(include_url=False):
        location, from_union = _clean_location(item["loc"], root_type, data)
        message = friendly_message(item)
        if item["type"] in ("value_error", "assertion_error"):
            location, message = _fold(location, message, root_type)
            location = _pinpoint(location, message, data)
        bucket = merged.setdefault(location, [])
        if from_union and bucket and message.startswith("must be "):
            bucket[-1] = _join_alternatives(bucket[-1], message)
        elif message not in bucket:
            bucket.append(message)
    return [(location, message) for location, messages in merged.items() for message in messages]


def _join_alternatives(first: str, second: str) -> str:
    head = first.split(", not ")[0].removeprefix("must be ")
    tail = second.split(", not ")
    options = [part.strip() for part in re.split(r",| or ", head) if part.strip()]
    options.append(tail[0].removeprefix("must be "))
    got = f", not {tail[1]}" if len(tail) > 1 else ""
    return f"must be {', '.join(options[:-1])} or {options[-1]}{got}"


def _clean_location(raw: tuple[str | int, ...], root_type: Any, data: Any) -> tuple[Location, bool]:
    """Drop the names pydantic gives union members (``str``, ``list[...]``) from a location."""
    location: list[str | int] = []
    tp: Any = root_type
    from_union = False
    for part in raw:
        if (
            tp is not None
            and len(union_members(tp)) > 1
            and isinstance(part, str)
            and not _has_key(data, part)
            and not _model_has_field(tp, part)
        ):
            from_union = True
            continue
        location.append(part)
        tp = child_type(tp, part) if tp is not None else None
        data = _child(data, part)
    return tuple(location), from_union


def _has_key(data: Any, key: str | int) -> bool:
    return isinstance(data, dict) and key in data


def _model_has_field(tp: Any, name: str) -> bool:
    return any(is_model(m) and name in m.model_fields for m in union_members(tp))


def _child(data: Any, key: str | int) -> Any:
    if isinstance(data, dict) and isinstance(key, str):
        return data.get(key)
    if isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
        return data[key]
    return None


def _type_at(root_type: Any, location: Location) -> Any:
    tp: Any = root_type
    for part in location:
        if tp is None:
            return None
        tp = child_type(tp, part)
    return tp


def _fold(location: Location, message: str, root_type: Any) -> tuple[Location, str]:
    """``buyers[0].weight: must be > 0`` at a tier becomes ``must be > 0`` at its weight."""
    match = _SUBPATH.fullmatch(message)
    if match is None:
        return location, message
    parts: list[str | int] = [
        int(index) if index else name for index, name in _PATH_PART.findall(match.group(1))
    ]
    here = _type_at(root_type, location)
    if not parts or not isinstance(parts[0], str) or not _model_has_field(here, parts[0]):
        return location, message
    return (*location, *parts), match.group(2)


def _pinpoint(location: Location, message: str, data: Any) -> Location:
    """Point at the one item a message quotes, e.g. ``'TEXAS' is not a two-letter state code``."""
    quoted = _QUOTED.match(message)
    if quoted is None:
        return location
    value = quoted.group(1)
    here = data
    for part in location:
        here = _child(here, part)
    found = [path for path, text in _scalars(here, ()) if text.strip().upper() == value.upper()]
    if len(found) != 1:
        found = [path for path, text in _scalars(here, ()) if value and value in text]
    return (*location, *found[0]) if len(found) == 1 else location


def _scalars(data: Any, path: Location) -> list[tuple[Location, str]]:
    if isinstance(data, dict):
        return [item for key, value in data.items() for item in _scalars(value, (*path, key))]
    if isinstance(data, list):
        return [item for i, value in enumerate(data) for item in _scalars(value, (*path, i))]
    return [(path, str(data))] if path else []
