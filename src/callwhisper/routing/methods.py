"""Routing methods: how the eligible members of one tier are ordered, pluggable by name.

A method is a small object with one pure function, ``order``: given the
tier's members (in configuration order), which of them are eligible right
now, and the tier's persisted ``TierRotation``, it returns the eligible
members in the order they should be tried and the rotation to persist. The
registry maps the name used in configuration (``Tier.method``) to a method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Protocol

from callwhisper.domain import TierRotation


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a tier: its rotation key (``buyer/target`` or ``buyer/*``) and weight."""

    key: str
    weight: int = 1


def member_key(buyer_id: str, target_id: str | None) -> str:
    """The key of a route entry in rotation state: ``b1/t1``, or ``b1/*`` for all targets."""
    return f"{buyer_id}/{target_id or '*'}"


@dataclass(frozen=True, slots=True)
class Ordering:
    """A method's answer: eligible member indexes in the order to try, and the new rotation."""

    order: tuple[int, ...]
    rotation: TierRotation


class RoutingMethod(Protocol):
    """Orders the eligible members of a tier."""

    def order(
        self, members: Sequence[Member], eligible: Sequence[bool], rotation: TierRotation
    ) -> Ordering:
        """Order the members whose ``eligible`` flag is set; ``rotation`` is the tier's state.

        ``members`` and ``eligible`` are parallel sequences in configuration
        order; the answer holds indexes into them.
        """
        ...


class Priority:
    """Waterfall: eligible members in configuration order; no state."""

    def order(
        self, members: Sequence[Member], eligible: Sequence[bool], rotation: TierRotation
    ) -> Ordering:
        """Eligible members in configuration order; the rotation is unchanged."""
        return Ordering(tuple(compress(range(len(eligible)), eligible)), rotation)


class RoundRobin:
    """Even rotation: start after the member chosen last (``TierRotation.last``).

    Members that are ineligible now are passed over without losing their
    place, so the others still share calls evenly, and a member that comes
    back resumes its turn. A ``last`` that is no longer a member (the
    configuration changed) restarts the rotation at the first member.
    """

    def order(
        self, members: Sequence[Member], eligible: Sequence[bool], rotation: TierRotation
    ) -> Ordering:
        """Eligible members starting after ``rotation.last``; the first of them becomes ``last``."""
        count = len(members)
        start = 0
        if rotation.last is not None:
            start = _layout(members).positions.get(rotation.last, -1) + 1
        # From ``start`` to the end, then from the first member up to ``start``.
        order = (
            *compress(range(start, count), eligible[start:]),
            *compress(range(start), eligible),
        )
        if not order:
            return Ordering((), rotation)
        return Ordering(order, TierRotation(last=members[order[0]].key))


class Weighted:
    """Smooth weighted round robin (as in nginx): exact shares, not random draws.

    For each call every eligible member's current weight grows by its weight;
    the member with the largest current weight is chosen (the first in
    configuration order on ties) and the total of the eligible weights is
    taken from it. Starting from zero, every cycle of ``sum(weights)`` calls
    chooses each member exactly ``weight`` times, well spread out. The rest
    of the cascade after the chosen member is by weight, then configuration
    order. Ineligible members keep their current weight untouched.
    """

    def order(
        self, members: Sequence[Member], eligible: Sequence[bool], rotation: TierRotation
    ) -> Ordering:
        """The chosen member, then the others by weight; current weights advanced by one call."""
        indexes = list(compress(range(len(members)), eligible))
        if not indexes:
            return Ordering((), rotation)
        layout = _layout(members)
        # Drop state of members that left the tier, so a re-added member starts afresh.
        if rotation.current.keys() <= layout.keys:
            current = dict(rotation.current)
        else:
            current = {key: value for key, value in rotation.current.items() if key in layout.keys}
        total = 0
        best = indexes[0]
        best_value: int | None = None
        for index in indexes:
            member = members[index]
            value = current.get(member.key, 0) + member.weight
            current[member.key] = value
            total += member.weight
            if best_value is None or value > best_value:
                best, best_value = index, value
        current[members[best].key] -= total
        rest = [i for i in layout.by_weight if i != best and eligible[i]]
        return Ordering((best, *rest), TierRotation(last=members[best].key, current=current))


@dataclass(frozen=True, slots=True)
class _Layout:
    """What methods look up in a tier's members: worked out once per members tuple.

    ``positions`` maps a member key to its first index; ``by_weight`` lists
    every index by weight, heaviest first, then in configuration order.
    """

    keys: frozenset[str]
    positions: dict[str, int]
    by_weight: tuple[int, ...]


# Layouts by the identity of the members tuple they were made of, which each holds (so
# that the identity is not reused while it is kept); a plan's tiers ask again and again.
_LAYOUTS: dict[int, tuple[Sequence[Member], _Layout]] = {}
_LAYOUTS_KEPT = 256


def _layout(members: Sequence[Member]) -> _Layout:
    """The layout of ``members``; kept only for tuples, which cannot change."""
    found = _LAYOUTS.get(id(members))
    if found is not None and found[0] is members:
        return found[1]
    positions: dict[str, int] = {}
    for index, member in enumerate(members):
        positions.setdefault(member.key, index)
    layout = _Layout(
        frozenset(positions),
        positions,
        tuple(sorted(range(len(members)), key=lambda i: (-members[i].weight, i))),
    )
    if isinstance(members, tuple):
        if len(_LAYOUTS) >= _LAYOUTS_KEPT:
            _LAYOUTS.clear()
        _LAYOUTS[id(members)] = (members, layout)
    return layout


_METHODS: dict[str, RoutingMethod] = {
    "priority": Priority(),
    "round_robin": RoundRobin(),
    "weighted": Weighted(),
}


def register_method(name: str, method: RoutingMethod) -> None:
    """Make ``method`` available to tiers configured with ``method: <name>``."""
    _METHODS[name] = method


def get_method(name: str) -> RoutingMethod:
    """The method registered under ``name``; ``KeyError`` names the known ones."""
    try:
        return _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown routing method {name!r} (known: {', '.join(_METHODS)})") from None


def rotation_to_dict(rotation: TierRotation) -> dict[str, object]:
    """A tier rotation as plain JSON-ready data, for storage."""
    return {"last": rotation.last, "current": dict(rotation.current)}


def rotation_from_dict(data: Mapping[str, object]) -> TierRotation:
    """The tier rotation stored by ``rotation_to_dict``; bad entries are ignored, never fatal."""
    last = data.get("last")
    current = data.get("current")
    return TierRotation(
        last=last if isinstance(last, str) else None,
        current={
            str(key): value
            for key, value in (current.items() if isinstance(current, Mapping) else ())
            if isinstance(value, int) and not isinstance(value, bool)
        },
    )
