"""Helpers for the configuration tests: a minimal valid file and problem capture."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from callwhisper.config import load_configuration_text
from callwhisper.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "auto-insurance.yaml"

MINIMAL = """\
buyers:
  - id: acme
    conversion: {revenue: 40}
    targets:
      - id: main
        destination: sip:sales@acme.example
campaigns:
  - id: auto
    routing:
      tiers:
        - buyers:
            - buyer: acme
numbers:
  - number: '+18005550100'
    campaign: auto
"""
"""A small valid configuration: one buyer, one campaign, one number."""


def problems(text: str, source: str = "cfg.yaml") -> list[str]:
    """The problems ConfigError lists for ``text`` (dedented); fails if it loads."""
    with pytest.raises(ConfigError) as caught:
        load_configuration_text(textwrap.dedent(text), source)
    return caught.value.problems
