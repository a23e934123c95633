"""Routing: which buyers a call is offered to, in which order, and why not the others.

A pure core: ``decide`` takes the configuration, the call's attributes, a
counters snapshot and ``now``, and returns a ``RoutingDecision``. Routing
methods are pluggable by the name used in configuration (``methods``).
"""

from callwhisper.routing.decision import Candidate, RoutingDecision, Skipped, decide, refused
from callwhisper.routing.geo import Geo, enrich, geo_for_number, is_withheld, normalize_number
from callwhisper.routing.methods import (
    Member,
    Ordering,
    Priority,
    RoundRobin,
    RoutingMethod,
    Weighted,
    get_method,
    member_key,
    register_method,
    rotation_from_dict,
    rotation_to_dict,
)
from callwhisper.routing.plan import Plan, compile_plan, counter_scope

__all__ = [
    "Candidate",
    "Geo",
    "Member",
    "Ordering",
    "Plan",
    "Priority",
    "RoundRobin",
    "RoutingDecision",
    "RoutingMethod",
    "Skipped",
    "Weighted",
    "compile_plan",
    "counter_scope",
    "decide",
    "enrich",
    "geo_for_number",
    "get_method",
    "is_withheld",
    "member_key",
    "normalize_number",
    "refused",
    "register_method",
    "rotation_from_dict",
    "rotation_to_dict",
]
