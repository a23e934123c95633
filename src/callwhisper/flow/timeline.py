"""A call's timeline as readable text, for people, tests and the command line.

+0.000s  A   arrived  +14155550100 -> +18005550100 (campaign auto)
+0.020s  B1  dial  buyer acme -> sip:sales@acme.example
+12.340s B2  key 1 (accept)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TextIO

from callwhisper.flow.record import EXPLAIN_PREFIX, Entry

_Describe = Callable[[Mapping[str, str]], str]

_DESCRIBE: dict[str, _Describe] = {
    "arrived": lambda d: f"arrived  {d['caller']} -> {d['dialed']} (campaign {d['campaign']})",
    "caller_answered": lambda d: "caller answered",
    "ringback": lambda d: "ringback",
    "ivr_prompt": lambda d: f"ivr prompt {d['node']} (attempt {d['attempt']})",
    "ivr_answer": lambda d: f"ivr answer {d['node']} = {d['answer'] or '(none)'}",
    "tag": lambda d: f"tag {d['name']} = {d['value']}",
    "routing": lambda d: (
        "routing  "
        + (f"refused: {d['refused']}; " if "refused" in d else "")
        + f"{d['candidates']} candidates"
        + "".join(
            f"; {key.removeprefix(EXPLAIN_PREFIX)}: {value}"
            for key, value in d.items()
            if key.startswith(EXPLAIN_PREFIX)
        )
    ),
    "skipped": lambda d: f"skipped {d['buyer']}: {d['reason']}",
    "dial": lambda d: (
        "dial  "
        + (f"buyer {d['buyer']}" if "buyer" in d else "overflow")
        + f" -> {d['destination']}"
        + (f" (trunk {d['trunk']})" if "trunk" in d else "")
    ),
    "ringing": lambda d: "ringing" + (" (early media)" if d["early_media"] == "yes" else ""),
    "early_media": lambda d: "early media",
    "answer": lambda d: "answer",
    "whisper_start": lambda d: f"whisper start (play {d['play']})",
    "whisper_end": lambda d: f"whisper end (play {d['play']}, {d['how']})",
    "key": lambda d: f"key {d['key']} ({d['meaning']})",
    "accept": lambda d: "accept",
    "decline": lambda d: f"decline ({d['reason']})",
    "bridge": lambda d: "bridge",
    "leg_end": lambda d: (
        f"end  {d['reason']}"
        + (f" by {d['by']}" if "by" in d else "")
        + (f" (status {d['status']})" if "status" in d else "")
        + (f" cost {d['cost']}" if Decimal(d["cost"]) else "")
    ),
    "recording_start": lambda d: "recording start",
    "recording_stop": lambda d: "recording stop",
    "conversion": lambda d: f"conversion  {d['buyer']} revenue {d['revenue']}",
    "payout": lambda d: f"payout {d['amount']}",
    "recovery": lambda d: f"revenue recovery (attempt {d['attempt']})",
    "fallback": lambda d: f"fallback {d['action']} ({d['reason']})",
    "ended": lambda d: (
        f"ended  {d['outcome']}  revenue {d['revenue']} payout {d['payout']} cost {d['cost']}"
    ),
    "interrupted": lambda d: "interrupted",
}


def format_entry(entry: Entry, start: float) -> str:
    """One timeline line, its time relative to ``start``."""
    offset = f"+{entry.at - start:.3f}s"
    return f"{offset:<9} {entry.leg or '':<3} {_DESCRIBE[entry.kind](entry.data)}".rstrip()


def format_timeline(entries: Iterable[Entry]) -> str:
    """The whole timeline, one line per entry, times relative to the first entry."""
    items = list(entries)
    if not items:
        return ""
    start = items[0].at
    return "\n".join(format_entry(entry, start) for entry in items)


def print_timeline(entries: Iterable[Entry], file: TextIO | None = None) -> None:
    """Print the timeline (to standard output unless ``file`` is given)."""
    print(format_timeline(entries), file=file or sys.stdout)
