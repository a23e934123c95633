"""The back-to-back user agent: inbound INVITEs become calls, SIP events reach their call.

:class:`B2bua` is the transaction user of the SIP core. Beside what every
:class:`~callwhisper.engine.transaction_user.TransactionUser` answers
(OPTIONS, requests for unknown dialogs with 481), it turns away the INVITEs
it cannot serve (unknown numbers with 404, offers without a common codec
with 488, stored as refused calls), creates a
:class:`~callwhisper.engine.runner.CallRunner` per accepted INVITE, and
routes every later transaction event to the runner of its call by server
transaction key, client transaction key or dialog id. It never blocks: a
runner handles what it can at once and waits for the rest on its own; the
future of each call (done once it is over and written) is held in a set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Final

from callwhisper.domain import CallAttributes, Campaign, Configuration, Publisher
from callwhisper.engine.backend import CallBackend, Prompts
from callwhisper.engine.legs import (
    CallerLeg,
    caller_user,
    codec_of,
    dialed_user,
    needs_sips,
    new_session_id,
    via_transport,
)
from callwhisper.engine.media import MediaEngine
from callwhisper.engine.runner import (
    ALLOW,
    CALLER,
    CallRunner,
    RunnerSettings,
    SipInput,
)
from callwhisper.engine.transaction_user import TransactionUser
from callwhisper.engine.transport import TcpStreams
from callwhisper.errors import RemoteProtocolError, SdpError
from callwhisper.flow import CallRefused, CallSession, FlowSettings, Persist
from callwhisper.media.sdp import SessionDescription, create_answer
from callwhisper.routing import enrich, is_withheld
from callwhisper.sip.dialog import DialogId, check_dialog_request
from callwhisper.sip.message import SipRequest, new_tag
from callwhisper.sip.transaction import (
    Address,
    InviteCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionFailed,
    TransactionKey,
    TransactionLayer,
)
from callwhisper.whisper import spoken_variables

__all__ = ["B2bua"]

log = logging.getLogger(__name__)


def new_call_id() -> str:
    """A new call's id: a UUID of version 7 (RFC 9562 5.7) in 32 hex digits.

    It starts with the time in milliseconds, so calls made in the same
    minutes have neighbouring ids: the rows of a busy hour (the call, its
    legs, reservations and timeline, all keyed by it) land in the same few
    index pages instead of one page each, which a commit writes once. With
    74 random bits it is as hard to guess as a random id must be.
    """
    random = int.from_bytes(os.urandom(10))
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76  # version
        | (random >> 68) << 64  # rand_a: 12 bits
        | 0x2 << 62  # variant 10
        | random & (1 << 62) - 1  # rand_b: 62 bits
    )
    return f"{value:032x}"


_Route = tuple[CallRunner, str]

_NO_PORT: Final = 9
"""The port of a first answer, made only to check the offer before a media port is taken."""


def _answer_at(answer: SessionDescription, port: int, session_id: int) -> SessionDescription:
    """``answer`` (made at ``_NO_PORT``) at our media port, with our session id.

    The same answer :func:`create_answer` would give for those, without
    negotiating the offer again: only the accepted stream has a port.
    """
    origin = replace(answer.origin, session_id=str(session_id))
    media = tuple(replace(m, port=port) if m.port else m for m in answer.media)
    return replace(answer, origin=origin, media=media)


@dataclass(slots=True)
class _Keys:
    """Every route key of one call, so that forgetting it touches only its own entries."""

    clients: list[TransactionKey] = field(default_factory=list)
    dialogs: list[DialogId] = field(default_factory=list)
    invite: TransactionKey | None = None


class B2bua(TransactionUser):
    """Turns SIP transaction events into calls and routes them to their runners.

    ``flush`` sends what the core queued (``SipEndpoint.flush``); ``clock`` is
    the core's clock (the loop's monotonic time) and ``wall`` the flow's
    (POSIX seconds).
    """

    def __init__(
        self,
        core: TransactionLayer,
        media: MediaEngine,
        backend: CallBackend,
        prompts: Prompts,
        configuration: Configuration,
        settings: RunnerSettings,
        *,
        local: Address,
        media_address: str,
        flush: Callable[[], None],
        clock: Callable[[], float],
        wall: Callable[[], float],
        tcp: TcpStreams | None = None,
    ) -> None:
        """Serve calls for ``configuration``; nothing is sent before an event arrives.

        ``tcp`` opens connections to TCP and TLS trunks and targets and
        tells our TLS listener (the
        :class:`~callwhisper.engine.transport.SipEndpoint`); without it such
        legs fail as a transport error, and callers over TLS are refused.
        """
        super().__init__(
            core, local=local, user="callwhisper", flush=flush, clock=clock, streams=tcp
        )
        self.media = media
        self.backend = backend
        self.prompts = prompts
        self.configuration = configuration
        self.settings = settings
        self._media_address = media_address
        self._wall = wall
        self.accepting = True
        """False while draining: new INVITEs get 503."""
        self.runners: set[CallRunner] = set()
        self.tasks: set[asyncio.Future[None]] = set()
        """Each call in progress (done once it is over and written; cancel to end it now),
        and each refused call being stored."""
        self._invites: dict[TransactionKey, CallRunner] = {}
        self._clients: dict[TransactionKey, _Route] = {}
        self._dialogs: dict[DialogId, _Route] = {}
        self._keys: dict[CallRunner, _Keys] = {}
        self._settings: dict[tuple[str, str | None], FlowSettings] = {}
        self._settings_of: Configuration | None = None

    server = "callwhisper"
    allow = ALLOW

    # -- SipSide, for the runners (the rest of it comes with TransactionUser) -------------

    @property
    def media_address(self) -> str:
        """The address of our RTP sockets, put in our SDP."""
        return self._media_address

    def send_request(
        self,
        runner: CallRunner,
        leg: str,
        request: SipRequest,
        destination: Address,
        *,
        reliable: bool = False,
    ) -> TransactionKey:
        """Start a client transaction; its responses go to ``runner`` for ``leg``."""
        key = self.core.send_request(request, destination, self._clock(), reliable=reliable)
        self._clients[key] = (runner, leg)
        self._keys_of(runner).clients.append(key)
        self._send()
        return key

    @property
    def tls_port(self) -> int | None:
        """The port of our TLS listener, None without one."""
        return None if self._streams is None else self._streams.tls_port

    async def connect(
        self, destination: Address, *, tls: bool = False, server_name: str | None = None
    ) -> Address:
        """Open (or reuse) a TCP or TLS connection to ``destination``; our address on it.

        Raises OSError, also for a TLS certificate that fails for ``server_name``.
        """
        if self._streams is None:
            raise OSError("this user agent has no TCP transport")
        return await self._streams.connect(destination, tls=tls, server_name=server_name)

    def connected(self, destination: Address) -> bool:
        """Whether a TCP or TLS connection to ``destination`` is open."""
        return self._streams is not None and self._streams.connected(destination)

    def send_ack(self, request: SipRequest, destination: Address) -> None:
        """Send an ACK for a 2xx."""
        self.core.send_stateless(request, destination)
        self._send()

    def cancel(self, key: TransactionKey) -> None:
        """CANCEL a pending INVITE (sent once it has a provisional response)."""
        cancel_key = self.core.cancel(key, self._clock())
        route = self._clients.get(key)
        if cancel_key is not None and route is not None:
            self._clients[cancel_key] = route
            self._keys_of(route[0]).clients.append(cancel_key)
        self._send()

    def add_dialog(self, dialog_id: DialogId, runner: CallRunner, leg: str) -> None:
        """Route the requests of a dialog to ``runner``."""
        self._dialogs[dialog_id] = (runner, leg)
        self._keys_of(runner).dialogs.append(dialog_id)

    def forget(self, runner: CallRunner) -> None:
        """Drop every route to a finished call."""
        self.runners.discard(runner)
        keys = self._keys.pop(runner, None)
        if keys is None:
            return
        for key in keys.clients:
            self._clients.pop(key, None)
        for dialog_id in keys.dialogs:
            self._dialogs.pop(dialog_id, None)
        if keys.invite is not None:
            self._invites.pop(keys.invite, None)

    def _keys_of(self, runner: CallRunner) -> _Keys:
        keys = self._keys.get(runner)
        if keys is None:
            keys = self._keys[runner] = _Keys()
        return keys

    # -- events from the SIP core ---------------------------------------------------------

    def _transaction_event(
        self, event: ResponseReceived | InviteCancelled | TransactionFailed
    ) -> None:
        match event:
            case ResponseReceived(key=key):
                route = self._clients.get(key)
                if route is not None:
                    route[0].feed(SipInput(route[1], event))
            case InviteCancelled(key=key):
                runner = self._invites.get(key)
                if runner is not None:
                    runner.feed(SipInput(CALLER, event))
            case TransactionFailed(key=key):
                client = self._clients.get(key)
                if client is not None:
                    client[0].feed(SipInput(client[1], event))
                elif (runner := self._invites.get(key)) is not None:
                    runner.feed(SipInput(CALLER, event))

    def _dialog_request(self, event: RequestReceived) -> bool:
        route = self._dialogs.get(DialogId.of_incoming_request(event.request))
        if route is None:
            return False
        route[0].feed(SipInput(route[1], event))
        return True

    def _invite(self, request: SipRequest, source: Address, key: TransactionKey) -> None:
        if not self.accepting:
            self.respond(request, 503, extra=(("Retry-After", "5"),))
            return
        try:
            check_dialog_request(request)
            signalling = self._caller_signalling(request)  # reads the Contact: a 400 if broken
        except RemoteProtocolError as exc:
            # RFC 3261 12.1.1: the answer at the bridge would make a dialog we could not keep.
            log.info("INVITE %s refused: %s", request.call_id, exc)
            self.respond(request, exc.status_hint or 400)
            return
        if signalling is None:
            self.respond(request, 416)
            return
        configuration = self.configuration
        tracking = None
        for user in dialed_user(request):
            tracking = configuration.lookup_number(user)
            if tracking is not None:
                break
        campaign = configuration.campaigns_by_id.get(tracking.campaign) if tracking else None
        if tracking is None or campaign is None:
            self.respond(request, 404)
            return
        publisher = configuration.publishers_by_id.get(tracking.publisher or "")
        number = caller_user(request)
        attributes = enrich(
            CallAttributes(
                campaign_id=campaign.id,
                dialed=tracking.number,
                caller=None if is_withheld(number) else number,
                publisher_id=tracking.publisher,
                tags=dict(tracking.tags),
            )
        )
        call_id = new_call_id()
        # RFC 3261 13.3.1.4 / RFC 3264: a codec we can speak is checked before anything else.
        try:
            offer = SessionDescription.parse(request.body)
            checked, negotiated = create_answer(
                offer, self.media_address, _NO_PORT, session_id=0, codecs=self.settings.codecs
            )
        except SdpError as exc:
            log.info("INVITE %s refused: %s", request.call_id, exc)
            status = exc.status_hint or 488
            self.respond(request, status)
            self._spawn(self._record_refused(call_id, campaign.id, attributes, status), call_id)
            return
        remote = (negotiated.remote_address, negotiated.remote_port)
        try:
            # Its events go to the call's runner, made below: none arrive before we return.
            media = self.media.open_leg(
                codec_of(negotiated), remote=remote, name=f"{call_id}/{CALLER}"
            )
        except OSError as exc:
            log.error("no RTP port for a new call: %s", exc)
            self.respond(request, 503, extra=(("Retry-After", "5"),))
            return
        session_id = new_session_id()
        answer = _answer_at(checked, media.local_address[1], session_id)
        self.respond(request, 100)
        to_tag = new_tag()
        caller = CallerLeg(
            request,
            source,
            to_tag,
            answer.serialize(),
            media,
            session_id,
            local=signalling[0],
            contact=signalling[1],
        )
        runner = CallRunner(
            call_id,
            self._flow_settings(campaign, publisher),
            attributes,
            caller,
            sip=self,
            media=self.media,
            backend=self.backend,
            prompts=self.prompts,
            trunks=configuration.trunks_by_id,
            config=self.settings,
            wall=self._wall,
        )
        media.on_event = runner.media_handler(CALLER)
        self.runners.add(runner)
        self._invites[key] = runner
        self._keys_of(runner).invite = key
        self.add_dialog(DialogId(request.call_id, to_tag, request.from_.tag or ""), runner, CALLER)
        # At once, not from a task's first turn: the buyer's INVITE waits for no other work.
        runner.start()
        self._track(runner.done)
        # Written once what the call sends now has gone: a log line is no reason to wait.
        line = "call %s: %s -> %s (campaign %s)"
        asyncio.get_running_loop().call_soon(
            log.info, line, call_id, number, tracking.number, campaign.id
        )

    def _flow_settings(self, campaign: Campaign, publisher: Publisher | None) -> FlowSettings:
        """The flow settings of a call to ``campaign`` from ``publisher``, made once each.

        They are kept for the configuration they were made from: a new one
        (:attr:`configuration` replaced) starts afresh.
        """
        configuration = self.configuration
        if self._settings_of is not configuration:
            self._settings.clear()
            self._settings_of = configuration
        key = (campaign.id, None if publisher is None else publisher.id)
        settings = self._settings.get(key)
        if settings is None:
            settings = self._settings[key] = FlowSettings.for_campaign(
                campaign, configuration.telephony, publisher, speak=spoken_variables
            )
        return settings

    def _caller_signalling(self, request: SipRequest) -> tuple[Address, str] | None:
        """Our Via sent-by and Contact towards a caller, None when we cannot be reached securely.

        Over TLS both name our TLS listener, and the Contact says TLS: a
        ``sips:`` URI when the dialog must be secure (RFC 3261 12.1.1), else
        ``transport=tls``. A dialog that must be secure but whose INVITE did
        not come over TLS gets None (RFC 5630 3.1.3: SIPS means TLS up to
        the last hop; RFC 3261 8.2.2.1 answers an unusable scheme with 416).
        Raises SipParseError (400) for a Contact that does not parse.
        """
        transport = via_transport(request)
        sips = needs_sips(request)
        if transport != "tls":
            if sips:
                log.info("INVITE %s refused: a SIPS request over %s", request.call_id, transport)
                return None
            return self.local, self.contact_at(self.local[1], transport)
        port = self.tls_port
        if port is None:
            # Its Via says TLS, yet it came to no TLS listener of ours.
            log.info("INVITE %s refused: TLS in its Via, and no TLS listener", request.call_id)
            return None
        return (self.local[0], port), self.contact_at(port, "tls", sips=sips)

    def _spawn(self, work: Coroutine[Any, Any, None], call_id: str) -> None:
        self._track(asyncio.get_running_loop().create_task(work, name=f"call-{call_id}"))

    def _track(self, call: asyncio.Future[None]) -> None:
        self.tasks.add(call)
        call.add_done_callback(self.tasks.discard)

    async def _record_refused(
        self, call_id: str, campaign_id: str, attributes: CallAttributes, status: int
    ) -> None:
        """Store a call turned away before it started, as the call flow records it."""
        session = CallSession(call_id, FlowSettings(campaign_id=campaign_id))
        at = self._wall()
        commands = session.handle(CallRefused(attributes, status), at)
        # Handed over in order; the call's end is done once every write before it is.
        writes: list[Awaitable[None] | None] = []
        try:
            writes.append(self.backend.call_started(call_id, attributes, at))
            for command in commands:
                if isinstance(command, Persist):
                    writes.append(self.backend.persist(call_id, command.entry))
            outcome = session.record.outcome or "refused"
            record = session.record
            writes.append(self.backend.call_ended(call_id, attributes, record, outcome=outcome))
        except Exception:
            log.exception("call %s: the refused call could not be stored", call_id)
        outcomes = await asyncio.gather(
            *(write for write in writes if write is not None), return_exceptions=True
        )
        for error in outcomes:
            if isinstance(error, Exception):
                log.error("call %s: the refused call could not be stored", call_id, exc_info=error)
