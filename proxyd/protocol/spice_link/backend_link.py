"""QEMU's leg of the SPICE link: the proxy as SPICE client.

The link message goes out at once.  On QEMU's reply (``LinkReplyReceived``,
whose caps the caller can mirror to the client straight away) the machine
sends the auth mechanism when QEMU offers auth selection, and the real
password encrypted with QEMU's key; QEMU's link result then gives
``BackendLinked`` or raises ``LinkRefused`` carrying QEMU's error code, for
passing on to the client.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

from ..errors import ProtocolError
from ..handshake import Handshake
from .constants import LINK_HEADER_SIZE, LINK_REPLY_SIZE, MAX_LINK_SIZE, RESULT_SIZE, AuthMechanism, CommonCap, LinkError
from .errors import LinkRefused, UnsupportedAuthMechanism
from .messages import LinkMess, LinkReply, encode_u32, has_cap, parse_link_header, parse_link_result
from .ticket import encrypt_ticket, ticket_plaintext

MAX_PENDING = LINK_HEADER_SIZE + MAX_LINK_SIZE


@dataclass(frozen=True)
class LinkReplyReceived:
    reply: LinkReply


@dataclass(frozen=True)
class BackendLinked:
    reply: LinkReply
    remaining: bytes
    """What QEMU sent after the link result (on main, the start of MAIN_INIT)."""


Event = Union[LinkReplyReceived, BackendLinked]


class _State(enum.Enum):
    HEADER = "header"
    BODY = "body"
    RESULT = "result"
    DONE = "done"
    FAILED = "failed"


class SpiceBackendLink(Handshake):
    def __init__(self, message: LinkMess, password: str) -> None:
        self._ticket_plaintext = ticket_plaintext(password)
        super().__init__(MAX_PENDING, message.encode())
        self._state = _State.HEADER
        self._body_size = 0
        self._reply: Optional[LinkReply] = None
        self._events: List[Event] = []
        self._handlers: Dict[_State, Callable[[], bool]] = {
            _State.HEADER: self._on_header,
            _State.BODY: self._on_body,
            _State.RESULT: self._on_result,
        }

    def receive_data(self, data: bytes) -> List[Event]:
        if self._state not in self._handlers:
            raise RuntimeError(f"receive_data() while {self._state.value}")
        self._buffer.feed(data)
        try:
            while self._state in self._handlers and self._handlers[self._state]():
                pass
            if self._state is not _State.DONE:
                self._buffer.check_limit()
        except ProtocolError:
            self._state = _State.FAILED
            raise
        events, self._events = self._events, []
        return events

    def _on_header(self) -> bool:
        raw = self._buffer.take(LINK_HEADER_SIZE)
        if raw is None:
            return False
        self._body_size = parse_link_header(raw, LINK_REPLY_SIZE).size
        self._state = _State.BODY
        return True

    def _on_body(self) -> bool:
        body = self._buffer.take(self._body_size)
        if body is None:
            return False
        reply = LinkReply.parse(body)
        if reply.error is not LinkError.OK:
            raise LinkRefused(reply.error, "in its reply")
        if has_cap(reply.common_caps, CommonCap.PROTOCOL_AUTH_SELECTION):
            if not has_cap(reply.common_caps, CommonCap.AUTH_SPICE):
                raise UnsupportedAuthMechanism("backend does not offer SPICE ticket auth (SASL only?)")
            self._out += encode_u32(AuthMechanism.SPICE)
        self._out += encrypt_ticket(reply.pub_key, self._ticket_plaintext)
        self._reply = reply
        self._state = _State.RESULT
        self._events.append(LinkReplyReceived(reply))
        return True

    def _on_result(self) -> bool:
        raw = self._buffer.take(RESULT_SIZE)
        if raw is None:
            return False
        result = parse_link_result(raw)
        if result is not LinkError.OK:
            raise LinkRefused(result, "after the ticket")
        assert self._reply is not None
        self._state = _State.DONE
        self._events.append(BackendLinked(self._reply, self._buffer.take_all()))
        return True
