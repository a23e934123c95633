"""Whisper and prompt text rendered from a template with the call's variables.

``{name}`` is replaced by the call variable ``name``; ``{{`` and ``}}`` are
literal braces. A variable the call lacks (or has empty) renders the
whisper's ``defaults[name]``, or nothing: a template never fails a call.
Variables: ``campaign``, ``lead_type``, ``buyer``, ``caller_city``,
``caller_state``, ``caller_zip``, ``area_code``, ``publisher``, and every
call tag (tracking-number tags, IVR answers) under its own name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from callwhisper.domain.call import CallAttributes
from callwhisper.flow.offers import Offer
from callwhisper.flow.settings import FlowSettings

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def render(template: str, variables: Mapping[str, str], defaults: Mapping[str, str]) -> str:
    """``template`` with every ``{variable}`` replaced; never raises."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1).strip()
        return variables.get(name) or defaults.get(name, "")

    return _FIELD.sub(replace, template)


def call_variables(
    settings: FlowSettings, attributes: CallAttributes, offer: Offer | None = None
) -> dict[str, str]:
    """The variables a whisper (``offer`` given) or an IVR prompt may use."""
    variables = dict(attributes.tags)
    known = {
        "campaign": settings.campaign_name or settings.campaign_id,
        "lead_type": settings.lead_type,
        "publisher": settings.publisher_name,
        "caller_city": attributes.city,
        "caller_state": attributes.state,
        "caller_zip": attributes.zip_code,
        "area_code": attributes.area_code,
        "buyer": (offer.buyer_name or offer.buyer_id) if offer else None,
    }
    # Built-in names win over a tag that happens to share one.
    variables.update({name: value for name, value in known.items() if value})
    return variables
