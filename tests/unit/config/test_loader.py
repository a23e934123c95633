"""Loading YAML: every kind of bad input gives one message with its line and location."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from callwhisper.config import load_configuration_file, load_configuration_text
from callwhisper.errors import ConfigError
from tests.unit.config.helpers import EXAMPLE, MINIMAL, problems


def test_minimal_configuration_loads() -> None:
    configuration = load_configuration_text(MINIMAL, "cfg.yaml")
    assert configuration.buyers[0].conversion.revenue == Decimal(40)
    assert configuration.numbers[0].number == "+18005550100"


def test_example_loads() -> None:
    configuration = load_configuration_file(EXAMPLE)
    assert [c.id for c in configuration.campaigns] == ["auto-west", "auto-south"]
    assert len(configuration.buyers) == 4


def test_invalid_yaml_is_one_problem_with_line_and_column() -> None:
    assert problems("buyers:\n  - id: acme\n    name: a: b\n") == [
        "cfg.yaml:3:12: invalid YAML: mapping values are not allowed here"
    ]


def test_unclosed_flow_sequence_names_its_context() -> None:
    assert problems("states: [CA, NV\nnumbers: []\n") == [
        "cfg.yaml:2:8: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence)"
    ]


def test_several_documents_are_invalid_yaml() -> None:
    assert problems("version: 1\n---\nversion: 1\n") == [
        "cfg.yaml:2:1: invalid YAML: found another document "
        "(expected a single document in the stream)"
    ]


def test_a_control_character_is_one_problem_with_line_and_column() -> None:
    assert problems("version: 1\nbuyers: [a\x07]\n") == [
        "cfg.yaml:2:11: invalid YAML: unacceptable character #x0007: "
        "special characters are not allowed"
    ]


def test_a_file_with_a_nul_byte_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"version: 1\x00\n")
    with pytest.raises(ConfigError) as caught:
        load_configuration_file(path)
    assert caught.value.problems == [
        f"{path}:1:11: invalid YAML: unacceptable character #x0000: "
        "special characters are not allowed"
    ]


def test_lists_nested_thousands_deep_are_one_problem_not_a_crash() -> None:
    deep = "[" * 5000 + "]" * 5000
    assert problems(f"version: {deep}\n") == [
        "cfg.yaml:1:73: invalid YAML: lists and mappings nested more than 64 levels deep"
    ]


def test_an_alias_cannot_nest_a_value_past_the_depth_limit() -> None:
    """Each part is shallow enough, but the alias puts one inside the other."""
    text = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 40 + "*a" + "]" * 40 + "\n"
    assert problems(text) == [
        "cfg.yaml:1:31: invalid YAML: lists and mappings nested more than 64 levels deep"
    ]


def test_aliases_of_aliases_cannot_expand_without_end() -> None:
    """Six short lines would otherwise make a million values (the "billion laughs")."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    assert problems("\n".join(lines) + "\n") == [
        "cfg.yaml:1:16: invalid YAML: aliases repeat more than 100,000 values"
    ]


def test_empty_file() -> None:
    assert problems("# nothing here\n") == ["cfg.yaml:1: (top level): the file is empty"]


def test_top_level_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == ["cfg.yaml:1: (top level): must be a mapping of sections"]


def test_unknown_field_points_at_its_key() -> None:
    text = MINIMAL.replace("    conversion:", "    colour: red\n    conversion:")
    assert problems(text) == ["cfg.yaml:3: buyers[0].colour: unknown field"]


def test_unknown_top_level_section() -> None:
    assert problems(MINIMAL + "publisher: []\n") == ["cfg.yaml:16: publisher: unknown field"]


def test_wrong_type() -> None:
    text = MINIMAL.replace("revenue: 40", "revenue: forty")
    assert problems(text) == [
        "cfg.yaml:3: buyers[0].conversion.revenue: must be a number, not 'forty'"
    ]


def test_mapping_where_a_list_is_expected() -> None:
    text = MINIMAL.replace("  - number: '+18005550100'\n    campaign: auto\n", "  x: 1\n")
    assert problems(text) == ["cfg.yaml:14: numbers: must be a list, not a mapping"]


def test_missing_required_field_points_at_its_parent() -> None:
    text = MINIMAL.replace("    conversion: {revenue: 40}\n", "")
    assert problems(text) == ["cfg.yaml:2: buyers[0].conversion: required"]


def test_negative_cap() -> None:
    text = MINIMAL.replace(
        "            - buyer: acme\n",
        "            - buyer: acme\n              caps:\n                calls:\n"
        "                  daily: -5\n",
    )
    assert problems(text) == [
        "cfg.yaml:15: campaigns[0].routing.tiers[0].buyers[0].caps.calls.daily: must be >= 0"
    ]


def test_too_many_decimal_places() -> None:
    text = MINIMAL.replace("revenue: 40", "revenue: 40.12345")
    assert problems(text) == [
        "cfg.yaml:3: buyers[0].conversion.revenue: must have at most 4 decimal places"
    ]


def test_unknown_time_zone() -> None:
    text = MINIMAL.replace("  - id: acme\n", "  - id: acme\n    timezone: America/Nowhere\n")
    assert problems(text) == ["cfg.yaml:3: buyers[0].timezone: unknown time zone 'America/Nowhere'"]


def test_unknown_literal() -> None:
    text = MINIMAL.replace("        - buyers:", "        - method: random\n          buyers:")
    assert problems(text) == [
        "cfg.yaml:11: campaigns[0].routing.tiers[0].method: "
        "must be 'priority', 'round_robin' or 'weighted', not 'random'"
    ]


def test_empty_list_where_one_item_is_needed() -> None:
    text = MINIMAL.replace(
        "    targets:\n      - id: main\n        destination: sip:sales@acme.example\n",
        "    targets: []\n",
    )
    assert problems(text) == ["cfg.yaml:4: buyers[0].targets: must have at least 1 item"]


SCHEDULE = MINIMAL.replace(
    "    conversion: {revenue: 40}\n",
    "    conversion: {revenue: 40}\n    schedule:\n      hours:\n        mon: [{hours}]\n",
)


def test_inverted_hours_without_overnight() -> None:
    text = SCHEDULE.replace("{hours}", "'22:00-02:00'")
    assert problems(text) == [
        "cfg.yaml:6: buyers[0].schedule.hours.mon[0]: '22:00-02:00' ends before it starts; "
        "set overnight: true for ranges past midnight"
    ]


def test_inverted_hours_with_overnight_are_accepted() -> None:
    text = SCHEDULE.replace("{hours}", "'22:00-02:00'").replace(
        "    schedule:\n", "    schedule:\n      overnight: true\n"
    )
    schedule = load_configuration_text(text).buyers[0].schedule
    assert schedule is not None
    assert schedule.hours == {"mon": ["22:00-02:00"]}


def test_overlapping_hours() -> None:
    text = SCHEDULE.replace("{hours}", "'09:00-13:00', '12:00-17:00'")
    assert problems(text) == [
        "cfg.yaml:6: buyers[0].schedule.hours.mon: ranges overlap (09:00-13:00, 12:00-17:00)"
    ]


def test_malformed_time_points_at_the_range() -> None:
    text = SCHEDULE.replace("{hours}", "'09:00-17:00', '9am-5pm'")
    assert problems(text) == [
        "cfg.yaml:6: buyers[0].schedule.hours.mon[1]: '9am' is not a time like '09:30'"
    ]


def test_duplicate_tracking_numbers() -> None:
    text = MINIMAL + "  - number: '+18005550100'\n    campaign: auto\n"
    assert problems(text) == [
        "cfg.yaml:16: numbers[1]: duplicate tracking number '+18005550100' (first at numbers[0])"
    ]


def test_duplicate_buyer_ids() -> None:
    text = MINIMAL.replace(
        "campaigns:",
        "  - id: acme\n    conversion: {revenue: 1}\n"
        "    targets: [{id: t, destination: sip:t@x.example}]\n"
        "campaigns:",
    )
    assert problems(text) == [
        "cfg.yaml:7: buyers[1]: duplicate buyer id 'acme' (first at buyers[0])"
    ]


def test_weight_zero_in_weighted_tier_is_folded_into_the_entry() -> None:
    text = MINIMAL.replace(
        "        - buyers:\n            - buyer: acme\n",
        "        - method: weighted\n          buyers:\n            - buyer: acme\n"
        "              weight: 0\n",
    )
    assert problems(text) == [
        "cfg.yaml:14: campaigns[0].routing.tiers[0].buyers[0].weight: "
        "must be > 0 in a weighted tier (remove the buyer instead)"
    ]


def test_weight_zero_in_priority_tier_is_accepted() -> None:
    text = MINIMAL.replace(
        "            - buyer: acme\n", "            - buyer: acme\n              weight: 0\n"
    )
    assert load_configuration_text(text).campaigns[0].routing.tiers[0].buyers[0].weight == 0


def test_unknown_buyer_reference() -> None:
    text = MINIMAL.replace("- buyer: acme", "- buyer: acne")
    assert problems(text) == [
        "cfg.yaml:12: campaigns[0].routing.tiers[0].buyers[0].buyer: unknown buyer 'acne'"
    ]


def test_duplicate_mapping_key() -> None:
    text = MINIMAL.replace("    campaign: auto\n", "    campaign: auto\n    campaign: other\n")
    assert problems(text) == [
        "cfg.yaml:16: numbers[0].campaign: duplicate key 'campaign' (first on line 15)"
    ]


def test_tag_rule_value_of_wrong_shape_is_one_message() -> None:
    text = MINIMAL.replace(
        "    conversion: {revenue: 40}\n",
        "    conversion: {revenue: 40}\n    filters:\n      tags:\n"
        "        - {tag: age, op: '>', value: {years: 64}}\n",
    )
    assert problems(text) == [
        "cfg.yaml:6: buyers[0].filters.tags[0].value: "
        "must be a string, an integer, a number or a list, not a mapping"
    ]


def test_bad_state_code_points_at_the_item() -> None:
    text = MINIMAL.replace(
        "    conversion: {revenue: 40}\n",
        "    conversion: {revenue: 40}\n"
        "    filters:\n      states:\n        - CA\n        - Texas\n",
    )
    assert problems(text) == [
        "cfg.yaml:7: buyers[0].filters.states[1]: 'TEXAS' is not a two-letter state code"
    ]


def test_every_problem_is_reported_in_line_order() -> None:
    text = (
        MINIMAL.replace("revenue: 40", "revenue: -1")
        .replace("campaign: auto", "campaign: auto\n    colour: blue")
        .replace("  - id: acme\n", "  - id: acme\n    timezone: Nowhere\n")
    )
    assert problems(text) == [
        "cfg.yaml:3: buyers[0].timezone: unknown time zone 'Nowhere'",
        "cfg.yaml:4: buyers[0].conversion.revenue: must be >= 0",
        "cfg.yaml:17: numbers[0].colour: unknown field",
    ]


def test_unsupported_tag() -> None:
    text = MINIMAL.replace("revenue: 40", "revenue: !money 40")
    assert problems(text) == [
        "cfg.yaml:3: buyers[0].conversion.revenue: unsupported YAML tag !money"
    ]


def test_merge_keys_are_refused() -> None:
    text = MINIMAL.replace("  - id: acme\n", "  - <<: {name: x}\n    id: acme\n")
    assert problems(text) == [
        "cfg.yaml:2: buyers[0]: merge keys (<<) are not supported; "
        "use an alias (*name) of a whole value"
    ]


def test_aliases_share_a_value() -> None:
    text = MINIMAL.replace(
        "    conversion: {revenue: 40}\n",
        "    conversion: {revenue: 40}\n"
        "    schedule: &office\n      hours: {mon: ['09:00-17:00']}\n",
    ).replace("        destination: sip", "        schedule: *office\n        destination: sip")
    buyer = load_configuration_text(text).buyers[0]
    assert buyer.schedule is not None
    assert buyer.schedule.hours == {"mon": ["09:00-17:00"]}
    assert buyer.targets[0].schedule == buyer.schedule


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL.replace("revenue: 40", "revenue: -1"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_configuration_file(path)
    assert caught.value.problems == [f"{path}:3: buyers[0].conversion.revenue: must be >= 0"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        load_configuration_file(path)
    assert caught.value.problems == [f"{path}: no such file"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_configuration_file(path)
    assert caught.value.problems == [f"{path}: not UTF-8 text (invalid continuation byte)"]
