"""A session driven on virtual time, with routing and the cap ledger answered in memory."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from callwhisper.domain.call import CallAttributes
from callwhisper.domain.campaign import RingMode
from callwhisper.domain.caps import CapCharge
from callwhisper.domain.state import ConcurrencyLimit, MemoryCapLedger
from callwhisper.domain.whisper import AcceptMode, WhisperConfig
from callwhisper.flow import (
    CallArrived,
    CallSession,
    CapsReserved,
    Command,
    CommitCaps,
    Entry,
    Event,
    FinishCaps,
    FlowSettings,
    Offer,
    Persist,
    PlayAudio,
    PlaybackFinished,
    PlayText,
    RequestRouting,
    ReserveCaps,
    RoutingDecided,
    RoutingResult,
)

CALLER_NUMBER = "+14155550100"
TRACKING_NUMBER = "+18005550100"
WHISPER = "{lead_type} call from {caller_state}. Press 1 to accept, 2 to decline."


def attributes(**tags: str) -> CallAttributes:
    """A Californian caller on the ``auto`` campaign."""
    return CallAttributes(
        campaign_id="auto",
        dialed=TRACKING_NUMBER,
        caller=CALLER_NUMBER,
        state="CA",
        city="San Francisco",
        area_code="415",
        tags=tags,
    )


def whisper(mode: AcceptMode = "press_key", **fields: object) -> WhisperConfig:
    """A text whisper in ``mode``; ``fields`` override any other setting."""
    return WhisperConfig.model_validate({"text": WHISPER, "accept_mode": mode, **fields})


def offer(
    buyer: str,
    *,
    revenue: str = "40",
    buffer: int = 90,
    mode: AcceptMode = "press_key",
    ring_mode: RingMode = "sequential",
    tier: int = 0,
    ring_timeout: float = 30,
    no_convert: bool = False,
    gate: WhisperConfig | None = None,
    charges: tuple[CapCharge, ...] = (),
    concurrency: tuple[ConcurrencyLimit, ...] = (),
) -> Offer:
    """A candidate for ``buyer`` at ``sip:<buyer>@buyers.example``."""
    return Offer(
        buyer_id=buyer,
        destination=f"sip:{buyer}@buyers.example",
        whisper=gate or whisper(mode),
        revenue=Decimal(revenue),
        buffer_seconds=buffer,
        buyer_name=buyer.capitalize(),
        tier=tier,
        ring_mode=ring_mode,
        ring_timeout_seconds=ring_timeout,
        no_convert=no_convert,
        charges=charges,
        concurrency=concurrency,
    )


BOOKKEEPING = (Persist, ReserveCaps, CommitCaps, FinishCaps, RequestRouting)


def control(commands: Sequence[Command]) -> list[Command]:
    """Call-control commands only: without persistence, caps and routing requests."""
    return [command for command in commands if not isinstance(command, BOOKKEEPING)]


class Harness:
    """Drives a :class:`CallSession` on virtual time.

    Routing requests are answered with ``routing``; cap requests go to a
    :class:`MemoryCapLedger` and are answered at once unless ``hold_caps``.
    Every command is kept in :attr:`log`, in order.
    """

    def __init__(
        self,
        *offers: Offer,
        settings: FlowSettings | None = None,
        routing: RoutingResult | None = None,
        ledger: MemoryCapLedger | None = None,
        hold_caps: bool = False,
    ) -> None:
        self.session = CallSession("call-1", settings or FlowSettings(campaign_id="auto"))
        self.routing = routing or RoutingResult(tuple(offers))
        self.ledger = ledger or MemoryCapLedger()
        self.hold_caps = hold_caps
        self.held: list[ReserveCaps] = []
        self.now = 0.0
        self.log: list[Command] = []

    @property
    def timeline(self) -> tuple[Entry, ...]:
        """The session's timeline."""
        return self.session.timeline

    def arrive(self, at: float = 0.0, **tags: str) -> list[Command]:
        """The caller's call arrives at ``at``."""
        return self.send(CallArrived(attributes(**tags)), at)

    def send(self, event: Event, at: float | None = None) -> list[Command]:
        """Fire the timers due until ``at``, then feed ``event``; the commands the event caused."""
        if at is not None:
            self.run_until(at)
        start = len(self.log)
        self._carry_out(self.session.handle(event, self.now))
        return self.log[start:]

    def run_until(self, at: float) -> list[Command]:
        """Advance virtual time to ``at``, waking the session at each of its timers."""
        start = len(self.log)
        while (timer := self.session.get_timer()) is not None and timer <= at:
            self.now = max(self.now, timer)
            self._carry_out(self.session.handle_timer(self.now))
        self.now = max(self.now, at)
        return self.log[start:]

    def release_caps(self, count: int | None = None) -> list[Command]:
        """Answer the first ``count`` held cap reservations (all of them by default)."""
        start = len(self.log)
        count = len(self.held) if count is None else count
        released, self.held = self.held[:count], self.held[count:]
        for command in released:
            self._reserve(command)
        return self.log[start:]

    def finish_play(self, leg: str, at: float | None = None) -> list[Command]:
        """The latest playback on ``leg`` reaches its end."""
        return self.send(PlaybackFinished(leg, self.last_play(leg)), at)

    def last_play(self, leg: str) -> int:
        """Id of the latest playback started on ``leg``."""
        plays = [c for c in self.log if isinstance(c, PlayText | PlayAudio) and c.leg == leg]
        return plays[-1].play_id

    def entries(self, kind: str, leg: str | None = None) -> list[Entry]:
        """Timeline entries of ``kind`` (on ``leg`` if given)."""
        return [e for e in self.timeline if e.kind == kind and (leg is None or e.leg == leg)]

    def _carry_out(self, commands: list[Command]) -> None:
        for command in commands:
            self.log.append(command)
            match command:
                case RequestRouting():
                    self._carry_out(self.session.handle(RoutingDecided(self.routing), self.now))
                case ReserveCaps() if self.hold_caps:
                    self.held.append(command)
                case ReserveCaps():
                    self._reserve(command)
                case CommitCaps():
                    self.ledger.commit(command.reservation_id, command.metrics, command.revenue)
                case FinishCaps():
                    self.ledger.finish(command.reservation_id)
                case _:
                    pass

    def _reserve(self, command: ReserveCaps) -> None:
        refused = self.ledger.reserve(command.reservation)
        event = CapsReserved(command.reservation.reservation_id, refused)
        self._carry_out(self.session.handle(event, self.now))
