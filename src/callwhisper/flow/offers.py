"""What routing hands to the call flow: the candidates to offer the call to.

These are the flow's own small input types, so that the session depends on
nothing of how routing is computed; :meth:`RoutingResult.from_decision` maps
a :class:`~callwhisper.routing.RoutingDecision` onto them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from callwhisper.domain.campaign import RingMode
from callwhisper.domain.caps import CapCharge
from callwhisper.domain.state import ConcurrencyLimit
from callwhisper.domain.whisper import WhisperConfig
from callwhisper.routing import Candidate, RoutingDecision


@dataclass(frozen=True, slots=True)
class Offer:
    """One candidate: a buyer target to dial, with its whisper, money and caps."""

    buyer_id: str
    destination: str
    """SIP URI or E.164 number dialed."""
    whisper: WhisperConfig
    """The effective whisper (target, buyer or campaign) and its accept gate."""
    revenue: Decimal
    """What the buyer pays when the call converts."""
    buffer_seconds: int
    """Bridged seconds, counted from accept, after which the call converts."""
    target_id: str | None = None
    buyer_name: str | None = None
    """Spoken as ``{buyer}`` in whispers; the id is used when unset."""
    trunk: str | None = None
    caller_id: str | None = None
    """Caller ID presented to the buyer; the caller's own number when unset."""
    tier: int = 0
    ring_mode: RingMode = "sequential"
    """Consecutive ``parallel`` offers of the same tier ring at once (call-flow 13)."""
    ring_timeout_seconds: float = 30
    no_convert: bool = False
    """A duplicate caller routed anyway: it never converts (call-flow 17)."""
    charges: tuple[CapCharge, ...] = ()
    concurrency: tuple[ConcurrencyLimit, ...] = ()

    @classmethod
    def from_candidate(cls, candidate: Candidate, caller_id: str | None = None) -> Offer:
        """The offer of a routing candidate, presenting ``caller_id`` if given."""
        return cls(
            buyer_id=candidate.buyer_id,
            destination=candidate.destination,
            whisper=candidate.whisper,
            revenue=candidate.revenue,
            buffer_seconds=candidate.buffer_seconds,
            target_id=candidate.target_id,
            buyer_name=candidate.buyer_name,
            trunk=candidate.trunk_id,
            caller_id=caller_id,
            tier=candidate.tier_index,
            ring_mode=candidate.ring,
            ring_timeout_seconds=candidate.ring_timeout_seconds,
            no_convert=candidate.no_convert,
            charges=candidate.charges,
            concurrency=candidate.concurrency,
        )


@dataclass(frozen=True, slots=True)
class RoutingResult:
    """Routing's answer: candidates in order, or why the call is refused.

    ``explanation`` maps each buyer (or target) considered to why it was kept
    or skipped (``"daily cap 50/50"``); it is kept in the call record.
    """

    candidates: tuple[Offer, ...]
    refused_reason: str | None = None
    explanation: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_decision(
        cls, decision: RoutingDecision, caller_id: str | None = None
    ) -> RoutingResult:
        """The result of a routing decision; ``caller_id`` is presented to every buyer."""
        explanation = {
            f"{c.buyer_id}/{c.target_id}": f"candidate {number}"
            for number, c in enumerate(decision.candidates, 1)
        }
        for skipped in decision.skipped:
            explanation[f"{skipped.buyer_id}/{skipped.target_id or '*'}"] = skipped.reason
        return cls(
            tuple(Offer.from_candidate(c, caller_id) for c in decision.candidates),
            decision.call_refused,
            explanation,
        )
