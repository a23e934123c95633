"""The whole configuration of a callwhisper installation, and its cross-references."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field

from callwhisper.domain.base import Model
from callwhisper.domain.buyer import Buyer, Trunk, dialing_trunk
from callwhisper.domain.campaign import (
    Campaign,
    Fallback,
    Publisher,
    TelephonyCosts,
    TrackingNumber,
)

Location = tuple[str | int, ...]


def format_location(location: Location) -> str:
    """``("campaigns", 0, "routing")`` as ``campaigns[0].routing``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


class Configuration(Model):
    """Everything an operator configures: trunks, publishers, buyers, campaigns and numbers."""

    version: Literal[1] = Field(default=1, description="Format version of this file.")
    telephony: TelephonyCosts = Field(
        default_factory=TelephonyCosts, description="What telephony costs us."
    )
    trunks: list[Trunk] = Field(default_factory=list, description="SIP trunks to reach targets.")
    publishers: list[Publisher] = Field(default_factory=list, description="Traffic sources.")
    buyers: list[Buyer] = Field(default_factory=list, description="Buyers and their targets.")
    campaigns: list[Campaign] = Field(default_factory=list, description="Campaigns.")
    numbers: list[TrackingNumber] = Field(
        default_factory=list, description="Tracking numbers and their campaigns."
    )

    @cached_property
    def campaigns_by_id(self) -> dict[str, Campaign]:
        """Campaigns indexed by id."""
        return {campaign.id: campaign for campaign in self.campaigns}

    @cached_property
    def buyers_by_id(self) -> dict[str, Buyer]:
        """Buyers indexed by id."""
        return {buyer.id: buyer for buyer in self.buyers}

    @cached_property
    def publishers_by_id(self) -> dict[str, Publisher]:
        """Publishers indexed by id."""
        return {publisher.id: publisher for publisher in self.publishers}

    @cached_property
    def trunks_by_id(self) -> dict[str, Trunk]:
        """Trunks indexed by id."""
        return {trunk.id: trunk for trunk in self.trunks}

    @cached_property
    def numbers_by_number(self) -> dict[str, TrackingNumber]:
        """Tracking numbers indexed by the number (or SIP user) dialed."""
        return {number.number: number for number in self.numbers}

    def lookup_number(self, dialed: str) -> TrackingNumber | None:
        """The tracking number for a dialed number, trying it with and without a leading +."""
        found = self.numbers_by_number.get(dialed)
        if found is None and dialed.isdigit():
            found = self.numbers_by_number.get("+" + dialed)
        return found

    def reference_problems(self) -> list[tuple[Location, str]]:
        """Every broken cross-reference and duplicate id, with its location."""
        problems: list[tuple[Location, str]] = []
        problems += _duplicates("trunks", [t.id for t in self.trunks], "trunk id")
        problems += _duplicates("publishers", [p.id for p in self.publishers], "publisher id")
        problems += _duplicates("buyers", [b.id for b in self.buyers], "buyer id")
        problems += _duplicates("campaigns", [c.id for c in self.campaigns], "campaign id")
        problems += _duplicates("numbers", [n.number for n in self.numbers], "tracking number")
        for b, buyer in enumerate(self.buyers):
            problems += [
                (("buyers", b, *loc), msg)
                for loc, msg in _duplicates("targets", [t.id for t in buyer.targets], "target id")
            ]
            for t, target in enumerate(buyer.targets):
                where_target: Location = ("buyers", b, "targets", t)
                if target.trunk is not None and target.trunk not in self.trunks_by_id:
                    problems.append(((*where_target, "trunk"), f"unknown trunk {target.trunk!r}"))
                problems += self._trunkless_number(
                    where_target, "destination", target.destination, target.trunk, "trunk"
                )
        for c, campaign in enumerate(self.campaigns):
            problems += self._fallback_problems(("campaigns", c, "fallback"), campaign.fallback)
            for k, tier in enumerate(campaign.routing.tiers):
                for e, entry in enumerate(tier.buyers):
                    where: Location = ("campaigns", c, "routing", "tiers", k, "buyers", e)
                    buyer_ref = self.buyers_by_id.get(entry.buyer)
                    if buyer_ref is None:
                        problems.append(((*where, "buyer"), f"unknown buyer {entry.buyer!r}"))
                    elif entry.target is not None and entry.target not in {
                        t.id for t in buyer_ref.targets
                    }:
                        problems.append(
                            (
                                (*where, "target"),
                                f"buyer {entry.buyer!r} has no target {entry.target!r}",
                            )
                        )
        for n, number in enumerate(self.numbers):
            if number.campaign not in self.campaigns_by_id:
                problems.append(
                    (("numbers", n, "campaign"), f"unknown campaign {number.campaign!r}")
                )
            if number.publisher is not None and number.publisher not in self.publishers_by_id:
                problems.append(
                    (("numbers", n, "publisher"), f"unknown publisher {number.publisher!r}")
                )
        return problems

    def _fallback_problems(self, where: Location, fallback: Fallback) -> list[tuple[Location, str]]:
        """A forward fallback's trunk must exist, and a number overflow must have one."""
        if fallback.trunk is not None:
            if fallback.trunk in self.trunks_by_id:
                return []
            return [((*where, "trunk"), f"unknown trunk {fallback.trunk!r}")]
        if fallback.action != "forward" or fallback.forward_to is None:
            return []
        return self._trunkless_number(
            where, "forward_to", fallback.forward_to, None, "fallback.trunk"
        )

    def _trunkless_number(
        self, where: Location, field: str, destination: str, trunk: str | None, setting: str
    ) -> list[tuple[Location, str]]:
        """A number that no trunk would dial (see :func:`dialing_trunk`): one problem."""
        if dialing_trunk(destination, trunk, self.trunks_by_id) is not None:
            return []
        if destination.startswith(("sip:", "sips:")):
            return []
        count = len(self.trunks)
        have = "no trunk is configured" if count == 0 else f"{count} trunks are configured"
        return [
            (
                (*where, field),
                f"the number {destination!r} is dialed through a trunk: name it in {setting} "
                f"({have})",
            )
        ]


def _duplicates(field: str, values: list[str], what: str) -> list[tuple[Location, str]]:
    seen: dict[str, int] = {}
    problems: list[tuple[Location, str]] = []
    for index, value in enumerate(values):
        if value in seen:
            problems.append(
                ((field, index), f"duplicate {what} {value!r} (first at {field}[{seen[value]}])")
            )
        else:
            seen[value] = index
    return problems
