"""The architecture as a test: imports only point down, and protocol cores stay sans-I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "callwhisper"

# Each place in the tree and the places below it that it may import.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "domain": {"errors"},
    "sip": {"errors"},
    "media": {"errors"},
    "routing": {"errors", "domain"},
    "audio": {"errors", "domain", "media"},
    "flow": {"errors", "domain", "routing"},
    "config": {"errors", "domain"},
    "whisper": {"errors", "domain", "media", "audio", "flow", "routing", "config"},
    "store": {"errors", "domain", "routing", "flow"},
    "engine": {
        "errors", "domain", "routing", "flow", "sip", "media", "audio", "store", "config",
        "whisper",
    },
    "drivers": {
        "errors", "domain", "routing", "flow", "audio", "store", "config", "engine", "whisper",
    },
    "api": {"errors", "domain", "routing", "flow", "audio", "store", "config", "engine", "drivers"},
    "cli": {
        "errors", "domain", "routing", "flow", "sip", "media", "audio", "config", "store",
        "engine", "drivers", "api", "whisper",
    },
}  # fmt: skip

# Protocol cores take bytes, events and `now` in and give bytes and commands out.
SANS_IO = {"domain", "sip", "media", "routing", "flow"}
IO_MODULES = {"asyncio", "socket", "selectors", "threading", "subprocess", "time"}


def place_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if place_of(p) not in {"__init__", "__main__"})


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    place = place_of(path)
    assert place in ALLOWED, f"{place} is a new place: add it to the layer map and docs"
    for name in imports_of(path):
        parts = name.split(".")
        if parts[0] != "callwhisper" or len(parts) == 1:
            continue
        target = parts[1]
        if target in {place, "__init__"}:
            continue
        assert target in ALLOWED[place], f"{place} must not import {name}"


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if place_of(p) in SANS_IO],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_protocol_cores_do_no_io(path: Path) -> None:
    roots = {name.split(".")[0] for name in imports_of(path)}
    assert not roots & IO_MODULES, f"{path.name} imports {sorted(roots & IO_MODULES)}"
