"""A configuration compiled once for routing: indexes, cap limits and schedules in minutes.

Routing decisions run on every call; everything that depends only on the
configuration is worked out here, once per ``Configuration`` object, so a
decision does no parsing, no pydantic validation and no searching. Plan
objects also hold the memos decisions share (answers that only change with
the time or the call's values, see ``routing.decision``): each is bounded, and
goes with its configuration.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from functools import lru_cache
from itertools import repeat
from typing import TYPE_CHECKING, Protocol

from callwhisper.domain import (
    Buyer,
    CallAttributes,
    Campaign,
    Caps,
    ConcurrencyLimit,
    Configuration,
    ConversionRule,
    DuplicateRule,
    Filters,
    RouteEntry,
    Schedule,
    TagRule,
    Target,
    WhisperConfig,
)
from callwhisper.domain.campaign import RingMode
from callwhisper.domain.caps import (
    CAP_PERIODS,
    CapCharge,
    CapKey,
    CapMetric,
    CapPeriod,
    describe_cap,
    metric_amount,
    period_keys,
)
from callwhisper.domain.configuration import format_location
from callwhisper.domain.state import buyer_owner, publisher_owner, route_owner, target_owner
from callwhisper.errors import ConfigError
from callwhisper.routing.geo import normalize_number
from callwhisper.routing.hours import Hours
from callwhisper.routing.methods import Member, RoutingMethod, get_method, member_key

if TYPE_CHECKING:
    from callwhisper.routing.decision import Candidate, Skipped


@dataclass(frozen=True, slots=True)
class OwnerLimits:
    """The caps of one owner (buyer, target, route or publisher), ready to check.

    ``label`` prefixes the owner's reasons ("target t1: ") so that a reason
    says whose cap is full; the buyer's own caps have none. ``slot`` is the
    concurrency limit a call holds, if any; ``target_level`` says whether a
    full cap concerns the target alone rather than its buyer.
    """

    owner: str
    label: str
    timezone: str
    limits: tuple[tuple[CapMetric, CapPeriod, Decimal], ...]
    spacing_seconds: int | None
    target_level: bool
    slot: ConcurrencyLimit | None
    # Whether a call's revenue changes its charges (a revenue cap), see ``metric_amount``.
    counts_revenue: bool
    # The counters of the latest period keys, and the headrooms by call revenue (``None``
    # without a revenue cap); see ``counters_at`` and ``headrooms``.
    _counters: dict[tuple[str, ...], tuple[CapKey, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _headrooms: dict[Decimal | None, tuple[Decimal, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # Reasons of full caps by (limit index, usage as text), see ``full``.
    _full: dict[tuple[int, str], str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls, owner: str, label: str, caps: Caps | None, timezone: str, *, target_level: bool
    ) -> OwnerLimits | None:
        """The limits of ``caps``, or ``None`` when it sets none."""
        if caps is None:
            return None
        limits = tuple(caps.limits())
        if not limits and caps.concurrency is None and caps.spacing_seconds is None:
            return None
        slot = None if caps.concurrency is None else ConcurrencyLimit(owner, caps.concurrency)
        return cls(
            owner,
            label,
            timezone,
            limits,
            caps.spacing_seconds,
            target_level,
            slot,
            any(metric == "revenue" for metric, _, _ in limits),
        )

    def counters_at(self, keys: PeriodKeys) -> tuple[CapKey, ...]:
        """The counter of each limit, in order, when the owner's periods have ``keys``.

        They only change with the periods' keys (a new hour, day...), so the
        latest are kept.
        """
        own = tuple(keys[_PERIOD_INDEX[period]] for _, period, _ in self.limits)
        found = self._counters.get(own)
        if found is None:
            self._counters.clear()
            found = self._counters[own] = tuple(
                CapKey(self.owner, metric, period, key)
                for (metric, period, _), key in zip(self.limits, own, strict=True)
            )
        return found

    def amounts(self, revenue: Decimal) -> tuple[Decimal, ...]:
        """What one call paying ``revenue`` adds to each limit's counter (``metric_amount``)."""
        return tuple(metric_amount(metric, revenue) for metric, _, _ in self.limits)

    def headrooms(self, revenue: Decimal) -> tuple[Decimal, ...]:
        """The most each counter may hold for a call paying ``revenue`` to fit, limit by limit.

        A call fits a limit when its counter plus what the call adds is at
        most the limit, that is when the counter is at most the limit less
        what the call adds: worked out once, exactly (a sum of long numbers
        could round), it is one comparison per call. Periods do not change it.
        """
        revenue_key = revenue if self.counts_revenue else None
        found = self._headrooms.get(revenue_key)
        if found is None:
            if len(self._headrooms) >= _REVENUES_KEPT:
                self._headrooms.clear()
            found = self._headrooms[revenue_key] = tuple(
                _EXACT.subtract(limit, amount)
                for (_, _, limit), amount in zip(self.limits, self.amounts(revenue), strict=True)
            )
        return found

    def full(self, index: int, used: Decimal) -> str:
        """Why the ``index``-th limit takes no more calls with ``used`` counted (``describe_cap``).

        The same few come back call after call, so they are kept. The text
        shows ``used`` as written (2.50 is not 2.5), so it is keyed as text.
        """
        key = (index, str(used))
        reason = self._full.get(key)
        if reason is None:
            metric, period, limit = self.limits[index]
            reason = self.label + describe_cap(metric, period, used, limit)
            if len(self._full) >= _MEMO_SIZE:
                self._full.clear()
            self._full[key] = reason
        return reason


@dataclass(frozen=True, slots=True)
class OwnerSet:
    """Owners checked together (a target's buyer, target and route, or a publisher), laid out.

    Each check only looks at the owners it concerns: ``capped`` have cap
    limits, ``with_slots`` a concurrency limit (each with it), ``spacing`` a
    spacing rule.
    ``slots`` and ``spaced`` are what a call holds once every check passed.
    """

    owners: tuple[OwnerLimits, ...]
    capped: tuple[OwnerLimits, ...]
    with_slots: tuple[tuple[OwnerLimits, ConcurrencyLimit], ...]
    spacing: tuple[OwnerLimits, ...]
    slots: tuple[ConcurrencyLimit, ...]
    spaced: tuple[str, ...]
    # Whether one of the owners has a revenue cap (see ``OwnerLimits.counts_revenue``).
    counts_revenue: bool = False
    # The time zones of the owners with caps, each once (all the buyer's, usually).
    timezones: tuple[str, ...] = ()
    # The latest answers of ``caps`` by revenue (``None`` without a revenue cap): the
    # quarter they were asked for, the period keys of ``timezones`` then, and the caps.
    _caps: dict[Decimal | None, tuple[int, tuple[PeriodKeys, ...], OwnerCaps]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, owners: tuple[OwnerLimits, ...]) -> OwnerSet:
        """The set of ``owners``, in order."""
        with_slots = tuple((owner, owner.slot) for owner in owners if owner.slot is not None)
        spacing = tuple(owner for owner in owners if owner.spacing_seconds)
        capped = tuple(owner for owner in owners if owner.limits)
        return cls(
            owners,
            capped,
            with_slots,
            spacing,
            tuple(slot for _, slot in with_slots),
            tuple(owner.owner for owner in spacing),
            any(owner.counts_revenue for owner in owners),
            tuple(dict.fromkeys(owner.timezone for owner in capped)),
        )

    def caps(self, quarter: int, revenue: Decimal) -> OwnerCaps:
        """Every cap of every owner, in order, for a call paying ``revenue`` in ``quarter``.

        The owners' caps laid end to end (see ``CapCheck``), so that a
        decision checks a target's caps in one loop. The answer only changes
        with the periods' keys and, with a revenue cap, the revenue: a new
        quarter hour looks the keys of the owners' time zone up, and keeps the
        answer while they are the same.
        """
        revenue_key = revenue if self.counts_revenue else None
        latest = self._caps.get(revenue_key)
        if latest is not None and latest[0] == quarter:
            return latest[2]
        keys = tuple(map(zone_keys, self.timezones, repeat(quarter)))
        if latest is not None and latest[1] == keys:
            found = latest[2]
        else:
            found = OwnerCaps(
                tuple(
                    (counter, headroom, owner, index)
                    for owner in self.capped
                    for index, (counter, headroom) in enumerate(
                        zip(
                            owner.counters_at(zone_keys(owner.timezone, quarter)),
                            owner.headrooms(revenue),
                            strict=True,
                        )
                    )
                ),
                revenue,
            )
        if len(self._caps) >= _REVENUES_KEPT:
            self._caps.clear()
        self._caps[revenue_key] = (quarter, keys, found)
        return found


# One cap to check: (counter, headroom, its owner, index of the limit). A call fits when
# the counter's usage is at most the headroom (see ``OwnerLimits.headrooms``).
CapCheck = tuple[CapKey, Decimal, OwnerLimits, int]
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


@dataclass(frozen=True, slots=True)
class OwnerCaps:
    """The caps of an owner set for one call: its ``checks`` and, once dialed, its charges.

    ``revenue`` is the call's, asked for; it only matters to revenue caps.
    """

    checks: tuple[CapCheck, ...]
    revenue: Decimal

    def charges(self) -> tuple[CapCharge, ...]:
        """What dialing the call reserves: each checked counter, its limit and the call's amount."""
        charges = []
        for counter, _, owner, index in self.checks:
            metric, _, limit = owner.limits[index]
            charges.append(CapCharge(counter, limit, metric_amount(metric, self.revenue)))
        return tuple(charges)


# Targets sharing owners mostly pay one revenue; past this many, the answers start afresh.
_REVENUES_KEPT = 16


NO_OWNERS = OwnerSet.of(())


# Memo answers: the rejection, or "" when the call passes, so that one lookup tells a
# known pass from an unknown key.
_PASSES = ""


# Where a call comes from, as filters see it: (state, area code, ZIP).
Place = tuple[str | None, str | None, str | None]


class FilterPart(Protocol):
    """One condition of some filters, with its answers kept: the geography or one tag rule."""

    def check(self, place: Place, tags: dict[str, str]) -> str:
        """The rejection of a call from ``place`` with ``tags``, or "" when it passes."""
        ...


@dataclass(frozen=True, slots=True)
class GeoPlan:
    """The geographic part of some filters, with its answers by (state, area code, ZIP)."""

    filters: Filters
    memo: dict[Place, str] = field(default_factory=dict, compare=False, repr=False)

    def check(self, place: Place, tags: dict[str, str]) -> str:
        """The rejection of a call from ``place`` (state, area code, ZIP), or ""; tags aside."""
        answer = self.memo.get(place)
        if answer is None:
            if len(self.memo) >= _MEMO_SIZE:
                self.memo.clear()
            # Without tag rules, the filters only look at the place.
            answer = self.memo[place] = self.filters.rejection(*place, {}) or _PASSES
        return answer


@dataclass(frozen=True, slots=True)
class RulePlan:
    """One tag rule, with its answers by the value of the tag it names."""

    tag: str
    filters: Filters
    memo: dict[str | None, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, rule: TagRule) -> RulePlan:
        """The plan of ``rule``, as filters with no other condition."""
        return cls(rule.tag, Filters(tags=[rule]))

    def check(self, place: Place, tags: dict[str, str]) -> str:
        """The rejection of a call with ``tags``, or ""; the place aside."""
        value = tags.get(self.tag)
        answer = self.memo.get(value)
        if answer is None:
            if len(self.memo) >= _MEMO_SIZE:
                self.memo.clear()
            # The rule only looks at its tag: the answer is the same for every call with it.
            answer = self.memo[value] = self.filters.rejection(None, None, None, tags) or _PASSES
        return answer


def filter_parts(
    filters: Filters, geo_plans: dict[str, GeoPlan], rule_plans: dict[str, RulePlan]
) -> tuple[FilterPart, ...]:
    """``filters`` split into their geography, then each tag rule, each with a memo of answers.

    ``Filters.rejection`` checks the geography, then each rule in order, and
    the first to fail is the reason: the parts are checked in this order. The
    geography depends only on the call's state, area code and ZIP, a rule only
    on its tag's value, so answers are kept per value (up to ``_MEMO_SIZE``
    each, then started afresh). Equal parts are compiled once, through
    ``geo_plans`` and ``rule_plans``: buyers share equal rules (``age > 64``),
    and with them their answers.
    """
    parts: list[FilterPart] = []
    if (
        filters.states
        or filters.exclude_states
        or filters.area_codes
        or filters.exclude_area_codes
        or filters.zips
    ):
        # The same filters without their tag rules: only the geography is left.
        place_only = filters.model_copy(update={"tags": []})
        key = place_only.model_dump_json()
        parts.append(geo_plans.get(key) or geo_plans.setdefault(key, GeoPlan(place_only)))
    for rule in filters.tags:
        key = rule.model_dump_json()
        parts.append(rule_plans.get(key) or rule_plans.setdefault(key, RulePlan.of(rule)))
    return tuple(parts)


_MEMO_SIZE = 4096


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """One target as a route entry reaches it, with every override resolved.

    Checks that can fail carry whether the failure concerns the target alone
    (``True``) or its buyer: ``disabled`` is the (reason, target-level) of a
    switched-off buyer or target, ``filters`` the parts of the buyer's filters
    then the target's (``filter_parts``), laid end to end so that a call
    checks them in one loop. ``pair`` is (buyer id, target id), which a call
    is offered at most once.
    """

    buyer: Buyer
    target: Target
    pair: tuple[str, str]
    disabled: tuple[str, bool] | None
    hours: Hours | None
    hours_target_level: bool
    filters: tuple[tuple[FilterPart, bool], ...]
    duplicates: DuplicateRule | None
    # The owners of the buyer, target and route with limits, laid out for checking;
    # shared by every target with the same owners.
    owner_set: OwnerSet
    ring_timeout_seconds: int
    whisper: WhisperConfig
    conversion: ConversionRule
    # The latest candidate made of this target, with what it was made of: (publisher's
    # owners, no-convert reason, the caps of the owners and the publisher, candidate).
    latest: list[tuple[OwnerSet, str | None, tuple[OwnerCaps, OwnerCaps], Candidate]] = field(
        default_factory=list, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """A route entry of a tier: the buyer and the targets it names, in order."""

    buyer: Buyer
    target_id: str | None
    targets: tuple[TargetPlan, ...]
    # Whether one of its (buyer, target) pairs is in an earlier tier too: only then can
    # it already be a candidate when the entry's tier is checked.
    repeats: bool = False
    # For each target, the index of an earlier target of the entry whose checks that
    # depend on the call are the same (so is their answer), or None; see ``checked_alike``.
    alike: tuple[int | None, ...] = ()
    # Skipped rows of this entry by (target id or None, reason), shared by decisions:
    # the same few reasons come back call after call. See ``routing.decision``.
    rows: dict[tuple[str | None, str], Skipped] = field(
        default_factory=dict, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class TierPlan:
    """A tier: its method, ring mode and members (parallel to ``entries``)."""

    index: int
    method: RoutingMethod
    ring: RingMode
    members: tuple[Member, ...]
    entries: tuple[EntryPlan, ...]


@dataclass(frozen=True, slots=True)
class EntryGate:
    """What switches and schedules decide for one route entry's targets, ahead of a call.

    ``failures`` is parallel to the entry's targets: (reason, target level),
    or ``None`` for a target that needs the call's own checks. ``rows`` are
    the entry's skipped rows when every target failed here, else ``None``.
    ``uniform`` says that every target passed here, none can already be a
    candidate and all are checked alike (``EntryPlan.alike``): the first
    target's answer is every target's, as with a single target.
    """

    failures: tuple[tuple[str, bool] | None, ...]
    rows: tuple[Skipped, ...] | None
    uniform: bool = False


@dataclass(frozen=True, slots=True)
class TierGate:
    """The gates of a tier's entries; ``rows`` are all its skipped rows when every one failed."""

    entries: tuple[EntryGate, ...]
    rows: tuple[Skipped, ...] | None


# The gates of a campaign's tiers for one set of schedule answers.
Gates = tuple[TierGate, ...]


# What a routing decision reads: the cap counters, and the owners whose calls in
# progress and latest calls it looks at.
Scope = tuple[frozenset[CapKey], frozenset[str]]


@dataclass(frozen=True, slots=True)
class CampaignPlan:
    """A campaign's routing, compiled."""

    campaign: Campaign
    tiers: tuple[TierPlan, ...]
    blocked_numbers: frozenset[str]
    # Every distinct schedule of the campaign's targets, each compiled once.
    schedules: tuple[Hours, ...] = ()
    # What disabled switches and schedules decide, by the schedules' answers; see
    # ``routing.decision``. Answers change only when a schedule opens or closes.
    gates: dict[tuple[str | None, ...], Gates] = field(
        default_factory=dict, compare=False, repr=False
    )
    # What ``counter_scope`` answered last with each publisher (by its owner set's
    # identity), and the quarter hour it holds for: every call then gets the same.
    scopes: dict[int, tuple[int, Scope]] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything routing needs from one configuration, indexed by id."""

    campaigns: dict[str, CampaignPlan]
    # Each publisher's caps, checked with every target (``NO_OWNERS`` when it sets none).
    publishers: dict[str, OwnerSet]


_PLANS: dict[int, Plan] = {}

# Every time zone in use today is offset from UTC by a multiple of 15 minutes, so
# calendar periods (hour, day, week, month) start on a UTC quarter hour.
_QUARTER_SECONDS = 15 * 60


def quarter_of(now: datetime) -> int:
    """The UTC quarter hour containing ``now``: every cap period key is the same within it."""
    return int(now.timestamp()) // _QUARTER_SECONDS


# The key of every period, in ``CAP_PERIODS`` order, in one time zone (``zone_keys``).
PeriodKeys = tuple[str, ...]
_PERIOD_INDEX: dict[CapPeriod, int] = {period: index for index, period in enumerate(CAP_PERIODS)}


@lru_cache(maxsize=4096)
def zone_keys(timezone: str, quarter: int) -> PeriodKeys:
    """The key of every cap period in ``timezone`` during UTC quarter hour ``quarter``.

    Owners in one time zone share them: a new quarter hour works them out
    once per zone, not once per owner.
    """
    return period_keys(datetime.fromtimestamp(quarter * _QUARTER_SECONDS, UTC), timezone)


def compile_plan(configuration: Configuration) -> Plan:
    """The routing plan of ``configuration``, compiled on first use and kept while it lives.

    Raises ``ConfigError`` when the configuration refers to unknown buyers or
    targets (``config.validate_configuration`` reports those before this can happen).
    """
    key = id(configuration)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _compile(configuration)
        _PLANS[key] = plan
        # Ids are reused after an object dies: forget the plan with the configuration.
        weakref.finalize(configuration, _PLANS.pop, key, None)
    return plan


def _compile(configuration: Configuration) -> Plan:
    problems = configuration.reference_problems()
    if problems:
        raise ConfigError([f"{format_location(loc)}: {message}" for loc, message in problems])
    publishers = {}
    for publisher in configuration.publishers:
        limits = OwnerLimits.of(
            publisher_owner(publisher.id),
            f"publisher {publisher.id}: ",
            publisher.caps,
            publisher.timezone,
            target_level=False,
        )
        publishers[publisher.id] = NO_OWNERS if limits is None else OwnerSet.of((limits,))
    compiler = _Compiler(configuration.buyers_by_id)
    campaigns = {campaign.id: compiler.campaign(campaign) for campaign in configuration.campaigns}
    return Plan(campaigns, publishers)


@dataclass(frozen=True, slots=True)
class _OwnerParts:
    """What a buyer or target contributes to every entry that names it."""

    limits: OwnerLimits | None
    hours: Hours | None
    filters: tuple[FilterPart, ...]


class _Compiler:
    """Compiles campaigns, sharing each buyer's and target's parts (and their memos)."""

    def __init__(self, buyers: dict[str, Buyer]) -> None:
        self.buyers = buyers
        self.parts: dict[tuple[str, str | None], _OwnerParts] = {}
        self.hours: dict[str, Hours] = {}
        # One tuple per distinct set of owners: a decision keeps answers by its identity.
        self.owner_sets: dict[tuple[int, ...], OwnerSet] = {}
        # Equal filter parts are compiled once, so that their answers are shared.
        self.geo_plans: dict[str, GeoPlan] = {}
        self.rule_plans: dict[str, RulePlan] = {}

    def owners(self, *limits: OwnerLimits | None) -> OwnerSet:
        """The owners with limits among ``limits``, one set shared by the targets using them."""
        owners = tuple(owner for owner in limits if owner is not None)
        key = tuple(map(id, owners))
        found = self.owner_sets.get(key)
        if found is None:
            found = self.owner_sets[key] = OwnerSet.of(owners)
        return found

    def compile_hours(self, schedule: Schedule, timezone: str) -> Hours:
        """One ``Hours`` per distinct schedule, so a decision works each one out once."""
        key = f"{timezone} {schedule.model_dump_json()}"
        hours = self.hours.get(key)
        if hours is None:
            hours = self.hours[key] = Hours.compile(schedule, timezone)
        return hours

    def campaign(self, campaign: Campaign) -> CampaignPlan:
        tiers: list[TierPlan] = []
        earlier: set[tuple[str, str]] = set()
        for index, tier in enumerate(campaign.routing.tiers):
            entries = [self.entry(campaign, entry, earlier) for entry in tier.buyers]
            earlier.update(target.pair for entry in entries for target in entry.targets)
            tiers.append(
                TierPlan(
                    index=index,
                    method=get_method(tier.method),
                    ring=tier.ring,
                    members=tuple(
                        Member(member_key(e.buyer, e.target), e.weight) for e in tier.buyers
                    ),
                    entries=tuple(entries),
                )
            )
        blocked = frozenset(normalize_number(n) or n.strip() for n in campaign.blocking.numbers)
        schedules = {
            id(target.hours): target.hours
            for tier in tiers
            for entry in tier.entries
            for target in entry.targets
            if target.hours is not None
        }
        return CampaignPlan(campaign, tuple(tiers), blocked, tuple(schedules.values()))

    def owner_parts(self, buyer: Buyer, target: Target | None) -> _OwnerParts:
        key = (buyer.id, None if target is None else target.id)
        parts = self.parts.get(key)
        if parts is None:
            if target is None:
                owner, label, caps = buyer_owner(buyer.id), "", buyer.caps
                schedule, filters = buyer.schedule, buyer.filters
            else:
                owner, label, caps = (
                    target_owner(buyer.id, target.id),
                    f"target {target.id}: ",
                    target.caps,
                )
                schedule, filters = target.schedule, target.filters
            parts = self.parts[key] = _OwnerParts(
                OwnerLimits.of(owner, label, caps, buyer.timezone, target_level=target is not None),
                None if schedule is None else self.compile_hours(schedule, buyer.timezone),
                () if filters is None else filter_parts(filters, self.geo_plans, self.rule_plans),
            )
        return parts

    def entry(
        self, campaign: Campaign, entry: RouteEntry, earlier: set[tuple[str, str]]
    ) -> EntryPlan:
        """The plan of ``entry``; ``earlier`` are the pairs of the tiers before it."""
        buyer = self.buyers[entry.buyer]
        buyer_parts = self.owner_parts(buyer, None)
        # Route caps are the buyer's caps on this campaign: they count in the buyer's time zone.
        route_limits = OwnerLimits.of(
            route_owner(campaign.id, buyer.id, entry.target),
            f"campaign {campaign.id}: ",
            entry.caps,
            buyer.timezone,
            target_level=False,
        )
        targets = []
        for target in buyer.targets:
            if entry.target is not None and target.id != entry.target:
                continue
            target_parts = self.owner_parts(buyer, target)
            owner_set = self.owners(buyer_parts.limits, target_parts.limits, route_limits)
            targets.append(
                TargetPlan(
                    buyer=buyer,
                    target=target,
                    pair=(buyer.id, target.id),
                    disabled=(
                        ("buyer disabled", False)
                        if not buyer.enabled
                        else None
                        if target.enabled
                        else ("target disabled", True)
                    ),
                    hours=target_parts.hours or buyer_parts.hours,
                    hours_target_level=target_parts.hours is not None,
                    filters=tuple(
                        (part, target_level)
                        for parts, target_level in (
                            (buyer_parts.filters, False),
                            (target_parts.filters, True),
                        )
                        for part in parts
                    ),
                    duplicates=buyer.duplicates,
                    owner_set=owner_set,
                    ring_timeout_seconds=target.ring_timeout_seconds
                    or buyer.ring_timeout_seconds
                    or campaign.ring_timeout_seconds,
                    whisper=campaign.whisper_for(buyer, target),
                    conversion=entry.conversion or target.conversion or buyer.conversion,
                )
            )
        repeats = any(target.pair in earlier for target in targets)
        alike = tuple(
            next((i for i in range(index) if checked_alike(targets[i], target)), None)
            for index, target in enumerate(targets)
        )
        return EntryPlan(buyer, entry.target, tuple(targets), repeats, alike)


def checked_alike(first: TargetPlan, second: TargetPlan) -> bool:
    """Whether the checks that depend on the call answer alike for both targets.

    Those checks (``routing.decision``'s ``evaluate``) read the filters, the
    buyer's duplicate rule, the owners and the revenue, nothing else: targets
    of a buyer that add no filters or caps of their own share all four.
    """
    return (
        first.buyer is second.buyer
        and len(first.filters) == len(second.filters)
        and all(
            a is b and a_level == b_level
            for (a, a_level), (b, b_level) in zip(first.filters, second.filters, strict=True)
        )
        and first.duplicates is second.duplicates
        and first.owner_set is second.owner_set
        and first.conversion.revenue == second.conversion.revenue
    )


def counter_scope(configuration: Configuration, attributes: CallAttributes, now: datetime) -> Scope:
    """The cap counters and the owners a routing decision for this call reads.

    The owners of every target of the campaign and the publisher's: they only
    change with the periods' keys, so each campaign keeps its latest answer
    with each publisher for the quarter hour it was asked in.
    """
    plan = compile_plan(configuration)
    publisher = plan.publishers.get(attributes.publisher_id or "", NO_OWNERS)
    quarter = quarter_of(now)
    campaign = plan.campaigns.get(attributes.campaign_id)
    if campaign is None:
        return _scope(publisher.owners, quarter)
    latest = campaign.scopes.get(id(publisher))
    if latest is None or latest[0] != quarter:
        owners = [
            owner
            for tier in campaign.tiers
            for entry in tier.entries
            for target in entry.targets
            for owner in target.owner_set.owners
        ]
        latest = campaign.scopes[id(publisher)] = (
            quarter,
            _scope([*owners, *publisher.owners], quarter),
        )
    return latest[1]


def _scope(owners: Sequence[OwnerLimits], quarter: int) -> Scope:
    """The counters of ``owners`` in the periods of ``quarter`` (as ``OwnerSet.caps``), and them."""
    keys = frozenset(
        key for owner in owners for key in owner.counters_at(zone_keys(owner.timezone, quarter))
    )
    return keys, frozenset(owner.owner for owner in owners)
