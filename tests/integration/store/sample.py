"""A non-trivial configuration for the store tests."""

from __future__ import annotations

from typing import Any

from callwhisper.config import validate_configuration
from callwhisper.domain.configuration import Configuration


def sample_data() -> dict[str, Any]:
    """Plain data of a configuration that uses most features (copy it before changing it)."""
    return {
        "telephony": {"inbound_per_minute": "0.0085", "outbound_per_minute": "0.013"},
        "trunks": [{"id": "carrier", "proxy": "sip:trunk.example.com:5060", "transport": "tcp"}],
        "publishers": [
            {"id": "pub-b", "payout": {"amount": "12.50", "buffer_seconds": 60}},
            {"id": "pub-a", "name": "Alpha Media", "caps": {"calls": {"daily": 100}}},
        ],
        "buyers": [
            {
                "id": "zeta",
                "timezone": "America/Los_Angeles",
                "conversion": {"buffer_seconds": 120, "revenue": "45.00"},
                "caps": {
                    "calls": {"daily": 50, "monthly": 900},
                    "revenue": {"daily": "2250.5"},
                    "concurrency": 3,
                    "spacing_seconds": 10,
                },
                "schedule": {
                    "hours": {"mon": ["09:00-12:00", "13:00-17:00"], "fri": ["09:00-15:00"]},
                    "closed_dates": ["2026-12-25"],
                },
                "filters": {
                    "states": ["CA", "NV"],
                    "tags": [{"tag": "age", "op": ">", "value": 64}],
                },
                "duplicates": {"window_days": 7, "count_on": "connected"},
                "targets": [
                    {
                        "id": "main",
                        "destination": "sip:agents@zeta.example.com",
                        "trunk": "carrier",
                    },
                    {"id": "backup", "destination": "+14155550100", "enabled": False},
                ],
            },
            {
                "id": "acme",
                "conversion": {"revenue": "30"},
                "whisper": {"audio": "whispers/acme.wav", "accept_mode": "any_key"},
                "targets": [{"id": "desk", "destination": "+13125550199"}],
            },
        ],
        "campaigns": [
            {
                "id": "auto-ca",
                "name": "Auto insurance CA",
                "lead_type": "Auto insurance",
                "ivr": {
                    "start": "age",
                    "nodes": [
                        {
                            "id": "age",
                            "say": "Are you over 65? Press 1 for yes.",
                            "tag": "senior",
                            "branches": {"1": {"action": "route", "set_tags": {"age": "70"}}},
                            "default": {"action": "route"},
                        }
                    ],
                },
                "routing": {
                    "tiers": [
                        {
                            "method": "weighted",
                            "buyers": [
                                {"buyer": "zeta", "target": "main", "weight": 3},
                                {"buyer": "acme", "weight": 1, "caps": {"calls": {"hourly": 5}}},
                            ],
                        },
                        {"method": "round_robin", "buyers": [{"buyer": "acme"}]},
                    ]
                },
                "fallback": {"action": "message", "message": "Sorry, nobody is available."},
                "recording": True,
                "payout": {"amount": "10"},
                "duplicates": {"window_days": 30, "scope": "campaign"},
            },
            {"id": "solar", "routing": {"tiers": [{"buyers": [{"buyer": "acme"}]}]}},
        ],
        "numbers": [
            {"number": "+18005550123", "campaign": "auto-ca", "publisher": "pub-a"},
            {"number": "solar-line", "campaign": "solar", "tags": {"source": "radio"}},
        ],
    }


def sample_configuration() -> Configuration:
    """The sample, validated."""
    return validate_configuration(sample_data())
