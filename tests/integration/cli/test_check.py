"""``callwhisper check``: a one-line summary, or every problem and exit status 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.cli.helpers import EXAMPLE, run

BAD = """\
buyers:
  - id: acme
    conversion: {revenue: 40}
    caps:
      calls: {daily: -1}
    targets:
      - id: main
        destination: sip:sales@acme.example
campaigns:
  - id: auto
    routing:
      tiers:
        - method: weighted
          buyers:
            - buyer: acme
              weight: 0
numbers:
  - number: '+18005550100'
    campaign: auto
  - number: '+18005550100'
    campaign: auto
    color: red
"""


def test_valid_file_prints_a_summary(tmp_path: Path) -> None:
    result = run("check", EXAMPLE)
    assert result.exit_code == 0
    assert result.stdout == (
        f"{EXAMPLE}: OK (2 campaigns, 4 buyers, 5 targets, 2 publishers, "
        "4 tracking numbers, 1 trunk)\n"
    )


def test_invalid_file_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    result = run("check", path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:5: buyers[0].caps.calls.daily: must be >= 0",
        f"{path}:16: campaigns[0].routing.tiers[0].buyers[0].weight: "
        "must be > 0 in a weighted tier (remove the buyer instead)",
        f"{path}:22: numbers[1].color: unknown field",
        f"{path}: 3 problems",
    ]


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("buyers:\n  - id: [acme\n", encoding="utf-8")
    result = run("check", path)
    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:3:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)\n"
    )


def test_missing_file(tmp_path: Path) -> None:
    result = run("check", tmp_path / "none.yaml")
    assert result.exit_code == 1
    assert result.stderr == f"{tmp_path / 'none.yaml'}: no such file\n"


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("callwhisper, version ")


def test_check_as_a_real_process(tmp_path: Path) -> None:
    """The installed entry point runs, and a bad file exits 1 without a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    good = subprocess.run(
        [sys.executable, "-m", "callwhisper.cli", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.startswith(f"{EXAMPLE}: OK (")
    bad = subprocess.run(
        [sys.executable, "-m", "callwhisper.cli", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.splitlines()[-1] == f"{path}: 3 problems"
