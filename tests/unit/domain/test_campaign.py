"""Campaign-level rules."""

from __future__ import annotations

from callwhisper.domain import Buyer, Campaign, WhisperConfig
from callwhisper.domain.campaign import overflow_trunk


def test_whisper_precedence_is_target_then_buyer_then_campaign() -> None:
    campaign = Campaign.model_validate(
        {"id": "auto", "routing": {"tiers": [{"buyers": [{"buyer": "acme"}]}]}}
    )
    buyer = Buyer.model_validate(
        {
            "id": "acme",
            "conversion": {"revenue": 10},
            "whisper": {"text": "buyer"},
            "targets": [
                {"id": "own", "destination": "sip:a@acme.example", "whisper": {"text": "target"}},
                {"id": "plain", "destination": "sip:b@acme.example"},
            ],
        }
    )
    own, plain = buyer.targets
    assert campaign.whisper_for(buyer, own) == WhisperConfig(text="target")
    assert campaign.whisper_for(buyer, plain) == WhisperConfig(text="buyer")
    assert campaign.whisper_for(None, None) is campaign.whisper
    bare = buyer.model_copy(update={"whisper": None})
    assert campaign.whisper_for(bare, plain) is campaign.whisper


def test_the_overflow_trunk_is_the_fallbacks_own_else_the_only_one_for_a_number() -> None:
    assert overflow_trunk("+18885550101", "backup", {"carrier", "backup"}) == "backup"
    assert overflow_trunk("sip:o@pbx.example", "backup", {"carrier", "backup"}) == "backup"
    assert overflow_trunk("+18885550101", None, {"carrier"}) == "carrier"
    assert overflow_trunk("+18885550101", None, {"carrier", "backup"}) is None
    assert overflow_trunk("+18885550101", None, set()) is None
    # A SIP URI is dialed directly unless the fallback names a trunk.
    assert overflow_trunk("sip:o@pbx.example", None, {"carrier"}) is None
