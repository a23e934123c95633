"""Routing methods: priority, round robin and smooth weighted round robin."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callwhisper.domain import TierRotation
from callwhisper.routing.methods import (
    Member,
    Ordering,
    Priority,
    RoundRobin,
    Weighted,
    get_method,
    member_key,
    register_method,
    rotation_from_dict,
    rotation_to_dict,
)

A, B, C, D = (Member(key) for key in ("a/*", "b/*", "c/*", "d/*"))


def picks(method: Weighted | RoundRobin, members: list[Member], count: int) -> list[str]:
    """The first choice of ``count`` consecutive calls, all members eligible."""
    rotation = TierRotation()
    chosen = []
    for _ in range(count):
        ordering = method.order(members, [True] * len(members), rotation)
        chosen.append(members[ordering.order[0]].key)
        rotation = ordering.rotation
    return chosen


def test_member_key_names_buyer_and_target() -> None:
    assert member_key("b1", "t1") == "b1/t1"
    assert member_key("b1", None) == "b1/*"


def test_priority_keeps_configuration_order_of_eligible_members() -> None:
    rotation = TierRotation(last="x")
    assert Priority().order([A, B, C], [True, False, True], rotation) == Ordering((0, 2), rotation)


def test_round_robin_starts_after_the_member_chosen_last() -> None:
    ordering = RoundRobin().order([A, B, C], [True, True, True], TierRotation(last="b/*"))
    assert ordering == Ordering((2, 0, 1), TierRotation(last="c/*"))


def test_round_robin_skips_an_ineligible_member_without_losing_the_turn_of_others() -> None:
    ordering = RoundRobin().order([A, B, C], [True, True, False], TierRotation(last="b/*"))
    assert ordering == Ordering((0, 1), TierRotation(last="a/*"))


def test_round_robin_restarts_when_the_last_member_left_the_tier() -> None:
    ordering = RoundRobin().order([A, B], [True, True], TierRotation(last="gone/*"))
    assert ordering.order == (0, 1)


def test_methods_with_no_eligible_member_keep_their_rotation() -> None:
    rotation = TierRotation(last="a/*", current={"a/*": 2})
    for method in (RoundRobin(), Weighted()):
        assert method.order([A, B], [False, False], rotation) == Ordering((), rotation)


def test_weighted_follows_nginx_smooth_sequence() -> None:
    members = [Member("a/*", 5), Member("b/*", 1), Member("c/*", 1)]
    assert picks(Weighted(), members, 7) == ["a/*", "a/*", "b/*", "a/*", "c/*", "a/*", "a/*"]


def test_weighted_cascade_after_the_winner_is_by_weight_then_order() -> None:
    members = [Member("a/*", 1), Member("b/*", 3), Member("c/*", 2), Member("d/*", 3)]
    ordering = Weighted().order(members, [True] * 4, TierRotation())
    assert ordering.order == (1, 3, 2, 0)
    assert ordering.rotation.current == {"a/*": 1, "b/*": -6, "c/*": 2, "d/*": 3}


def test_weighted_leaves_ineligible_members_state_alone_and_drops_departed_ones() -> None:
    members = [Member("a/*", 1), Member("b/*", 1)]
    rotation = TierRotation(current={"a/*": 0, "b/*": 7, "gone/*": 3})
    ordering = Weighted().order(members, [True, False], rotation)
    assert ordering.rotation.current == {"a/*": 0, "b/*": 7}


def test_registry_maps_configuration_names_to_methods() -> None:
    assert isinstance(get_method("weighted"), Weighted)
    with pytest.raises(KeyError, match="unknown routing method 'auction'"):
        get_method("auction")


def test_a_registered_method_is_found_by_name() -> None:
    class Reverse:
        def order(
            self, members: Sequence[Member], eligible: Sequence[bool], rotation: TierRotation
        ) -> Ordering:
            return Ordering(
                tuple(i for i in reversed(range(len(members))) if eligible[i]), rotation
            )

    register_method("test_reverse", Reverse())
    assert get_method("test_reverse").order([A, B], [True, True], TierRotation()).order == (1, 0)


def test_rotation_from_dict_ignores_malformed_entries() -> None:
    rotation = rotation_from_dict({"last": 3, "current": {"a/*": 2, "b/*": "x", "c/*": True}})
    assert rotation == TierRotation(last=None, current={"a/*": 2})


weights = st.lists(st.integers(min_value=1, max_value=10), min_size=2, max_size=6)


@given(weights, st.integers(min_value=1, max_value=3))
def test_weighted_shares_are_exact_over_each_cycle(weights: list[int], cycles: int) -> None:
    members = [Member(f"m{i}/*", weight) for i, weight in enumerate(weights)]
    chosen = picks(Weighted(), members, sum(weights) * cycles)
    for start in range(0, len(chosen), sum(weights)):
        shares = Counter(chosen[start : start + sum(weights)])
        assert shares == {member.key: member.weight for member in members}


@given(st.integers(min_value=2, max_value=8), st.integers(min_value=1, max_value=5))
def test_round_robin_is_even(size: int, rounds: int) -> None:
    members = [Member(f"m{i}/*") for i in range(size)]
    shares = Counter(picks(RoundRobin(), members, size * rounds))
    assert shares == {member.key: rounds for member in members}


@given(
    st.lists(st.integers(min_value=1, max_value=10), min_size=2, max_size=6),
    st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_rotation_survives_a_restart(weights: list[int], restarts: list[bool]) -> None:
    """Passing the state through storage between calls changes nothing."""
    members = [Member(f"m{i}/*", weight) for i, weight in enumerate(weights)]
    for method in (Weighted(), RoundRobin()):
        kept, stored = TierRotation(), TierRotation()
        for restart in restarts:
            expected = method.order(members, [True] * len(members), kept)
            if restart:
                stored = rotation_from_dict(json.loads(json.dumps(rotation_to_dict(stored))))
            actual = method.order(members, [True] * len(members), stored)
            assert actual == expected
            kept, stored = expected.rotation, actual.rotation


@given(st.integers(min_value=3, max_value=6), st.data())
def test_round_robin_stays_even_among_eligible_members(size: int, data: st.DataObject) -> None:
    """A member that is always ineligible does not upset the rotation of the others."""
    members = [Member(f"m{i}/*") for i in range(size)]
    out = data.draw(st.integers(min_value=0, max_value=size - 1))
    eligible = [i != out for i in range(size)]
    rotation = TierRotation()
    shares: Counter[str] = Counter()
    for _ in range((size - 1) * 3):
        ordering = RoundRobin().order(members, eligible, rotation)
        shares[members[ordering.order[0]].key] += 1
        rotation = ordering.rotation
    assert shares == {m.key: 3 for i, m in enumerate(members) if i != out}


@given(
    st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=6),
    st.lists(st.lists(st.booleans(), min_size=6, max_size=6), min_size=1, max_size=8),
)
def test_methods_answer_alike_for_a_tuple_of_members_used_again(
    weights: list[int], calls: list[list[bool]]
) -> None:
    """A tier's members tuple is laid out once and reused; a list is laid out each call."""
    members = [Member(f"m{i % 4}/*", weight) for i, weight in enumerate(weights)]
    kept = tuple(members)
    for method in (Weighted(), RoundRobin()):
        rotation = TierRotation(last="m1/*", current={"m0/*": 4, "gone/*": 1})
        for eligible in calls:
            expected = method.order(list(members), eligible[: len(members)], rotation)
            assert method.order(kept, eligible[: len(members)], rotation) == expected
            rotation = expected.rotation
