"""Whisper text rendered from a template with the call's variables."""

from __future__ import annotations

from callwhisper.domain.call import CallAttributes
from callwhisper.flow import FlowSettings, render
from callwhisper.flow.template import call_variables
from tests.unit.flow.harness import attributes, offer


def test_variables_are_replaced() -> None:
    text = render(
        "{lead_type} from {caller_state}", {"lead_type": "Auto", "caller_state": "CA"}, {}
    )
    assert text == "Auto from CA"


def test_a_missing_variable_renders_its_default_or_nothing() -> None:
    template = "Call from {caller_city}, {caller_state}."
    assert render(template, {}, {"caller_city": "your area"}) == "Call from your area, ."
    assert render(template, {"caller_city": ""}, {"caller_city": "your area"}) == (
        "Call from your area, ."
    )


def test_malformed_templates_never_fail() -> None:
    variables = {"a": "x"}
    assert render("{{a}} {a} {", variables, {}) == "{a} x {"
    assert render("{0} {a.b} {a!r} {a:>5} {} }", variables, {}) == "     }"


def test_call_variables_include_buyer_publisher_and_tags() -> None:
    settings = FlowSettings("auto", campaign_name="Auto CA", lead_type="Auto insurance",
                            publisher_name="Leads Inc")  # fmt: skip
    call = attributes(insured="yes", buyer="tag value")
    variables = call_variables(settings, call, offer("acme"))
    assert variables == {
        "campaign": "Auto CA",
        "lead_type": "Auto insurance",
        "publisher": "Leads Inc",
        "caller_city": "San Francisco",
        "caller_state": "CA",
        "area_code": "415",
        "buyer": "Acme",
        "insured": "yes",
    }


def test_an_anonymous_caller_has_no_geography() -> None:
    call = CallAttributes(campaign_id="auto", dialed="+18005550100", caller=None)
    variables = call_variables(FlowSettings("auto"), call)
    assert render("{caller_state}", variables, {"caller_state": "unknown"}) == "unknown"
