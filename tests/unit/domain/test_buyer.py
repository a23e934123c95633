"""Buyer-level rules: which trunk dials a destination."""

from __future__ import annotations

from callwhisper.domain.buyer import dialing_trunk


def test_the_dialing_trunk_is_the_destinations_own_else_the_only_one_for_a_number() -> None:
    assert dialing_trunk("+18885550101", "backup", {"carrier", "backup"}) == "backup"
    assert dialing_trunk("sip:o@pbx.example", "backup", {"carrier", "backup"}) == "backup"
    assert dialing_trunk("+18885550101", None, {"carrier"}) == "carrier"
    assert dialing_trunk("+18885550101", None, {"carrier", "backup"}) is None
    assert dialing_trunk("+18885550101", None, set()) is None
    # A SIP URI is dialed directly unless its owner names a trunk.
    assert dialing_trunk("sip:o@pbx.example", None, {"carrier"}) is None
    assert dialing_trunk("sips:o@pbx.example", None, {"carrier"}) is None
