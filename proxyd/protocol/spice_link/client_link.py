"""The tenant's leg of the SPICE link: the proxy as SPICE server.

1. ``LinkRequested(message)``: the client's header and SpiceLinkMess, checked.
   The caller picks the backend (and links it first whenever it can), then
   ``send_reply(common_caps, channel_caps)`` announces caps with the proxy's
   public key.
2. ``TicketReceived(password)``: the auth mechanism (read when the client
   advertised auth selection, as spice-server does; only the SPICE ticket is
   accepted) and the decrypted ticket.  The caller checks the token and
   links the backend, then ``complete()`` sends OK and returns the bytes to
   relay, or ``refuse(error)`` sends the error.

When ``receive_data`` raises, the error answer the client expects is already
queued: flush ``data_to_send()``, then close.  Before the reply that is the
whole 194-byte error reply (spice-gtk reads nothing shorter); after it, a
bare u32, which is what the client reads next.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

from ..errors import BadMagic, ProtocolError, UnsupportedVersion
from ..handshake import Handshake
from .constants import (
    AUTH_MECHANISM_SIZE,
    LINK_HEADER_SIZE,
    LINK_MESS_SIZE,
    MAX_LINK_SIZE,
    TICKET_SIZE,
    AuthMechanism,
    CommonCap,
    LinkError,
)
from .errors import BadTicket, UnsupportedAuthMechanism
from .messages import Caps, LinkMess, LinkReply, encode_link_error, encode_u32, parse_link_header, parse_u32, set_cap
from .ticket import TicketKey

MAX_PENDING = LINK_HEADER_SIZE + MAX_LINK_SIZE + AUTH_MECHANISM_SIZE + TICKET_SIZE


@dataclass(frozen=True)
class LinkRequested:
    message: LinkMess


@dataclass(frozen=True)
class TicketReceived:
    password: str


Event = Union[LinkRequested, TicketReceived]


class _State(enum.Enum):
    HEADER = "header"
    BODY = "body"
    AWAIT_REPLY = "await-reply"
    MECHANISM = "mechanism"
    TICKET = "ticket"
    AWAIT_RESULT = "await-result"
    DONE = "done"
    FAILED = "failed"


def _link_error_for(error: ProtocolError) -> LinkError:
    if isinstance(error, BadMagic):
        return LinkError.INVALID_MAGIC
    if isinstance(error, UnsupportedVersion):
        return LinkError.VERSION_MISMATCH
    if isinstance(error, BadTicket):
        return LinkError.PERMISSION_DENIED
    return LinkError.INVALID_DATA


class SpiceClientLink(Handshake):
    def __init__(self, key: TicketKey) -> None:
        self._key = key
        super().__init__(MAX_PENDING)
        self._state = _State.HEADER
        self._body_size = 0
        self._reply_sent = False
        self.message: Optional[LinkMess] = None
        self._events: List[Event] = []
        self._handlers: Dict[_State, Callable[[], bool]] = {
            _State.HEADER: self._on_header,
            _State.BODY: self._on_body,
            _State.MECHANISM: self._on_mechanism,
            _State.TICKET: self._on_ticket,
        }

    def receive_data(self, data: bytes) -> List[Event]:
        self._require(_State.HEADER, _State.BODY, _State.AWAIT_REPLY, _State.MECHANISM, _State.TICKET,
                      _State.AWAIT_RESULT, action="receive_data()")
        self._buffer.feed(data)
        return self._advance()

    def send_reply(self, common_caps: Caps, channel_caps: Caps) -> List[Event]:
        """Answer the link; the common caps always offer auth selection and the SPICE ticket, never SASL.

        Bytes the client sent early are processed now, so this returns events
        and may raise a ProtocolError like ``receive_data``.
        """
        self._require(_State.AWAIT_REPLY, action="send_reply()")
        common_caps = set_cap(common_caps, CommonCap.PROTOCOL_AUTH_SELECTION, True)
        common_caps = set_cap(common_caps, CommonCap.AUTH_SPICE, True)
        common_caps = set_cap(common_caps, CommonCap.AUTH_SASL, False)
        self._out += LinkReply(LinkError.OK, self._key.public_der, common_caps, channel_caps).encode()
        self._reply_sent = True
        assert self.message is not None
        self._state = _State.MECHANISM if self.message.auth_selection else _State.TICKET
        return self._advance()

    def complete(self) -> bytes:
        """Send link result OK; returns what the client sent after its ticket, for the relay."""
        self._require(_State.AWAIT_RESULT, action="complete()")
        self._out += encode_u32(LinkError.OK)
        self._state = _State.DONE
        return self._buffer.take_all()

    def refuse(self, error: LinkError) -> None:
        """Queue ``error`` in the form the client expects now; the caller flushes and closes."""
        if error is LinkError.OK:
            raise ValueError("refuse() needs an error")
        self._require(_State.HEADER, _State.BODY, _State.AWAIT_REPLY, _State.MECHANISM, _State.TICKET,
                      _State.AWAIT_RESULT, action="refuse()")
        self._fail(error)

    def _require(self, *states: _State, action: str) -> None:
        if self._state not in states:
            raise RuntimeError(f"{action} while {self._state.value}")

    def _fail(self, error: LinkError) -> None:
        self._out += encode_u32(error) if self._reply_sent else encode_link_error(error)
        self._state = _State.FAILED

    def _advance(self) -> List[Event]:
        try:
            while self._state in self._handlers and self._handlers[self._state]():
                pass
            self._buffer.check_limit()
        except ProtocolError as error:
            self._fail(_link_error_for(error))
            raise
        events, self._events = self._events, []
        return events

    def _on_header(self) -> bool:
        raw = self._buffer.take(LINK_HEADER_SIZE)
        if raw is None:
            return False
        self._body_size = parse_link_header(raw, LINK_MESS_SIZE).size
        self._state = _State.BODY
        return True

    def _on_body(self) -> bool:
        body = self._buffer.take(self._body_size)
        if body is None:
            return False
        self.message = LinkMess.parse(body)
        self._state = _State.AWAIT_REPLY
        self._events.append(LinkRequested(self.message))
        return True

    def _on_mechanism(self) -> bool:
        raw = self._buffer.take(AUTH_MECHANISM_SIZE)
        if raw is None:
            return False
        mechanism = parse_u32(raw)
        if mechanism != AuthMechanism.SPICE:
            raise UnsupportedAuthMechanism(f"client asks for auth mechanism {mechanism}, not the SPICE ticket")
        self._state = _State.TICKET
        return True

    def _on_ticket(self) -> bool:
        ticket = self._buffer.take(TICKET_SIZE)
        if ticket is None:
            return False
        self._state = _State.AWAIT_RESULT
        self._events.append(TicketReceived(self._key.decrypt(ticket)))
        return True
