"""Benchmark: one routing decision over 100 buyers with caps, schedules, geo and tag filters.

The campaign has three tiers, one per method (priority, round robin,
weighted); counters hold realistic usage, calls in progress, recent calls and
rotation state carried from one decision to the next, as the server does.
Callers come from real area codes across the US. The baseline, timed in the
same run on the same inputs, is the least a router must do: look the campaign
up and copy a list of candidates. Run with ``python -m bench routing``.
Target: p50 <= 200 microseconds per decision.

Every caller is new. Its geography is worked out before the decision and
timed apart, as the server does once when a call arrives; the garbage
collector stays on. Before every decision the server names the counters it
will read (``counter_scope``: the owners and their cap keys for the current
periods, which the store then loads); that is timed apart too, and with the
decision, as the server spends them one after the other. The decision's time
includes every skipped buyer's reason, as text: nothing is left to format
later. Turning the decision into the data the server stores with the call
(``to_dict``) is timed apart too. The machine's load average is printed
before and after timing: figures taken under load are not comparable with
figures from a quiet machine, so compare runs of the same load only (for a
before/after figure, run both in a row).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench.stats import percentile
from callwhisper.config import validate_configuration
from callwhisper.domain import (
    CallAttributes,
    CapKey,
    Configuration,
    PastCall,
    RoutingCounters,
)
from callwhisper.domain.caps import period_key
from callwhisper.routing import counter_scope, decide, enrich

BUYERS = 100
DECISIONS = 5000
WARM_UP = 200
TARGET_P50_MICROSECONDS = 200.0

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]
STATES = ["CA", "NY", "TX", "FL", "IL", "PA", "OH", "GA", "NC", "MI", "NJ", "VA", "WA", "AZ"]
# Area codes of the states above, so that geo filters see real numbering data.
AREA_CODES = ["415", "213", "212", "718", "512", "214", "305", "407", "312", "215", "216", "404"]
AREA_CODES += ["704", "313", "201", "703", "206", "602", "916", "646", "713", "813", "773"]
START = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # Monday 08:00 in New York


def build_configuration(rng: random.Random) -> Configuration:
    """100 buyers, one or two targets each, in a campaign with three tiers."""
    buyers: list[dict[str, Any]] = []
    for number in range(BUYERS):
        buyer: dict[str, Any] = {
            "id": f"b{number}",
            "name": f"Buyer {number}",
            "timezone": rng.choice(ZONES),
            "conversion": {"revenue": str(rng.randrange(10, 60)), "buffer_seconds": 90},
            "caps": {
                "calls": {"daily": rng.randrange(20, 80), "hourly": rng.randrange(5, 15)},
                "revenue": {"monthly": str(rng.randrange(5000, 20000))},
                "concurrency": rng.randrange(2, 6),
            },
            "targets": [
                {"id": f"t{t}", "destination": f"sip:agent{t}@buyer{number}.example"}
                for t in range(rng.choice([1, 1, 2]))
            ],
        }
        if rng.random() < 0.8:
            days = ["mon", "tue", "wed", "thu", "fri"] + (["sat"] if rng.random() < 0.5 else [])
            buyer["schedule"] = {
                "hours": {day: ["08:00-12:00", "13:00-20:00"] for day in days},
                "closed_dates": ["2026-05-25", "2026-07-03"],
            }
        filters: dict[str, Any] = {}
        if rng.random() < 0.6:
            filters["states"] = rng.sample(STATES, rng.randrange(4, 12))
        elif rng.random() < 0.3:
            filters["exclude_states"] = rng.sample(STATES, 2)
        if rng.random() < 0.3:
            filters["tags"] = [{"tag": "age", "op": ">", "value": 25}]
        if rng.random() < 0.2:
            filters.setdefault("tags", []).append(
                {"tag": "insured", "op": "in", "value": ["yes", "unknown"]}
            )
        if filters:
            buyer["filters"] = filters
        if rng.random() < 0.3:
            buyer["duplicates"] = {"window_days": 30, "scope": "buyer"}
        if rng.random() < 0.2:
            buyer["caps"]["spacing_seconds"] = 20
        buyers.append(buyer)
    ids = [buyer["id"] for buyer in buyers]
    tiers = [
        {"method": "priority", "buyers": [{"buyer": b} for b in ids[:20]]},
        {"method": "round_robin", "buyers": [{"buyer": b} for b in ids[20:60]]},
        {
            "method": "weighted",
            "buyers": [{"buyer": b, "weight": rng.randrange(1, 10)} for b in ids[60:]],
        },
    ]
    return validate_configuration(
        {
            "publishers": [{"id": "p1", "caps": {"calls": {"daily": 5000}}}],
            "buyers": buyers,
            "campaigns": [
                {
                    "id": "c1",
                    "routing": {"tiers": tiers, "max_candidates": 10},
                    "duplicates": {"window_days": 7},
                }
            ],
        }
    )


def build_counters(configuration: Configuration, rng: random.Random) -> RoutingCounters:
    """Usage part-way through the day: some buyers at their caps, some busy or just called."""
    usage: dict[CapKey, Decimal] = {}
    in_progress: dict[str, int] = {}
    last_call_at: dict[str, datetime] = {}
    for buyer in configuration.buyers:
        owner = f"buyer:{buyer.id}"
        for day in range(7):
            now = START + timedelta(days=day)
            daily = period_key("day", now, buyer.timezone)
            usage[CapKey(owner, "calls", "day", daily)] = Decimal(rng.randrange(0, 60))
        in_progress[owner] = rng.randrange(0, 5)
        last_call_at[owner] = START - timedelta(seconds=rng.randrange(0, 60))
    return RoutingCounters(cap_usage=usage, in_progress=in_progress, last_call_at=last_call_at)


def build_calls(rng: random.Random) -> list[tuple[CallAttributes, tuple[PastCall, ...], datetime]]:
    """Random callers through a business week, in time order, a few with call history."""
    calls = []
    moments = sorted(rng.randrange(0, 5 * 86400) for _ in range(DECISIONS))
    for second in moments:
        caller = f"+1{rng.choice(AREA_CODES)}555{rng.randrange(0, 10000):04d}"
        tags = {"age": str(rng.randrange(18, 80)), "insured": rng.choice(["yes", "no"])}
        now = START + timedelta(seconds=second)
        history: tuple[PastCall, ...] = ()
        if rng.random() < 0.1:
            history = (
                PastCall("c1", f"b{rng.randrange(BUYERS)}", now - timedelta(days=3), True, True),
            )
        attributes = CallAttributes("c1", "+18005550199", caller, "p1", tags=tags)
        calls.append((attributes, history, now))
    return calls


def main() -> None:
    """Time decisions and the baseline; print p50 and p99 in microseconds, and their ratio."""
    rng = random.Random(7)
    configuration = build_configuration(rng)
    counters = build_counters(configuration, rng)
    calls = build_calls(rng)
    load_before = _load()
    decision_times: list[float] = []
    geography_times: list[float] = []
    scope_times: list[float] = []
    scope_and_decision_times: list[float] = []
    stored_times: list[float] = []
    baseline_times: list[float] = []
    candidates_seen = 0
    for number, (attributes, history, now) in enumerate(calls):
        snapshot = replace(counters, caller_history=history)
        # The server derives the caller's geography once, when the call arrives;
        # it is timed apart so the decision's own cost is visible.
        start = time.perf_counter_ns()
        attributes = enrich(attributes)
        located = time.perf_counter_ns() - start
        # StoreBackend.route: the counters to read, then (once they are read) the decision.
        start = time.perf_counter_ns()
        counter_scope(configuration, attributes, now)
        scoped = time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        decision = decide(configuration, attributes, snapshot, now)
        elapsed = time.perf_counter_ns() - start
        # The server stores the decision with the call, reasons and all.
        start = time.perf_counter_ns()
        decision.to_dict()
        stored = time.perf_counter_ns() - start
        # The server persists rotations; the next decision reads them back.
        counters = replace(counters, rotation={**counters.rotation, **decision.rotations})
        start = time.perf_counter_ns()
        configuration.campaigns_by_id[attributes.campaign_id]
        list(decision.candidates)
        baseline = time.perf_counter_ns() - start
        if number >= WARM_UP:
            decision_times.append(elapsed / 1000)
            geography_times.append(located / 1000)
            scope_times.append(scoped / 1000)
            scope_and_decision_times.append((scoped + elapsed) / 1000)
            stored_times.append(stored / 1000)
            baseline_times.append(baseline / 1000)
            candidates_seen += len(decision.candidates)
    load_after = _load()
    p50, p99 = percentile(decision_times, 0.5), percentile(decision_times, 0.99)
    base50, base99 = percentile(baseline_times, 0.5), percentile(baseline_times, 0.99)
    print(
        f"routing decision, {BUYERS} buyers in 3 tiers: p50 {p50:.1f} µs, p99 {p99:.1f} µs, "
        f"mean {statistics.fmean(decision_times):.1f} µs over {len(decision_times)} decisions "
        f"({candidates_seen / len(decision_times):.1f} candidates on average)"
    )
    geo50, geo99 = percentile(geography_times, 0.5), percentile(geography_times, 0.99)
    print(
        f"caller geography at arrival (a new caller each call): "
        f"p50 {geo50:.1f} µs, p99 {geo99:.1f} µs"
    )
    scope50, scope99 = percentile(scope_times, 0.5), percentile(scope_times, 0.99)
    both50 = percentile(scope_and_decision_times, 0.5)
    both99 = percentile(scope_and_decision_times, 0.99)
    print(
        f"counter scope (counter_scope, before each decision): p50 {scope50:.1f} µs, "
        f"p99 {scope99:.1f} µs; scope + decision p50 {both50:.1f} µs, p99 {both99:.1f} µs"
    )
    stored50, stored99 = percentile(stored_times, 0.5), percentile(stored_times, 0.99)
    print(
        f"decision as stored data (to_dict, after the decision): "
        f"p50 {stored50:.1f} µs, p99 {stored99:.1f} µs"
    )
    print(
        f"baseline (campaign lookup + candidate list copy): p50 {base50:.2f} µs, "
        f"p99 {base99:.2f} µs; decision/baseline p50 ratio {p50 / base50:.0f}x, "
        f"scope/baseline {scope50 / base50:.0f}x"
    )
    verdict = "met" if p50 <= TARGET_P50_MICROSECONDS else "NOT met"
    print(f"target p50 <= {TARGET_P50_MICROSECONDS:.0f} µs: {verdict}")
    print(
        f"machine: {os.cpu_count()} CPUs, load average (1/5/15 min) {load_before} before, "
        f"{load_after} after"
    )


def _load() -> str:
    """The load averages as text, or "unknown" where the system does not tell."""
    try:
        return "/".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
