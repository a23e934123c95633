"""The routing decision: which buyers a call is offered to, in order, and why not the others.

``decide`` is a pure function of the configuration, the call's attributes, a
snapshot of the counters and ``now``. Each route entry's targets go through
the eligibility checks in a fixed order, and the first that fails is the
reason the target is skipped:

1. campaign disabled, caller blocked (the whole call is refused);
2. buyer or target disabled;
3. schedule (a target's schedule overrides its buyer's);
4. filters, the buyer's then the target's;
5. duplicates (the buyer's rule; ``no_convert`` keeps the candidate);
6. caps of the buyer, target, route entry and publisher;
7. concurrency, then spacing, of the same owners.

The tier's method then orders its eligible members, tiers follow each other
in order, and the list stops at the plan's ``max_candidates``.

Every target must get its true reason, so every check runs; what makes a
decision fast is not doing the same work twice. Kept between decisions, in
the compiled plan (so they live and die with the configuration, and are
bounded): each schedule's latest answer and the instants it holds for; the
gates (steps 2 and 3 for every target, and the rows of entries and tiers
that fail there entirely) for each set of schedule answers; filter answers
by place and by tag value; each owner set's caps laid end to end, with the
counters of the current periods and the headroom for the call's revenue
(``OwnerSet.caps``); skipped rows; each target's latest candidate, served
again when made of the same. Targets of an entry that add nothing to their
buyer's checks share one answer (``EntryPlan.alike``). Kept for one
decision: each owner set's answer, which a buyer's targets share, and the
publisher's, which every target shares. What a target reserves is only put
together for the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from callwhisper.domain import (
    CallAttributes,
    CapCharge,
    CapKey,
    ConcurrencyLimit,
    Configuration,
    DuplicateRule,
    PastCall,
    Reservation,
    RoutingCounters,
    TierRotation,
    WhisperConfig,
)
from callwhisper.domain.campaign import RingMode
from callwhisper.routing.geo import enrich, is_withheld, normalize_number
from callwhisper.routing.methods import rotation_to_dict
from callwhisper.routing.plan import (
    NO_OWNERS,
    CampaignPlan,
    EntryGate,
    EntryPlan,
    Gates,
    OwnerCaps,
    OwnerSet,
    TargetPlan,
    TierGate,
    compile_plan,
    quarter_of,
)

_ZERO = Decimal(0)
_NO_ROTATION = TierRotation()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A buyer target to offer the call to, with all the call flow needs to dial and bill it.

    ``charges`` and ``concurrency`` are what the attempt reserves in the cap
    ledger (calendar periods as of the decision's ``now``). ``no_convert``
    means the call must not convert for this buyer: a duplicate under the
    buyer's ``no_convert`` rule or under the campaign's rule.
    """

    buyer_id: str
    buyer_name: str
    target_id: str
    destination: str
    trunk_id: str | None
    tier_index: int
    ring: RingMode
    ring_timeout_seconds: int
    whisper: WhisperConfig
    revenue: Decimal
    buffer_seconds: int
    no_convert: bool
    no_convert_reason: str | None
    charges: tuple[CapCharge, ...]
    concurrency: tuple[ConcurrencyLimit, ...]
    spaced: tuple[str, ...] = ()

    def reservation(self, reservation_id: str, at: datetime) -> Reservation:
        """The cap ledger reservation for dialing this candidate at ``at``."""
        return Reservation(reservation_id, self.charges, self.concurrency, at, self.spaced)

    def to_dict(self) -> dict[str, Any]:
        """The candidate as JSON-ready data (the whisper is configuration, so it is left out)."""
        return {
            "buyer_id": self.buyer_id,
            "buyer_name": self.buyer_name,
            "target_id": self.target_id,
            "destination": self.destination,
            "trunk_id": self.trunk_id,
            "tier_index": self.tier_index,
            "ring": self.ring,
            "ring_timeout_seconds": self.ring_timeout_seconds,
            "revenue": str(self.revenue),
            "buffer_seconds": self.buffer_seconds,
            "no_convert": self.no_convert,
            "no_convert_reason": self.no_convert_reason,
            "charges": [
                {
                    "owner": charge.key.owner,
                    "metric": charge.key.metric,
                    "period": charge.key.period,
                    "period_key": charge.key.period_key,
                    "limit": str(charge.limit),
                    "amount": str(charge.amount),
                }
                for charge in self.charges
            ],
            "concurrency": [
                {"owner": slot.owner, "limit": slot.limit} for slot in self.concurrency
            ],
        }

    def describe(self) -> str:
        """One line: who, where, which tier, and what a conversion pays."""
        text = (
            f"{self.buyer_id}/{self.target_id} ({self.buyer_name}) -> {self.destination}, "
            f"tier {self.tier_index + 1} {self.ring}, ring {self.ring_timeout_seconds} s, "
            f"pays {self.revenue} after {self.buffer_seconds} s"
        )
        if self.no_convert_reason is not None:
            text += f", does not convert ({self.no_convert_reason})"
        return text


@dataclass(frozen=True, slots=True)
class Skipped:
    """A buyer (``target_id`` ``None``: all its targets in the entry) or target not offered."""

    buyer_id: str
    target_id: str | None
    tier_index: int
    reason: str


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The outcome of routing one call.

    ``call_refused`` is set when the call is not routed at all (campaign
    disabled, caller blocked). ``rotations`` holds the new rotation state of
    the tiers that supplied candidates, keyed like ``RoutingCounters.rotation``
    by (campaign id, tier index), for the caller to persist. ``duplicate`` is
    set when the campaign's duplicate rule matched: the call does not convert.
    """

    call_refused: str | None
    candidates: tuple[Candidate, ...]
    skipped: tuple[Skipped, ...]
    rotations: Mapping[tuple[str, int], TierRotation]
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready data, for storage with the call."""
        return {
            "call_refused": self.call_refused,
            "duplicate": self.duplicate,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "skipped": [
                {
                    "buyer_id": s.buyer_id,
                    "target_id": s.target_id,
                    "tier_index": s.tier_index,
                    "reason": s.reason,
                }
                for s in self.skipped
            ],
            "rotations": [
                {"campaign_id": campaign_id, "tier_index": tier_index, **rotation_to_dict(rotation)}
                for (campaign_id, tier_index), rotation in self.rotations.items()
            ],
        }

    def explain(self) -> str:
        """The decision as readable text: one line per candidate and per skipped buyer."""
        if self.call_refused is not None:
            return f"call refused: {self.call_refused}"
        lines = ["duplicate call: it does not convert"] if self.duplicate else []
        lines += [
            f"candidate {number}: {candidate.describe()}"
            for number, candidate in enumerate(self.candidates, 1)
        ]
        if not self.candidates:
            lines.append("no candidates")
        lines += [
            f"skipped {s.buyer_id}/{s.target_id or '*'} (tier {s.tier_index + 1}): {s.reason}"
            for s in self.skipped
        ]
        return "\n".join(lines)


def refused(reason: str) -> RoutingDecision:
    """A decision that refuses the whole call for ``reason``."""
    return RoutingDecision(reason, (), (), {}, duplicate=False)


def decide(
    configuration: Configuration,
    attributes: CallAttributes,
    counters: RoutingCounters,
    now: datetime,
) -> RoutingDecision:
    """Route one call: the ordered candidates, and why every other buyer was skipped.

    ``now`` must be an aware datetime. The caller's geography is filled from
    its number when the attributes do not carry it.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    plan = compile_plan(configuration)
    campaign_plan = plan.campaigns.get(attributes.campaign_id)
    if campaign_plan is None:
        return refused(f"unknown campaign {attributes.campaign_id}")
    campaign = campaign_plan.campaign
    if not campaign.enabled:
        return refused(f"campaign {campaign.id} disabled")
    blocked = _blocked(campaign_plan, attributes.caller)
    if blocked is not None:
        return refused(blocked)
    publisher = plan.publishers.get(attributes.publisher_id or "", NO_OWNERS)
    return _Decider(campaign_plan, enrich(attributes), counters, now, publisher).run()


def _blocked(plan: CampaignPlan, caller: str | None) -> str | None:
    if caller is None or is_withheld(caller):
        return "anonymous caller blocked" if plan.campaign.blocking.anonymous else None
    if plan.blocked_numbers and (
        caller.strip() in plan.blocked_numbers or normalize_number(caller) in plan.blocked_numbers
    ):
        return f"caller {caller} blocked"
    return None


# A failed check: the reason, and whether it concerns the target alone (not its buyer).
_Failure = tuple[str, bool]


# Skipped rows are immutable and the same few come back call after call, so each
# entry keeps the ones it made; past this many (counts in reasons vary) it starts afresh.
_ROWS_PER_ENTRY = 256
# Schedule answers change a few times a day; this bounds the gates kept per campaign.
_GATES_PER_CAMPAIGN = 1024
_NO_PASSES: tuple[TargetPlan, ...] = ()


def _row(entry: EntryPlan, target_id: str | None, tier_index: int, reason: str) -> Skipped:
    """The skipped row of ``entry`` for ``target_id`` (``None``: the buyer), made once."""
    rows = entry.rows
    key = (target_id, reason)
    row = rows.get(key)
    if row is None:
        if len(rows) >= _ROWS_PER_ENTRY:
            rows.clear()
        row = rows[key] = Skipped(entry.buyer.id, target_id, tier_index, reason)
    return row


def _entry_rows(
    entry: EntryPlan, tier_index: int, failures: list[tuple[str, str, bool]], passed: bool
) -> list[Skipped]:
    """Skipped rows of one entry: one row when the buyer itself failed, else one per target."""
    if not passed and not any(level for _, _, level in failures):
        reason = failures[0][1]
        if all(other == reason for _, other, _ in failures):
            return [_row(entry, entry.target_id, tier_index, reason)]
    return [_row(entry, target_id, tier_index, reason) for target_id, reason, _ in failures]


def _gates(plan: CampaignPlan, closed: tuple[str | None, ...]) -> Gates:
    """What switches and schedules decide for every target, given each schedule's answer.

    ``closed`` is parallel to ``plan.schedules``. Both checks come before any
    that depend on the call, so their failures (and the rows of entries that
    fail entirely) are the same for every call while the answers hold.
    """
    gates = plan.gates.get(closed)
    if gates is not None:
        return gates
    reasons = {id(hours): reason for hours, reason in zip(plan.schedules, closed, strict=True)}
    tiers: list[TierGate] = []
    for tier in plan.tiers:
        entries: list[EntryGate] = []
        for entry in tier.entries:
            failures: list[_Failure | None] = []
            for target in entry.targets:
                failure = target.disabled
                if failure is None and target.hours is not None:
                    reason = reasons[id(target.hours)]
                    if reason is not None:
                        failure = (reason, target.hours_target_level)
                failures.append(failure)
            rows: tuple[Skipped, ...] | None = None
            if all(failure is not None for failure in failures):
                rows = tuple(
                    _entry_rows(
                        entry,
                        tier.index,
                        [
                            (target.target.id, *failure)
                            for target, failure in zip(entry.targets, failures, strict=True)
                            if failure is not None
                        ],
                        passed=False,
                    )
                    if failures
                    else ()
                )
            uniform = (
                not entry.repeats
                and all(failure is None for failure in failures)
                and all(alike == 0 for alike in entry.alike[1:])
            )
            entries.append(EntryGate(tuple(failures), rows, uniform))
        tier_rows: tuple[Skipped, ...] | None = None
        if all(entry.rows is not None for entry in entries):
            tier_rows = tuple(row for entry in entries for row in entry.rows or ())
        tiers.append(TierGate(tuple(entries), tier_rows))
    if len(plan.gates) >= _GATES_PER_CAMPAIGN:
        plan.gates.clear()
    gates = plan.gates[closed] = tuple(tiers)
    return gates


class _Decider:
    """The state of one decision: the call, the counters and per-decision caches."""

    def __init__(
        self,
        plan: CampaignPlan,
        attributes: CallAttributes,
        counters: RoutingCounters,
        now: datetime,
        publisher: OwnerSet,
    ) -> None:
        self.plan = plan
        self.attributes = attributes
        self.counters = counters
        self.now = now
        self.publisher = publisher
        self.quarter = quarter_of(now)
        self.tags = _tags(attributes)
        # Where the call comes from, as filters look it up.
        self.place = (attributes.state, attributes.area_code, attributes.zip_code)
        # The publisher's answers for this call, by revenue (``None``: without a revenue cap),
        # and the one for every revenue once known (at once when there is no publisher).
        self.publisher_answers: dict[Decimal | None, _PublisherAnswer] = {}
        self.publisher_answer: _PublisherAnswer | None = None if publisher.owners else _FITS
        # Answers per owner set (by identity): (revenue, failure or None).
        self.owners_failed: dict[int, tuple[Decimal, _Failure | None]] = {}
        # Duplicate rules look for the same caller; a withheld caller has no history.
        self.history: Sequence[PastCall] = (
            () if is_withheld(attributes.caller) else counters.caller_history
        )
        rule = plan.campaign.duplicates
        self.campaign_duplicate = (
            _duplicate(rule, self.history, plan.campaign.id, None, now)
            if rule is not None and self.history
            else None
        )

    def run(self) -> RoutingDecision:
        """Check every tier's targets, then order each tier's eligible members and offer them."""
        campaign = self.plan.campaign
        max_candidates = campaign.routing.max_candidates
        not_tried = f"not tried: already {max_candidates} candidates (max_candidates)"
        candidates: list[Candidate] = []
        skipped: list[Skipped] = []
        rotations: dict[tuple[str, int], TierRotation] = {}
        chosen_in: dict[tuple[str, str], int] = {}
        evaluate = self.evaluate
        gates = _gates(self.plan, self.closed_reasons())
        for tier, tier_gate in zip(self.plan.tiers, gates, strict=True):
            if tier_gate.rows is not None:
                # Every target of the tier failed on a switch or a schedule (as at night):
                # no member is eligible, so the tier supplies nothing and its rotation stays.
                skipped += tier_gate.rows
                continue
            tier_index = tier.index
            # The targets of each entry that passed every check.
            passes_of: list[Sequence[TargetPlan]] = []
            for entry, gate in zip(tier.entries, tier_gate.entries, strict=True):
                if gate.rows is not None:
                    # Every target failed on a switch or a schedule: rows made in advance. None
                    # of them can be a candidate of an earlier tier ("already a candidate" would
                    # come first): switches and schedules are the buyer's and target's own, so
                    # the pair failed them in every entry naming it.
                    skipped += gate.rows
                    passes_of.append(_NO_PASSES)
                    continue
                if gate.uniform:
                    # The common case, in short: one target (or targets checked alike) that
                    # the gate let through, and that no earlier tier can have chosen.
                    result = evaluate(entry.targets[0])
                    if result is None:
                        passes_of.append(entry.targets)
                        continue
                    reason, target_level = result
                    if target_level:
                        skipped += [
                            _row(entry, target.target.id, tier_index, reason)
                            for target in entry.targets
                        ]
                    else:
                        # The buyer's own failure: one row for the entry (see ``_entry_rows``).
                        skipped.append(_row(entry, entry.target_id, tier_index, reason))
                    passes_of.append(_NO_PASSES)
                    continue
                passes: list[TargetPlan] = []
                failures: list[tuple[str, str, bool]] = []
                # What ``evaluate`` answered, by target index: a target checked alike to an
                # earlier one (``EntryPlan.alike``) gets the same answer.
                answers: dict[int, _Failure | None] = {}
                for index, (target_plan, failure, alike) in enumerate(
                    zip(entry.targets, gate.failures, entry.alike, strict=True)
                ):
                    earlier = chosen_in.get(target_plan.pair) if entry.repeats else None
                    if earlier is not None:
                        result = f"already a candidate in tier {earlier + 1}", True
                    elif failure is not None:
                        result = failure
                    elif alike is not None and alike in answers:
                        result = answers[index] = answers[alike]
                    else:
                        result = answers[index] = evaluate(target_plan)
                    if result is None:
                        passes.append(target_plan)
                        continue
                    failures.append((target_plan.target.id, *result))
                if failures:
                    skipped += _entry_rows(entry, tier_index, failures, passed=bool(passes))
                passes_of.append(passes)
            if not any(passes_of):
                # No member is eligible: the tier supplies nothing and its rotation stays.
                continue
            key = (campaign.id, tier_index)
            rotation = self.counters.rotation.get(key, _NO_ROTATION)
            ordering = tier.method.order(tier.members, list(map(bool, passes_of)), rotation)
            supplied = False
            for index in ordering.order:
                for passed in passes_of[index]:
                    pair = passed.pair
                    earlier = chosen_in.get(pair)
                    if earlier is not None:
                        reason = f"already a candidate in tier {earlier + 1}"
                    elif len(candidates) >= max_candidates:
                        reason = not_tried
                    else:
                        candidates.append(self.candidate(passed, tier_index, tier.ring))
                        chosen_in[pair] = tier_index
                        supplied = True
                        continue
                    skipped.append(_row(tier.entries[index], pair[1], tier_index, reason))
            if supplied and ordering.rotation != rotation:
                rotations[key] = ordering.rotation
        return RoutingDecision(
            call_refused=None,
            candidates=tuple(candidates),
            skipped=tuple(skipped),
            rotations=rotations,
            duplicate=self.campaign_duplicate is not None,
        )

    def closed_reasons(self) -> tuple[str | None, ...]:
        """Why each of the campaign's schedules is closed now (``None``: open)."""
        now = self.now
        return tuple([hours.closed_reason(now) for hours in self.plan.schedules])

    def evaluate(self, plan: TargetPlan) -> _Failure | None:
        """The checks that depend on the call, in order; the first failure is its reason.

        Switches and schedules come first and are settled by ``_gates``. What
        a target that passes reserves is only worked out if it becomes a
        candidate (``candidate``): most never do.
        """
        place, tags = self.place, self.tags
        for part, target_level in plan.filters:
            rejection = part.check(place, tags)
            if rejection:
                return rejection, target_level
        if plan.duplicates is not None and plan.duplicates.action == "skip" and self.history:
            duplicate = _duplicate(
                plan.duplicates, self.history, self.plan.campaign.id, plan.buyer.id, self.now
            )
            if duplicate is not None:
                return duplicate, False
        owners, revenue = plan.owner_set, plan.conversion.revenue
        known = self.owners_failed.get(id(owners))
        if known is not None and known[0] == revenue:
            return known[1]
        answer = self.owners_check(owners, revenue)
        self.owners_failed[id(owners)] = (revenue, answer)
        return answer

    def candidate(self, plan: TargetPlan, tier_index: int, ring: RingMode) -> Candidate:
        """The candidate of ``plan``, which passed every check: what dialing it reserves."""
        no_convert_reason = self.campaign_duplicate
        if plan.duplicates is not None and self.history:
            # The rule did not skip the target ("skip" fails the check): it keeps it.
            duplicate = _duplicate(
                plan.duplicates, self.history, self.plan.campaign.id, plan.buyer.id, self.now
            )
            if duplicate is not None:
                no_convert_reason = duplicate
        owners, publisher = plan.owner_set, self.publisher
        revenue = plan.conversion.revenue
        # The caps the checks looked at: kept answers for this quarter hour and revenue.
        caps = owners.caps(self.quarter, revenue), publisher.caps(self.quarter, revenue)
        if plan.latest:
            # Candidates are immutable: the latest one serves again when made of the same.
            # A target plan is its entry's, in one tier: its tier and ring never change.
            latest_publisher, latest_reason, latest_caps, latest = plan.latest[0]
            if (
                latest_publisher is publisher
                and latest_reason == no_convert_reason
                and latest_caps == caps
            ):
                return latest
        candidate = Candidate(
            buyer_id=plan.buyer.id,
            buyer_name=plan.buyer.name or plan.buyer.id,
            target_id=plan.target.id,
            destination=plan.target.destination,
            trunk_id=plan.target.trunk,
            tier_index=tier_index,
            ring=ring,
            ring_timeout_seconds=plan.ring_timeout_seconds,
            whisper=plan.whisper,
            revenue=revenue,
            buffer_seconds=plan.conversion.buffer_seconds,
            no_convert=no_convert_reason is not None,
            no_convert_reason=no_convert_reason,
            charges=caps[0].charges() + caps[1].charges(),
            concurrency=owners.slots + publisher.slots,
            spaced=owners.spaced + publisher.spaced,
        )
        plan.latest[:] = [(publisher, no_convert_reason, caps, candidate)]
        return candidate

    def owners_check(self, owners: OwnerSet, revenue: Decimal) -> _Failure | None:
        """Why a call paying ``revenue`` does not fit ``owners`` and the publisher, if it does not.

        Every cap of every owner comes first, then concurrency, then spacing,
        the publisher last in each. Targets of a buyer share their owners (see
        ``compile_plan``), so ``evaluate`` keeps the answer for the rest of the
        call; the publisher's answers are worked out once per call
        (``publisher_check``).
        """
        failure = _cap_failure(owners.caps(self.quarter, revenue), self.counters.cap_usage)
        if failure is not None:
            return failure
        publisher = self.publisher_answer or self.publisher_check(revenue)
        if publisher[0] is not None:
            return publisher[0]
        failure = _slot_failure(owners, self.counters.in_progress) if owners.slots else None
        if failure is not None:
            return failure
        if publisher[1] is not None:
            return publisher[1]
        if owners.spacing:
            failure = _spacing_failure(owners, self.counters.last_call_at, self.now)
            if failure is not None:
                return failure
        return publisher[2]

    def publisher_check(self, revenue: Decimal) -> _PublisherAnswer:
        """The publisher's first full cap, concurrency and spacing failures, each or ``None``.

        Every target is checked against the publisher, so its answers are
        worked out once per call (per revenue, when it has a revenue cap).
        """
        publisher = self.publisher
        key = revenue if publisher.counts_revenue else None
        answer = self.publisher_answers.get(key)
        if answer is None:
            answer = self.publisher_answers[key] = (
                _cap_failure(publisher.caps(self.quarter, revenue), self.counters.cap_usage),
                _slot_failure(publisher, self.counters.in_progress),
                _spacing_failure(publisher, self.counters.last_call_at, self.now),
            )
            if key is None:
                # The same for every revenue: no need to ask again.
                self.publisher_answer = answer
        return answer


# The publisher's answers to a call: (caps, concurrency, spacing) failures.
_PublisherAnswer = tuple[_Failure | None, _Failure | None, _Failure | None]
_FITS: _PublisherAnswer = (None, None, None)


def _cap_failure(caps: OwnerCaps, usage: Mapping[CapKey, Decimal]) -> _Failure | None:
    """Why a call does not fit ``caps`` with the counters at ``usage``: the first full cap."""
    for key, headroom, owner, index in caps.checks:
        used = usage.get(key, _ZERO)
        if used > headroom:
            return owner.full(index, used), owner.target_level
    return None


def _slot_failure(owners: OwnerSet, in_progress: Mapping[str, int]) -> _Failure | None:
    """Why one of ``owners`` takes no more calls at once, if one's concurrency limit is reached."""
    for owner, slot in owners.with_slots:
        calls = in_progress.get(slot.owner, 0)
        if calls >= slot.limit:
            return f"{owner.label}concurrency {calls}/{slot.limit}", owner.target_level
    return None


def _spacing_failure(
    owners: OwnerSet, last_call_at: Mapping[str, datetime], now: datetime
) -> _Failure | None:
    """Why one of ``owners`` takes no call yet, if its last call was too recent."""
    for owner in owners.spacing:
        spacing = owner.spacing_seconds or 0
        last = last_call_at.get(owner.owner)
        if last is not None:
            elapsed = (now - last).total_seconds()
            if elapsed < spacing:
                return (
                    f"{owner.label}spacing: last call {max(int(elapsed), 0)} s ago, "
                    f"needs {spacing} s"
                ), owner.target_level
    return None


def _tags(attributes: CallAttributes) -> dict[str, str]:
    """What tag rules see: the call's attributes by field name, overridden by its tags.

    Tags win because they were set on purpose (tracking number, IVR answer,
    traffic source), while attributes may only be derived from the number.
    """
    values = {
        name: value
        for name, value in (
            ("campaign_id", attributes.campaign_id),
            ("dialed", attributes.dialed),
            ("caller", attributes.caller),
            ("publisher_id", attributes.publisher_id),
            ("state", attributes.state),
            ("area_code", attributes.area_code),
            ("zip_code", attributes.zip_code),
            ("city", attributes.city),
            ("country", attributes.country),
        )
        if value is not None
    }
    values.update(attributes.tags)
    return values


def _duplicate(
    rule: DuplicateRule,
    history: Sequence[PastCall],
    campaign_id: str,
    buyer_id: str | None,
    now: datetime,
) -> str | None:
    """Why the caller is a duplicate under ``rule``, from its latest counted call, or ``None``.

    ``buyer_id`` ``None`` is the campaign's own rule, which counts the
    campaign's calls whatever its scope says.
    """
    window = timedelta(days=rule.window_days)
    latest: datetime | None = None
    for past in history:
        if buyer_id is not None and rule.scope == "buyer":
            if past.buyer_id != buyer_id:
                continue
        elif past.campaign_id != campaign_id:
            continue
        counted = past.converted if rule.count_on == "converted" else past.connected
        if counted and now - past.at < window and (latest is None or past.at > latest):
            latest = past.at
    if latest is None:
        return None
    return f"duplicate: same caller {rule.count_on} {_ago(now - latest)} ago"


def _ago(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    days = seconds // 86400
    return "1 day" if days == 1 else f"{days} days"
