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
    package = ("callwhisper", *path.relative_to(PACKAGE).parent.parts)
    return imports_in(path.read_text(), package, str(path))


def imports_in(source: str, package: tuple[str, ...], filename: str = "<source>") -> set[str]:
    """Every module ``source`` imports, relative imports resolved against ``package``.

    ``from callwhisper import engine`` imports ``callwhisper.engine``: the
    names after ``import`` count too, since they may be modules.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_every_form_of_import_is_seen() -> None:
    source = (
        "import callwhisper.engine\n"
        "from callwhisper import store\n"
        "from ..flow import session\n"
        "from . import loader\n"
        "from .schema import child_type\n"
    )
    assert imports_in(source, ("callwhisper", "config")) >= {
        "callwhisper.engine",
        "callwhisper.store",
        "callwhisper.flow.session",
        "callwhisper.config.loader",
        "callwhisper.config.schema",
    }


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
