"""The field reference of ``docs/configuration.md``, generated from the models.

``python -m callwhisper.config.reference`` prints it as Markdown;
``--update FILE`` replaces the generated part of FILE (between the
``BEGIN``/``END`` markers) and ``--check FILE`` exits 1 when it is stale.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from callwhisper.config.dump import dump_yaml, plain
from callwhisper.config.schema import is_model, union_members
from callwhisper.domain.base import Destination, Identifier, TimeZoneName
from callwhisper.domain.configuration import Configuration

BEGIN = "<!-- BEGIN GENERATED REFERENCE: python -m callwhisper.config.reference -->"
END = "<!-- END GENERATED REFERENCE -->"

_ALIASES: dict[int, str] = {
    id(marker): name
    for alias, name in (
        (Identifier, "id"),
        (TimeZoneName, "time zone"),
        (Destination, "destination"),
    )
    for marker in typing.get_args(alias)[1:]
}
_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Decimal: "decimal",
    date: "date",
}


def models_in_order(root: type[BaseModel] = Configuration) -> list[type[BaseModel]]:
    """``root`` and every model reachable from its fields, breadth first, each once."""
    found: list[type[BaseModel]] = [root]
    index = 0
    while index < len(found):
        for field in found[index].model_fields.values():
            for model in _models_of(field.annotation):
                if model not in found:
                    found.append(model)
        index += 1
    return found


def _models_of(tp: Any) -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = []
    for member in union_members(tp):
        if is_model(member):
            models.append(member)
        else:
            for arg in typing.get_args(member):
                models.extend(_models_of(arg))
    return models


def type_text(tp: Any, metadata: Sequence[Any] = ()) -> str:
    """A field's type in words: ``integer >= 0``, ``list of [Target](#target)``, ``id``."""
    constraints = list(metadata)
    while typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        tp, constraints = args[0], [*args[1:], *constraints]
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return _single(tp, constraints)
    members = [member for member in typing.get_args(tp) if member is not type(None)]
    text = " or ".join(type_text(member) for member in members)
    return f"{text}, optional" if len(members) < len(typing.get_args(tp)) else text


def _single(tp: Any, constraints: list[Any]) -> str:
    for item in constraints:
        if id(item) in _ALIASES:
            return _ALIASES[id(item)]
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(tp))
    if origin is list:
        return f"list of {type_text(typing.get_args(tp)[0])}" + _bounds(constraints, "items")
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"mapping of {type_text(key)} to {type_text(value)}"
    if is_model(tp):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    base = _SCALARS.get(tp, getattr(tp, "__name__", str(tp)))
    unit = "characters" if tp is str else ""
    return base + _bounds(constraints, unit)


def _bounds(constraints: list[Any], unit: str) -> str:
    parts: list[str] = []
    # A Field(...) inside Annotated carries its constraints in its own metadata.
    flat = [
        inner
        for item in constraints
        for inner in (item.metadata if isinstance(item, FieldInfo) else [item])
    ]
    for item in flat:
        for kind, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, kind, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"at least {_count(item.min_length, unit)}")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"at most {_count(item.max_length, unit)}")
        places = getattr(item, "decimal_places", None)
        if places is not None:
            parts.append(f"{places} decimal places")
    return f" ({', '.join(parts)})" if parts else ""


def _count(number: int, unit: str) -> str:
    if not unit:
        return str(number)
    return f"{number} {unit.removesuffix('s') if number == 1 else unit}"


def default_text(field: FieldInfo) -> str:
    """A field's default as YAML, or *required*."""
    if field.is_required():
        return "*required*"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if field.default is PydanticUndefined and isinstance(value, BaseModel):
        data = plain(value)
        return "all defaults" if not data else "`" + _inline(data) + "`"
    return "`" + _inline(plain(value)) + "`"


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return dump_yaml(value).removesuffix("\n...\n").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _summary(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    return " ".join(doc.split("\n\n")[0].split())


def generate() -> str:
    """The Markdown field reference of every configuration model."""
    lines: list[str] = []
    for model in models_in_order():
        lines += [f"### {model.__name__}", "", _summary(model), ""]
        lines += ["| Field | Type | Default | Description |", "| --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            cells = (
                f"`{name}`",
                type_text(field.annotation, field.metadata),
                default_text(field),
                field.description or "",
            )
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def replace_generated(document: str, reference: str) -> str:
    """``document`` with the text between the markers replaced by ``reference``."""
    head, begin, rest = document.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n\n{reference}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the reference, or update or check the generated part of a document."""
    parser = argparse.ArgumentParser(prog="python -m callwhisper.config.reference")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--update", type=Path, metavar="FILE", help="rewrite FILE's reference")
    group.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE is stale")
    options = parser.parse_args(argv)
    reference = generate()
    target: Path | None = options.update or options.check
    if target is None:
        sys.stdout.write(reference)
        return 0
    current = target.read_text(encoding="utf-8")
    wanted = replace_generated(current, reference)
    if options.update:
        target.write_text(wanted, encoding="utf-8")
        return 0
    if current != wanted:
        print(
            f"{target}: the generated reference is out of date; run with --update", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
