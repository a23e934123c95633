"""The call record: persisted entries rebuild it, crashes close it, and the printer shows it."""

from __future__ import annotations

import io

from callwhisper.flow import (
    CallRecord,
    DigitReceived,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    Persist,
    format_timeline,
    interrupted_entry,
    print_timeline,
)
from tests.unit.flow.harness import Harness, offer


def _converted_call() -> Harness:
    h = Harness(offer("acme"), offer("bolt"))
    h.arrive(at=1000)
    h.send(LegFailed("B1", "busy", 486), at=1000.5)
    h.send(LegRinging("B2", early_media=True), at=1001)
    h.send(LegAnswered("B2"), at=1004)
    h.finish_play("B2", at=1007.2)
    h.send(DigitReceived("B2", "1"), at=1010.34)
    h.run_until(1200)
    h.send(LegHungUp("A"), at=1200)
    return h


def test_persisted_entries_rebuild_the_same_record() -> None:
    h = _converted_call()
    persisted = [c.entry for c in h.log if isinstance(c, Persist)]
    assert persisted == list(h.timeline)
    rebuilt = CallRecord.from_timeline("call-1", persisted)
    assert rebuilt == h.session.record


def test_a_call_in_flight_at_a_crash_is_closed_as_interrupted() -> None:
    h = Harness(offer("acme"))
    h.arrive()
    h.send(LegAnswered("B1"), at=3)
    record = CallRecord.from_timeline("call-1", [c.entry for c in h.log if isinstance(c, Persist)])
    assert record.open_reservations == ["call-1/B1"]
    entry = interrupted_entry(record, 500.0)
    assert entry is not None
    record.apply(entry)
    assert (record.outcome, record.ended_at) == ("interrupted", 500.0)
    assert interrupted_entry(record, 600.0) is None


def test_a_finished_call_is_left_alone_at_start_up() -> None:
    record = _converted_call().session.record
    assert interrupted_entry(record, 5000.0) is None
    assert record.open_reservations == []


def test_the_timeline_prints_as_readable_text() -> None:
    h = _converted_call()
    expected = """\
+0.000s   A   arrived  +14155550100 -> +18005550100 (campaign auto)
+0.000s   A   ringback
+0.000s       routing  2 candidates
+0.000s   B1  dial  buyer acme -> sip:acme@buyers.example
+0.500s   B1  end  busy (status 486)
+0.500s   B2  dial  buyer bolt -> sip:bolt@buyers.example
+1.000s   B2  ringing (early media)
+4.000s   B2  answer
+4.000s   B2  whisper start (play 1)
+7.200s   B2  whisper end (play 1, finished)
+10.340s  B2  key 1 (accept)
+10.340s  B2  accept
+10.340s  A   caller answered
+10.340s  B2  bridge
+100.340s B2  conversion  bolt revenue 40
+200.000s A   end  hangup by caller
+200.000s B2  end  hangup by system
+200.000s     ended  converted  revenue 40 payout 0 cost 0.0000"""
    assert format_timeline(h.timeline) == expected
    out = io.StringIO()
    print_timeline(h.timeline, out)
    assert out.getvalue() == expected + "\n"
