"""What routing and whispers know about an inbound call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CallAttributes:
    """The attributes of one inbound call that routing, filters and whispers use.

    Geography is derived from the caller's number when it is a North American
    number; ``tags`` hold tracking-number tags, IVR answers and anything the
    traffic source passed along.
    """

    campaign_id: str
    dialed: str
    caller: str | None
    publisher_id: str | None = None
    state: str | None = None
    area_code: str | None = None
    zip_code: str | None = None
    city: str | None = None
    country: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        """Whether the caller withheld its number."""
        return self.caller is None
