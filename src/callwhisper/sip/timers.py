"""SIP timer values (RFC 3261 17 and Table 4 of Appendix A, RFC 6026 8.11)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_TIMERS", "TimerConfig"]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """The base timer values; every transaction timer is derived from them (RFC 3261 A)."""

    t1: float = 0.5
    """RTT estimate: first retransmission interval (seconds)."""
    t2: float = 4.0
    """Maximum retransmission interval for non-INVITE requests and INVITE responses."""
    t4: float = 5.0
    """Maximum time a message stays in the network."""
    trying_delay: float = 0.2
    """Send 100 Trying if the TU has not answered an INVITE within this delay (17.2.1)."""

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L and M and the 2xx retransmission window."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """Timer D: wait for response retransmissions, at least 32 s on UDP (17.1.1.2)."""
        return 0.0 if reliable else max(32.0, self.timeout)

    def timer_k(self, reliable: bool) -> float:
        """Timers K and I: T4 on unreliable transports, zero on reliable ones (17.1.2.2)."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """Timer J: 64*T1 on unreliable transports, zero on reliable ones (17.2.2)."""
        return 0.0 if reliable else self.timeout


DEFAULT_TIMERS = TimerConfig()
