"""Writing a configuration as YAML that loads back to an equal configuration."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import yaml
from pydantic import BaseModel

from callwhisper.domain.configuration import Configuration

_FIRST_FIELDS = ("id", "number", "buyer")


def model_data(model: BaseModel) -> dict[str, Any]:
    """The fields of ``model`` that differ from their defaults, ids first, as plain data."""
    fields = type(model).model_fields
    names = sorted(fields, key=lambda name: name not in _FIRST_FIELDS)
    data: dict[str, Any] = {}
    for name in names:
        info = fields[name]
        value = getattr(model, name)
        if not info.is_required() and value == info.get_default(call_default_factory=True):
            continue
        data[name] = plain(value)
    return data


def plain(value: Any) -> Any:
    """A model value as dicts, lists and scalars (decimals and dates kept as they are)."""
    if isinstance(value, BaseModel):
        return model_data(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key, decimals written as numbers."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    text = format(value, "f")
    tag = "tag:yaml.org,2002:int" if "." not in text else "tag:yaml.org,2002:float"
    return dumper.represent_scalar(tag, text)


def _represent_date(dumper: yaml.SafeDumper, value: date) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:timestamp", value.isoformat())


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    # Short lists of scalars (states, hours, area codes) read best on one line.
    flow = bool(value) and not any(isinstance(item, dict | list) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # YAML reads NEL and the Unicode line separators as line breaks; only the
    # double-quoted style escapes them.
    if any(c in value for c in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(Decimal, _represent_decimal)
_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(date, _represent_date)


def dump_yaml(data: Any) -> str:
    """Plain data as readable block-style YAML, keys in the order given."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def dump_configuration(configuration: Configuration) -> str:
    """``configuration`` as YAML: defaults left out, ids first, sections in a fixed order.

    ``load_configuration_text(dump_configuration(c)) == c`` for every valid ``c``.
    """
    data = {"version": configuration.version, **model_data(configuration)}
    return dump_yaml(data)
