"""What our two SIP transaction users share: the server's B2BUA and the phone of demo and tests.

RFC 3261 calls the layer above the transactions the transaction user (TU).
Ours (:class:`~callwhisper.engine.b2bua.B2bua` and
:class:`~callwhisper.engine.agent.Phone`) get the core's events from the
:class:`~callwhisper.engine.transport.SipEndpoint`, answer through the
request's server transaction, and treat what belongs to no call alike: a
request for a dialog they do not know gets 481 (12.2.2), OPTIONS 200 with
what they allow (11.2), a BYE outside a dialog 481, any other method 405
(8.2.1), and a stray ACK nothing. A subclass says what a new INVITE and an
in-dialog request do, and what becomes of responses, cancellations and
failed transactions.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Final

from callwhisper.engine.legs import Transport, contact_uri, uri_host
from callwhisper.engine.transport import TcpStreams
from callwhisper.errors import LocalProtocolError
from callwhisper.sip.message import SipRequest, SipResponse, make_response
from callwhisper.sip.transaction import (
    Address,
    InviteCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionFailed,
    TransactionKey,
    TransactionLayer,
)

__all__ = ["SDP", "TransactionUser"]

log = logging.getLogger(__name__)

SDP: Final = "application/sdp"


class TransactionUser(ABC):
    """Transaction events in, responses out: the part of a SIP TU that is not about calls.

    ``core`` is the transaction layer, ``local`` our SIP address and ``user``
    the user part of our Contact; ``flush`` sends what the core queued
    (``SipEndpoint.flush``) and ``clock`` is the core's clock. ``streams``
    (the endpoint too) carries TCP and TLS; without it the TU speaks UDP
    only. While an event is handled, sends are left to the endpoint, which
    flushes once the handler returns; outside of one (a timer, a task) each
    is flushed at once.
    """

    server: ClassVar[str]
    """The Server header of our responses."""
    allow: ClassVar[str]
    """The methods we accept, for Allow headers."""

    def __init__(
        self,
        core: TransactionLayer,
        *,
        local: Address,
        user: str,
        flush: Callable[[], None],
        clock: Callable[[], float],
        streams: TcpStreams | None = None,
    ) -> None:
        """A TU at SIP address ``local``; nothing is sent before it is asked to."""
        self.core = core
        self._local = local
        self._user = user
        self._flush = flush
        self._clock = clock
        self._streams = streams
        self._dispatching = False

    @property
    def local(self) -> Address:
        """Our SIP address."""
        return self._local

    @property
    def host(self) -> str:
        """Our address as written in URIs (IPv6 in brackets)."""
        host = self._local[0]
        return f"[{host}]" if ":" in host else host

    @property
    def contact(self) -> str:
        """Our Contact header value (UDP)."""
        return self.contact_at(self._local[1])

    def contact_at(self, port: int, transport: Transport = "udp", *, sips: bool = False) -> str:
        """Our Contact on a leg over ``transport``, reached at ``port`` of our host.

        ``sips`` for a dialog that must be secure (RFC 3261 12.1.1).
        """
        return contact_uri(self._user, self.host, port, transport, sips=sips)

    def use_stream(self, transport: Transport, destination: Address, uri: str) -> None:
        """Send to ``destination`` over ``transport`` from now on, if it is TCP or TLS.

        ``uri`` is what named the destination: over TLS, the certificate must
        name its host (RFC 5922 7.2).
        """
        streams = self._streams
        if streams is None or transport == "udp":
            return
        if transport == "tcp":
            streams.use_tcp(destination)
        else:
            streams.use_tls(destination, uri_host(uri))

    def respond(
        self,
        request: SipRequest,
        status: int,
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SipResponse:
        """Send a response through the request's server transaction and return it."""
        response = make_response(
            request, status, to_tag=to_tag, body=body, extra=(("Server", self.server), *extra)
        )
        try:
            self.core.send_response(response, self._clock())
        except LocalProtocolError as exc:
            # The transaction is gone (the peer cancelled, a timer ended it): nothing to answer.
            log.debug("no transaction for %d to %s: %s", status, request.method, exc)
        self._send()
        return response

    def handle_event(self, event: TransactionEvent) -> None:
        """The ``on_event`` callback of the :class:`~callwhisper.engine.transport.SipEndpoint`."""
        self._dispatching = True
        try:
            if isinstance(event, RequestReceived):
                self._request(event)
            else:
                self._transaction_event(event)
        finally:
            self._dispatching = False

    def _request(self, event: RequestReceived) -> None:
        request = event.request
        method = request.method
        if request.to.tag is not None:
            if not self._dialog_request(event) and method != "ACK":
                self.respond(request, 481)  # RFC 3261 12.2.2: no such dialog
            return
        if method == "INVITE":
            assert event.key is not None  # only an ACK comes without a transaction
            self._invite(request, event.source, event.key)
        elif method == "OPTIONS":
            extra = (("Allow", self.allow), ("Accept", SDP), ("Contact", self.contact))
            self.respond(request, 200, extra=extra)
        elif method == "BYE":
            self.respond(request, 481)
        elif method != "ACK":  # an ACK here is for an error response, or a stray one
            self.respond(request, 405, extra=(("Allow", self.allow),))

    @abstractmethod
    def _invite(self, request: SipRequest, source: Address, key: TransactionKey) -> None:
        """A new INVITE, outside any dialog, from ``source``."""

    @abstractmethod
    def _dialog_request(self, event: RequestReceived) -> bool:
        """A request with a To tag: handle it and return True if its dialog is ours."""

    @abstractmethod
    def _transaction_event(
        self, event: ResponseReceived | InviteCancelled | TransactionFailed
    ) -> None:
        """A response, a cancelled INVITE or a failed transaction."""

    def _send(self) -> None:
        if not self._dispatching:
            self._flush()
