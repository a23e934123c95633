"""The SIP transports' flood guard: a token bucket per source host on virtual time."""

from __future__ import annotations

from callwhisper.engine.transport import SourceRateLimiter


def test_a_source_gets_its_burst_then_is_refused() -> None:
    limiter = SourceRateLimiter(rate=10, burst=3)
    assert [limiter.allow("192.0.2.1", 0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    limiter = SourceRateLimiter(rate=10, burst=3)
    for _ in range(3):
        limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("192.0.2.1", 0.05)
    assert limiter.allow("192.0.2.1", 0.1)
    assert not limiter.allow("192.0.2.1", 0.1)


def test_sources_have_separate_buckets() -> None:
    limiter = SourceRateLimiter(rate=1, burst=1)
    assert limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)


def test_the_table_forgets_the_least_recent_source() -> None:
    """Spoofed floods evict old entries: the evicted host starts again with a full bucket."""
    limiter = SourceRateLimiter(rate=1, burst=1, max_sources=2)
    assert limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)
    assert limiter.allow("192.0.2.3", 0.0)
    assert limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("192.0.2.3", 0.0)
