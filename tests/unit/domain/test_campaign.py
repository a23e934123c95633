"""Campaign-level rules."""

from __future__ import annotations

from callwhisper.domain import Buyer, Campaign, WhisperConfig


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
