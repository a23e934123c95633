"""The reason codes of call-flow.md, and the SIP status mapping drivers use.

Drivers translate their provider's statuses (SIP responses, Twilio's
``DialCallStatus``, Vonage's call states) into these codes before they reach
the session, so the flow never sees a provider's vocabulary.
"""

from __future__ import annotations

from typing import Literal

FailureReason = Literal["no_answer", "busy", "rejected", "failed"]
"""Why a buyer leg ended before it was answered, as a driver reports it (call-flow 6)."""

LegEndReason = Literal["no_answer", "busy", "rejected", "failed", "canceled", "declined", "hangup"]
"""How a leg ended: a ring outcome, a decline at the accept gate, or a hang-up."""

DeclineReason = Literal["timeout", "wrong_key", "reject_key", "buyer_hangup", "machine"]
"""Why an answered buyer leg did not accept (call-flow 9)."""

Party = Literal["caller", "buyer", "overflow", "system"]
"""Who ended a leg: the caller, the buyer, the overflow line (a forwarded call), or this system."""

Outcome = Literal[
    "converted",
    "connected",
    "caller_hangup",
    "no_buyer",
    "refused",
    "ivr_hangup",
    "interrupted",
]
"""How a call ended.

``converted``: bridged to a buyer at least the buyer's buffer (payable);
``connected``: bridged, but not converted; ``caller_hangup``: the caller left
before any bridge (call-flow 4); ``no_buyer``: nobody accepted and the fallback
ran (call-flow 14), also when it forwarded the caller to the overflow line,
which is no buyer (no revenue, no payout); ``refused``: routing, an IVR
rejection or the driver (no codec in common) turned the call away;
``ivr_hangup``: an IVR branch hung up; ``interrupted``: the process stopped
while the call was in flight.
"""

RETRIABLE: frozenset[FailureReason] = frozenset({"busy", "failed"})
"""Ring outcomes that may be retried on the same candidate (call-flow 12)."""


def reason_for_sip_status(status: int | None) -> FailureReason:
    """The ring outcome of a final SIP response to a buyer INVITE (call-flow 6).

    ``None`` (no response: unroutable, transport error, Timer B) is ``failed``.
    486 Busy Here and 600 Busy Everywhere are ``busy``. 408 Request Timeout and
    480 Temporarily Unavailable are ``no_answer``: they are what proxies and
    PBXs send when nobody picked up before their own timer, which is the same
    outcome as our ring timeout. 603 Decline and every other 4xx-6xx are
    ``rejected``. A 487 only follows our own CANCEL, which the session has
    already recorded as ``canceled``; mapped here it is ``rejected``.
    """
    if status is None:
        return "failed"
    if status in (486, 600):
        return "busy"
    if status in (408, 480):
        return "no_answer"
    if 400 <= status <= 699:
        return "rejected"
    raise ValueError(f"SIP status {status} is not a final failure response")
