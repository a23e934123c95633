"""What the configuration models expect at each place of a YAML document.

The loader asks two questions of the models while it turns YAML nodes into
plain data: which type is expected at a location (to navigate), and how a
plain scalar there must be read (``text`` keeps the characters exactly as
written, ``auto`` resolves numbers, booleans and null). The reference
generator uses the same helpers to describe the models.
"""

from __future__ import annotations

import types
import typing
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel

ScalarKind = Literal["text", "auto"]


def strip_annotated(tp: Any) -> Any:
    """``Annotated[X, ...]`` as ``X``; any other type unchanged."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def union_members(tp: Any) -> list[Any]:
    """The members of a union (``None`` left out), or ``[tp]`` for any other type."""
    tp = strip_annotated(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members: list[Any] = []
        for member in typing.get_args(tp):
            if member is not type(None):
                members.extend(union_members(member))
        return members
    return [tp]


def is_model(tp: Any) -> bool:
    """Whether ``tp`` is a pydantic model class."""
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def child_type(tp: Any, key: str | int) -> Any | None:
    """The type expected at ``key`` inside a value of type ``tp``; ``None`` if unknown."""
    for member in union_members(tp):
        origin = typing.get_origin(member)
        if is_model(member) and isinstance(key, str):
            field = member.model_fields.get(key)
            return None if field is None else field.annotation
        if origin is list and isinstance(key, int):
            return typing.get_args(member)[0]
        if origin is dict and isinstance(key, str):
            return typing.get_args(member)[1]
    return None


def scalar_kind(tp: Any | None) -> ScalarKind:
    """How a plain scalar is read where ``tp`` is expected.

    Strings, string literals and decimals keep their text exactly as written,
    so that ``no`` stays ``"no"``, ``+14155550100`` keeps its plus sign and
    ``19.90`` keeps its cents; anything else resolves numbers and booleans.
    """
    if tp is None:
        return "auto"
    members = union_members(tp)
    if members and all(_is_textual(member) for member in members):
        return "text"
    return "auto"


def _is_textual(tp: Any) -> bool:
    if tp is str or tp is Decimal:
        return True
    if typing.get_origin(tp) is Literal:
        return all(isinstance(value, str) for value in typing.get_args(tp))
    return False
