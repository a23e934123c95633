"""Applying a configuration: round trip, idempotence, archiving and restoring."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callwhisper.config import validate_configuration
from callwhisper.domain.configuration import Configuration
from callwhisper.store import Store
from tests.integration.store.sample import sample_configuration, sample_data

pytestmark = pytest.mark.integration


async def test_empty_store_loads_an_empty_configuration(store: Store) -> None:
    assert await store.config.load_configuration() == Configuration()
    assert await store.config.latest_revision() is None


async def test_apply_then_load_round_trips(store: Store) -> None:
    configuration = sample_configuration()
    report = await store.config.apply_configuration(configuration)
    assert report.revision == 1
    assert report.created == (
        "trunk carrier",
        "publisher pub-b",
        "publisher pub-a",
        "buyer zeta",
        "buyer acme",
        "target zeta/main",
        "target zeta/backup",
        "target acme/desk",
        "campaign auto-ca",
        "campaign solar",
        "number +18005550123",
        "number solar-line",
    )
    loaded = await store.config.load_configuration()
    assert loaded == configuration
    assert [buyer.id for buyer in loaded.buyers] == ["zeta", "acme"]
    assert [target.id for target in loaded.buyers[0].targets] == ["main", "backup"]
    assert loaded.model_dump(mode="json") == configuration.model_dump(mode="json")


async def test_second_apply_changes_nothing(store: Store) -> None:
    first = await store.config.apply_configuration(sample_configuration())
    second = await store.config.apply_configuration(sample_configuration())
    assert not second.changed
    assert second.revision is None
    assert (second.created, second.updated, second.archived, second.restored) == ((), (), (), ())
    assert second.hash == first.hash
    assert await store.config.revision_count() == 1


async def test_changes_are_reported_per_object(store: Store) -> None:
    await store.config.apply_configuration(sample_configuration())
    data = sample_data()
    data["buyers"][1]["conversion"]["revenue"] = "32.50"
    data["publishers"].reverse()
    data["telephony"]["increment_seconds"] = 6
    report = await store.config.apply_configuration(validate_configuration(data))
    assert report.updated == ("publisher pub-a", "publisher pub-b", "buyer acme")
    assert report.settings_changed
    assert report.revision == 2
    assert await store.config.load_configuration() == validate_configuration(data)


async def test_removed_objects_are_archived_and_restored_when_added_again(store: Store) -> None:
    applied_at = datetime(2026, 3, 1, tzinfo=UTC)
    await store.config.apply_configuration(sample_configuration(), now=applied_at)
    data = sample_data()
    del data["campaigns"][1]
    del data["numbers"][1]
    del data["buyers"][0]["targets"][1]
    smaller = validate_configuration(data)
    report = await store.config.apply_configuration(smaller)
    assert report.archived == ("target zeta/backup", "campaign solar", "number solar-line")
    assert await store.config.load_configuration() == smaller

    restored = await store.config.apply_configuration(sample_configuration())
    assert restored.restored == ("target zeta/backup", "campaign solar", "number solar-line")
    assert restored.created == ()
    assert await store.config.load_configuration() == sample_configuration()
    latest = await store.config.latest_revision()
    assert latest is not None
    assert latest[0] == 3


async def test_removing_a_buyer_archives_its_targets(store: Store) -> None:
    await store.config.apply_configuration(sample_configuration())
    data = sample_data()
    del data["buyers"][1]
    data["campaigns"][0]["routing"]["tiers"] = data["campaigns"][0]["routing"]["tiers"][:1]
    data["campaigns"][0]["routing"]["tiers"][0]["buyers"] = [{"buyer": "zeta"}]
    del data["campaigns"][1]
    del data["numbers"][1]
    report = await store.config.apply_configuration(validate_configuration(data))
    assert "buyer acme" in report.archived
    assert "target acme/desk" in report.archived
    assert [b.id for b in (await store.config.load_configuration()).buyers] == ["zeta"]
