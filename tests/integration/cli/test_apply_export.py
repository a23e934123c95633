"""``apply`` and ``export`` on a SQLite file: idempotent, all or nothing, round-tripping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callwhisper.config import dump_configuration, load_configuration_file
from tests.integration.cli.helpers import EXAMPLE, run, sqlite_url

pytestmark = pytest.mark.integration


def test_first_apply_creates_everything(tmp_path: Path) -> None:
    result = run("apply", EXAMPLE, "--database-url", sqlite_url(tmp_path / "cw.db"))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "  created buyer pacific" in lines
    assert "  created target pacific/overflow" in lines
    assert "  created number +18005550100" in lines
    assert lines[-2] == "18 created, 0 updated, 0 archived, 0 restored, 0 unchanged"
    assert re.fullmatch(r"revision 1 \([0-9a-f]{12}\)", lines[-1]), lines[-1]


def test_second_apply_changes_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cw.db")
    assert run("apply", EXAMPLE, "--database-url", url).exit_code == 0
    again = run("apply", EXAMPLE, "--database-url", url)
    assert again.exit_code == 0
    assert again.stdout == "0 created, 0 updated, 0 archived, 0 restored, 18 unchanged\nno change\n"


def test_export_round_trips(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cw.db")
    run("apply", EXAMPLE, "--database-url", url)
    result = run("export", "--database-url", url)
    assert result.exit_code == 0
    assert result.stdout == dump_configuration(load_configuration_file(EXAMPLE))
    exported = tmp_path / "exported.yaml"
    assert run("export", "--database-url", url, "-o", exported).exit_code == 0
    assert load_configuration_file(exported) == load_configuration_file(EXAMPLE)
    reapplied = run("apply", exported, "--database-url", url)
    assert reapplied.stdout.endswith("no change\n")


def test_database_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLWHISPER_DATABASE_URL", sqlite_url(tmp_path / "env.db"))
    assert run("apply", EXAMPLE).exit_code == 0
    assert (tmp_path / "env.db").exists()
    assert run("export").stdout == dump_configuration(load_configuration_file(EXAMPLE))


def test_bad_file_writes_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cw.db")
    run("apply", EXAMPLE, "--database-url", url)
    before = run("export", "--database-url", url).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8")
        .replace("name: Summit Direct", "name: Summit Direct (renamed)")
        .replace("daily: 300", "daily: -300"),
        encoding="utf-8",
    )
    result = run("apply", bad, "--database-url", url)
    assert result.exit_code == 1
    assert result.stderr == f"{bad}:133: buyers[3].caps.calls.daily: must be >= 0\n"
    assert run("export", "--database-url", url).stdout == before


def test_bad_file_does_not_create_the_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("buyers: 3\n", encoding="utf-8")
    result = run("apply", bad, "--database-url", sqlite_url(tmp_path / "cw.db"))
    assert result.exit_code == 1
    assert not (tmp_path / "cw.db").exists()


def test_removed_objects_are_archived_and_come_back(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cw.db")
    run("apply", EXAMPLE, "--database-url", url)
    smaller = tmp_path / "smaller.yaml"
    smaller.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace(
            "  - number: auto-south-sip\n    campaign: auto-south\n"
            "    tags: {source: sip-partner}\n",
            "",
        ),
        encoding="utf-8",
    )
    result = run("apply", smaller, "--database-url", url)
    assert result.stdout.splitlines()[:2] == [
        "  archived number auto-south-sip",
        "0 created, 0 updated, 1 archived, 0 restored, 17 unchanged",
    ]
    assert "auto-south-sip" not in run("export", "--database-url", url).stdout
    back = run("apply", EXAMPLE, "--database-url", url)
    assert back.stdout.splitlines()[:2] == [
        "  restored number auto-south-sip",
        "0 created, 0 updated, 0 archived, 1 restored, 17 unchanged",
    ]
    assert run("export", "--database-url", url).stdout == dump_configuration(
        load_configuration_file(EXAMPLE)
    )


def test_unreachable_database_exits_2(tmp_path: Path) -> None:
    result = run("apply", EXAMPLE, "--database-url", "postgresql://cw:secret@127.0.0.1:1/cw")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: database postgresql+asyncpg://cw:***@127.0.0.1:1/cw: ")
    assert "secret" not in result.stderr
    assert "Traceback" not in result.output


def test_export_of_a_missing_database_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    result = run("export", "--database-url", sqlite_url(path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: database sqlite+aiosqlite:///{path}: no such file (run callwhisper apply first)\n"
    )
    assert not path.exists()


def test_unsupported_database_exits_2() -> None:
    result = run("export", "--database-url", "mysql://db/cw")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: database mysql://db/cw: unsupported database 'mysql' "
        "(use postgresql:// or sqlite://)\n"
    )
