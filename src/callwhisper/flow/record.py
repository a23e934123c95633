"""The call record: a timeline of entries, and the record they fold into.

The timeline is the source of truth. Every milestone is one :class:`Entry`,
emitted to the driver as a ``Persist`` command the moment it happens, and
:class:`CallRecord` is nothing but the fold of those entries. A store that
appends entries can therefore rebuild everything known about a call after a
crash (:meth:`CallRecord.from_timeline`), and close the calls it finds still
open with :func:`interrupted_entry`.

Entry data are strings only, so they serialize as they are; amounts of money
are decimal strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, cast

from callwhisper.flow.reasons import Outcome

EntryKind = Literal[
    "arrived",
    "caller_answered",
    "ringback",
    "ivr_prompt",
    "ivr_answer",
    "tag",
    "routing",
    "skipped",
    "dial",
    "ringing",
    "early_media",
    "answer",
    "whisper_start",
    "whisper_end",
    "key",
    "accept",
    "decline",
    "bridge",
    "leg_end",
    "recording_start",
    "recording_stop",
    "conversion",
    "payout",
    "recovery",
    "fallback",
    "ended",
    "interrupted",
]

CALLER = "A"
"""Leg id of the caller."""

OVERFLOW = "overflow"
"""Leg id of the overflow line a forward fallback dials (call-flow 14)."""

EXPLAIN_PREFIX = "explain."
"""Prefix of the routing explanation's keys in a ``routing`` entry."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One timestamped fact about a call (call-flow 16)."""

    at: float
    kind: EntryKind
    leg: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeyPress:
    """A DTMF key and what it meant (``accept``, ``reject``, ``wrong``, ``none``...)."""

    at: float
    leg: str
    key: str
    meaning: str


@dataclass(slots=True)
class LegRecord:
    """What is known about one leg (the overflow line's has no buyer nor reservation)."""

    leg: str
    buyer_id: str | None = None
    target_id: str | None = None
    destination: str | None = None
    reservation_id: str | None = None
    dialed_at: float | None = None
    ringing_at: float | None = None
    answered_at: float | None = None
    whisper_started_at: float | None = None
    whisper_ended_at: float | None = None
    accepted_at: float | None = None
    bridged_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    ended_by: str | None = None
    status: str | None = None
    decline_reason: str | None = None
    cost: Decimal = Decimal(0)


@dataclass(slots=True)
class CallRecord:
    """Everything known about one call: the fold of its timeline."""

    call_id: str
    campaign_id: str | None = None
    dialed: str | None = None
    caller: str | None = None
    arrived_at: float | None = None
    ended_at: float | None = None
    outcome: Outcome | None = None
    legs: dict[str, LegRecord] = field(default_factory=dict)
    keys: list[KeyPress] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    ivr_answers: dict[str, str] = field(default_factory=dict)
    candidates: int = 0
    refused_reason: str | None = None
    explanation: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fallback: str | None = None
    bridged_legs: list[str] = field(default_factory=list)
    """Buyer legs bridged to the caller, in order; the overflow line is not a buyer."""
    converted_leg: str | None = None
    revenue: Decimal = Decimal(0)
    payout: Decimal = Decimal(0)
    timeline: list[Entry] = field(default_factory=list)

    @classmethod
    def from_timeline(cls, call_id: str, entries: Iterable[Entry]) -> CallRecord:
        """The record of a call rebuilt from its stored timeline."""
        record = cls(call_id)
        for entry in entries:
            record.apply(entry)
        return record

    @property
    def cost(self) -> Decimal:
        """Telephony cost of the call: the sum over its legs (call-flow 18)."""
        return sum((leg.cost for leg in self.legs.values()), Decimal(0))

    @property
    def finished(self) -> bool:
        """Whether the call has ended (normally or as interrupted)."""
        return self.outcome is not None

    @property
    def open_reservations(self) -> list[str]:
        """Cap reservations of dialed legs that never ended: to finish after a crash."""
        return [
            leg.reservation_id
            for leg in self.legs.values()
            if leg.reservation_id is not None and leg.ended_at is None
        ]

    def apply(self, entry: Entry) -> None:
        """Fold one more timeline entry into the record."""
        self.timeline.append(entry)
        data = entry.data
        leg = self.legs.get(entry.leg) if entry.leg is not None else None
        match entry.kind:
            case "arrived":
                self.arrived_at = entry.at
                self.dialed = data["dialed"]
                self.caller = data.get("caller")
                self.campaign_id = data["campaign"]
                self.legs[CALLER] = LegRecord(CALLER)
            case "caller_answered":
                self.legs[CALLER].answered_at = entry.at
            case "ivr_answer":
                self.ivr_answers[data["node"]] = data["answer"]
            case "tag":
                self.tags[data["name"]] = data["value"]
            case "routing":
                self.candidates = int(data["candidates"])
                self.refused_reason = data.get("refused")
                self.explanation = {
                    key.removeprefix(EXPLAIN_PREFIX): value
                    for key, value in data.items()
                    if key.startswith(EXPLAIN_PREFIX)
                }
            case "skipped":
                self.skipped.append((data["buyer"], data["reason"]))
            case "dial":
                assert entry.leg is not None
                self.legs[entry.leg] = LegRecord(
                    entry.leg,
                    buyer_id=data.get("buyer"),
                    target_id=data.get("target"),
                    destination=data["destination"],
                    reservation_id=data.get("reservation"),
                    dialed_at=entry.at,
                )
            case "ringing":
                assert leg is not None
                if leg.ringing_at is None:
                    leg.ringing_at = entry.at
            case "answer":
                assert leg is not None
                leg.answered_at = entry.at
            case "whisper_start":
                assert leg is not None
                if leg.whisper_started_at is None:
                    leg.whisper_started_at = entry.at
            case "whisper_end":
                assert leg is not None
                leg.whisper_ended_at = entry.at
            case "key":
                assert entry.leg is not None
                self.keys.append(KeyPress(entry.at, entry.leg, data["key"], data["meaning"]))
            case "accept":
                assert leg is not None
                leg.accepted_at = entry.at
            case "decline":
                assert leg is not None
                leg.decline_reason = data["reason"]
            case "bridge":
                assert leg is not None
                assert entry.leg is not None
                leg.bridged_at = entry.at
                if entry.leg != OVERFLOW:
                    self.bridged_legs.append(entry.leg)
            case "leg_end":
                assert leg is not None
                leg.ended_at = entry.at
                leg.end_reason = data["reason"]
                leg.ended_by = data.get("by")
                leg.status = data.get("status")
                leg.cost = Decimal(data["cost"])
            case "conversion":
                self.converted_leg = entry.leg
                self.revenue = Decimal(data["revenue"])
            case "payout":
                self.payout = Decimal(data["amount"])
            case "fallback":
                self.fallback = data["action"]
            case "ended" | "interrupted":
                self.ended_at = entry.at
                self.outcome = cast(Outcome, data["outcome"])
            case _:
                pass


def interrupted_entry(record: CallRecord, now: float) -> Entry | None:
    """The entry that closes a call left in flight by a crash, or ``None`` if it ended.

    Run at start-up over every stored call; the runner then finishes the
    record's :attr:`~CallRecord.open_reservations` in the cap ledger.
    """
    if record.finished:
        return None
    return Entry(now, "interrupted", data={"outcome": "interrupted"})
