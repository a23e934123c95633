"""The generated reference in docs/configuration.md matches the models, and its example loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callwhisper.config import load_configuration_text
from callwhisper.config.reference import BEGIN, END, generate, main, replace_generated

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_generated_reference_is_up_to_date() -> None:
    """Fails when a model changed: run python -m callwhisper.config.reference --update."""
    text = DOC.read_text(encoding="utf-8")
    assert replace_generated(text, generate()) == text


def test_check_option_reports_a_stale_document(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(f"# Title\n\n{BEGIN}\nold\n{END}\n", encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    assert main(["--update", str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8").startswith(
        f"# Title\n\n{BEGIN}\n\n### Configuration\n"
    )


def test_every_model_has_a_section() -> None:
    reference = generate()
    for name in ("Configuration", "Buyer", "Target", "Caps", "CountLimits", "Schedule", "TagRule"):
        assert f"\n### {name}\n" in f"\n{reference}"


def test_field_rows_name_type_default_and_description() -> None:
    reference = generate()
    assert "| `daily` | integer (>= 0), optional | none | Limit per calendar day. |" in reference
    assert (
        "| `method` | one of `priority`, `round_robin`, `weighted` | `priority` | "
        "priority (in order), round_robin or weighted. |" in reference
    )
    assert (
        "| `targets` | list of [Target](#target) (at least 1 item) | *required* | "
        "Destinations, in order. |" in reference
    )


def test_missing_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_generated("# no markers\n", "x")


def test_annotated_example_in_the_document_is_valid() -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    configuration = load_configuration_text(blocks[0], "docs/configuration.md")
    assert [buyer.id for buyer in configuration.buyers] == ["pacific", "backstop"]
