"""The hunt: which candidates to dial next (call-flow 11 to 13).

Candidates arrive filtered and ordered. A sequential candidate is a group of
one; consecutive ``parallel`` candidates of the same tier form one group that
rings at once. The hunt never offers more than ``max_candidates`` distinct
candidates, and allows ``retries`` re-dials of a candidate that was busy or
failed.
"""

from __future__ import annotations

from collections.abc import Sequence

from callwhisper.flow.offers import Offer


class Hunt:
    """The candidates of one call, handed out group by group."""

    def __init__(self, offers: Sequence[Offer], max_candidates: int, retries: int) -> None:
        self._offers = list(offers[:max_candidates])
        self._next = 0
        self._retries = [retries] * len(self._offers)

    @property
    def has_more(self) -> bool:
        """Whether candidates remain to be offered."""
        return self._next < len(self._offers)

    def next_group(self) -> list[tuple[int, Offer]]:
        """The next candidates to dial at once, with their indexes; empty when none remain."""
        if not self.has_more:
            return []
        first = self._offers[self._next]
        group = [(self._next, first)]
        self._next += 1
        if first.ring_mode == "parallel":
            while self.has_more:
                offer = self._offers[self._next]
                if offer.ring_mode != "parallel" or offer.tier != first.tier:
                    break
                group.append((self._next, offer))
                self._next += 1
        return group

    def retry(self, index: int) -> bool:
        """Use one retry of candidate ``index``; ``False`` when none is left (call-flow 12)."""
        if self._retries[index] == 0:
            return False
        self._retries[index] -= 1
        return True
