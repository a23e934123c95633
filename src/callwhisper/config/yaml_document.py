"""YAML text to plain data, keeping where every value was written.

PyYAML's composer gives a node tree with marks (line and column); this module
turns it into dicts, lists and scalars itself instead of using a constructor,
so that:

- every location (``("campaigns", 0, "routing")``) maps to its line;
- duplicate mapping keys are reported instead of silently overwritten;
- nesting (:data:`MAX_DEPTH`) and what aliases repeat
  (:data:`MAX_ALIAS_VALUES`) are bounded, so a hostile file is a problem
  reported, never a crash or a hang;
- plain scalars follow the models, not YAML 1.1: where a string is expected
  (ids, names, numbers dialed, times, money) the text is kept exactly as
  written, so ``no`` stays ``"no"``, ``08:00`` stays ``"08:00"``,
  ``+14155550100`` keeps its plus sign and ``19.90`` keeps its cents.
  Elsewhere only ``true``/``false``, ``null``/``~``, integers and decimal
  numbers are recognised (the YAML 1.2 core schema); ``yes``, ``on``,
  ``off``, sexagesimal numbers and timestamps are plain strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from callwhisper.config.schema import child_type, scalar_kind
from callwhisper.domain.configuration import Location

_PLAIN = "tag:callwhisper,2025:plain"
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

MAX_DEPTH = 64
"""Deepest nesting of lists and mappings read; a configuration needs about ten."""

MAX_ALIAS_VALUES = 100_000
"""Values that aliases may repeat in all: a few aliased schedules are far below it,
while nested aliases can otherwise make a short file expand without end."""

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT_RE = re.compile(r"[-+]?[0-9]+")
_HEX_RE = re.compile(r"0x[0-9a-fA-F]+")
_OCT_RE = re.compile(r"0o[0-7]+")
_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_SPECIAL_FLOATS = {
    ".inf": math.inf,
    ".Inf": math.inf,
    ".INF": math.inf,
    "+.inf": math.inf,
    "+.Inf": math.inf,
    "+.INF": math.inf,
    "-.inf": -math.inf,
    "-.Inf": -math.inf,
    "-.INF": -math.inf,
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
}


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the text: 1-based line and column."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class DocumentProblem:
    """A problem found while reading the YAML structure, before validation."""

    position: Position
    location: Location
    message: str


@dataclass
class Document:
    """Plain data read from YAML, and the position of every value and key in it."""

    data: Any
    values: dict[Location, Position] = field(default_factory=dict)
    keys: dict[Location, Position] = field(default_factory=dict)
    problems: list[DocumentProblem] = field(default_factory=list)

    def position(self, location: Location) -> Position:
        """Where ``location`` was written, or its nearest written ancestor."""
        while location:
            found = self.values.get(location)
            if found is not None:
                return found
            location = location[:-1]
        return self.values.get((), Position(1, 1))

    def key_position(self, location: Location) -> Position:
        """Where the key of ``location`` was written, else where its value was."""
        return self.keys.get(location) or self.position(location)


class YamlSyntaxError(Exception):
    """The text is not YAML; carries the position the parser stopped at."""

    def __init__(self, message: str, position: Position) -> None:
        self.message = message
        self.position = position
        super().__init__(f"{position.line}:{position.column}: {message}")


class _Resolver(BaseResolver):
    # Plain scalars get a tag of their own: they are resolved later, knowing
    # what the model expects there. Quoted scalars stay strings.
    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is SequenceNode else _MAP


class _Composer(Reader, Scanner, Parser, Composer, _Resolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        # PyYAML composes recursively: bound the depth before Python's stack runs out.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                self.check_event()  # makes the next event current, for its position
                raise ComposerError(None, None, _too_deep(), self.current_event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _too_deep() -> str:
    return f"lists and mappings nested more than {MAX_DEPTH} levels deep"


def compose(text: str) -> Node | None:
    """The node tree of a single YAML document, or ``None`` for an empty text."""
    try:
        # The reader refuses control characters as soon as it is made.
        composer = _Composer(text)
    except ReaderError as error:
        raise YamlSyntaxError(_unprintable(error), _offset_position(text, error.position)) from None
    try:
        return composer.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = (error.problem or "").removeprefix("but ")
        message = problem or error.context or "invalid YAML"
        if error.context and problem:
            message = f"{problem} ({error.context})"
        position = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        raise YamlSyntaxError(message, position) from None
    except yaml.YAMLError as error:
        raise YamlSyntaxError(str(error), Position(1, 1)) from None
    finally:
        composer.dispose()


def _unprintable(error: ReaderError) -> str:
    # For text (not bytes) the reader gives the character's code point.
    return f"unacceptable character #x{error.character:04x}: {error.reason}"


def _offset_position(text: str, offset: int) -> Position:
    """The line and column of the character at ``offset`` in ``text``."""
    line_start = text.rfind("\n", 0, offset) + 1
    return Position(text.count("\n", 0, offset) + 1, offset - line_start + 1)


def read_document(text: str, root_type: Any) -> Document:
    """Parse ``text`` into plain data shaped for ``root_type``; raises YamlSyntaxError."""
    node = compose(text)
    if node is None:
        return Document(data=None)
    document = Document(data=None)
    document.data = _Builder(document).build(node, root_type, ())
    return document


def _position(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, document: Document) -> None:
        self.document = document
        self.active: set[int] = set()
        self.built: set[int] = set()
        self.repeated = 0

    def problem(self, node: Node, location: Location, message: str) -> None:
        self.document.problems.append(DocumentProblem(_position(node), location, message))

    def build(self, node: Node, tp: Any, location: Location) -> Any:
        self.document.values.setdefault(location, _position(node))
        if id(node) in self.active:
            self.problem(node, location, "an alias refers to itself")
            return None
        # An alias is the node it names, built again where it is used.
        if id(node) in self.built:
            self.repeated += 1
            if self.repeated > MAX_ALIAS_VALUES:
                raise YamlSyntaxError(
                    f"aliases repeat more than {MAX_ALIAS_VALUES:,} values", _position(node)
                )
        self.built.add(id(node))
        if len(location) > MAX_DEPTH:
            raise YamlSyntaxError(_too_deep(), _position(node))
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, tp, location)
            if isinstance(node, SequenceNode):
                return self.sequence(node, tp, location)
            return self.scalar(node, tp, location)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: MappingNode, tp: Any, location: Location) -> Any:
        if node.tag != _MAP:
            self.problem(node, location, f"unsupported YAML tag {node.tag}")
        result: dict[str, Any] = {}
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problem(
                    key_node, location, "a key must be a plain value, not a list or mapping"
                )
                continue
            key = key_node.value
            if key == "<<" and key_node.tag == _PLAIN:
                self.problem(
                    key_node,
                    location,
                    "merge keys (<<) are not supported; use an alias (*name) of a whole value",
                )
                continue
            if key in first_lines:
                self.problem(
                    key_node,
                    (*location, key),
                    f"duplicate key {key!r} (first on line {first_lines[key]})",
                )
                continue
            first_lines[key] = key_node.start_mark.line + 1
            self.document.keys[(*location, key)] = _position(key_node)
            result[key] = self.build(value_node, child_type(tp, key), (*location, key))
        return result

    def sequence(self, node: SequenceNode, tp: Any, location: Location) -> Any:
        if node.tag != _SEQ:
            self.problem(node, location, f"unsupported YAML tag {node.tag}")
        return [
            self.build(item, child_type(tp, index), (*location, index))
            for index, item in enumerate(node.value)
        ]

    def scalar(self, node: Node, tp: Any, location: Location) -> Any:
        text: str = node.value
        tag = node.tag
        if tag == _PLAIN:
            if text in _NULLS:
                return None
            if scalar_kind(tp) == "text":
                return text
            return _resolve_plain(text)
        if tag == _STR:
            return text
        if tag in _EXPLICIT:
            value = _resolve_plain(text)
            accepts, what = _EXPLICIT[tag]
            if accepts(value):
                return float(value) if tag == _FLOAT else value
            self.problem(node, location, f"{text!r} is not {what}")
            return text
        self.problem(node, location, f"unsupported YAML tag {tag}")
        return text


_EXPLICIT: dict[str, tuple[Callable[[Any], bool], str]] = {
    _INT: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    _FLOAT: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    _BOOL: (lambda v: isinstance(v, bool), "true or false"),
    _NULL: (lambda v: v is None, "null"),
}
"""Explicit tags (``!!int 5``) that are honoured, and what their value must be."""


def _resolve_plain(text: str) -> Any:
    """A plain scalar under the YAML 1.2 core schema."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT_RE.fullmatch(text):
        return int(text)
    if _HEX_RE.fullmatch(text):
        return int(text, 16)
    if _OCT_RE.fullmatch(text):
        return int(text, 8)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    return text
