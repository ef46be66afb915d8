"""The tenant's leg when it speaks websocket: RFC 6455 by the ``websockets`` library's sans-I/O ServerProtocol.

The library parses the upgrade request, frames, masks (in C), answers pings
and runs the closing handshake; this module moves bytes between it and the
transport and turns messages into console payload:

- ``binary`` framing (also when no subprotocol was offered): payload of
  binary messages, passed on frame by frame; a text message is refused;
- ``base64`` framing: each message (text or binary) is base64, decoded when
  complete; what goes back to the tenant is base64 in text messages.

When the library fails the connection (an oversized or malformed frame) the
tenant may still be sending: closing at once would make the kernel (or, on
TLS, OpenSSL's "application data after close notify") reset the connection,
and the tenant could lose the close frame that says why.  So the leg lingers
as web servers do: it reads and drops what still comes until the tenant
closes or goes quiet for LINGER_QUIET, at most CLOSE_TIMEOUT, then closes.
"""

import asyncio
import base64
import binascii
import logging
import time
from typing import Callable, Optional, Union

from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CLOSED, CONNECTING, OPEN
from websockets.server import ServerProtocol

from proxyd.relay import ConsoleLeg, Leg, ViewSink
from proxyd.request import Framing, framing_of, select_framing

# The library logs request lines (which carry the token) at debug level: keep its logger above that.
_LIBRARY_LOG = logging.getLogger("proxyd.websocket.library")
_LIBRARY_LOG.setLevel(logging.WARNING)

MAX_MESSAGE = 1024 * 1024
MAX_REASON = 123  # a close frame's payload is at most 125 bytes, two of them the code
CLOSE_TIMEOUT = 5.0
LINGER_QUIET = 1.0  # after failing: close once the tenant has sent nothing for this long


class HandshakeFailed(Exception):
    """The upgrade request never came or was not one; the library already answered what it could."""


def truncated(reason: str) -> str:
    data = reason.encode()
    if len(data) <= MAX_REASON:
        return reason
    return data[:MAX_REASON].decode(errors="ignore")


class WebSocketLeg(Leg):
    def __init__(self, first_bytes: bytes = b"") -> None:
        super().__init__()
        self.ws = ServerProtocol(max_size=MAX_MESSAGE, logger=_LIBRARY_LOG,
                                 select_subprotocol=lambda _protocol, offered: select_framing(offered))
        self.framing = Framing.BINARY
        self.received = 0  # console payload received from the tenant
        self.last_activity = time.monotonic()  # any frame from the tenant
        self.ping_sent: Optional[float] = None
        self.on_closing: Callable[[Optional[int], str], None] = lambda code, reason: None
        self._request: "asyncio.Future[Request]" = asyncio.get_running_loop().create_future()
        self._message = bytearray()  # a base64 message being assembled
        self._first_bytes = first_bytes
        self._close_timer: Optional[asyncio.TimerHandle] = None
        self._closing_reported = False
        self._linger_timer: Optional[asyncio.TimerHandle] = None
        self._linger_since = 0.0
        self._linger_last = 0.0
        self._eof = False

    # -- opening handshake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._first_bytes:
            first, self._first_bytes = self._first_bytes, b""
            self.data_received(first)

    async def request(self) -> Request:
        """The upgrade request; HandshakeFailed when it is not a valid HTTP request."""
        return await self._request

    def accept(self, request: Request) -> Response:
        """The library's answer to the request: 101 with the chosen subprotocol, or an HTTP error."""
        response = self.ws.accept(request)
        if response.status_code == 101:
            self.framing = framing_of(self.ws.subprotocol)
        return response

    def reject(self, status: int, text: str) -> Response:
        return self.ws.reject(status, text)

    def respond(self, response: Response) -> None:
        self.ws.send_response(response)
        self._flush()

    # -- open connection

    def send(self, data: Union[bytes, memoryview]) -> None:
        if self.ws.state is not OPEN:
            return
        if self.framing is Framing.BASE64:
            self.ws.send_text(base64.b64encode(data))
        else:
            self.ws.send_binary(data)
        self._flush()

    def send_view(self) -> Optional[ViewSink]:
        return self.send  # the library serializes each frame into bytes of its own before it returns

    def ping(self) -> None:
        if self.ws.state is OPEN:
            self.ping_sent = time.monotonic()
            self.ws.send_ping(b"")
            self._flush()

    def close_with(self, code: int, reason: str) -> None:
        """Start the closing handshake; the tenant has CLOSE_TIMEOUT to answer before the TCP connection goes."""
        if self.ws.state is OPEN:
            self.ws.send_close(code, truncated(reason))
            self._flush()
        if not self.lost and self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        for timer in (self._close_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        if not self._request.done():
            self._request.set_exception(HandshakeFailed("the connection closed before the upgrade request"))
        if self.ws.state is not CLOSED:
            self.ws.receive_eof()
        super().connection_lost(exc)

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.get_buffer(nbytes)[:nbytes])  # no copy: the library copies what it keeps

    def data_received(self, data: Union[bytes, memoryview]) -> None:
        if self._linger_timer is not None:
            self._linger_last = time.monotonic()  # the library would discard it anyway
            return
        ws = self.ws
        ws.receive_data(data)  # type: ignore[arg-type]  # the library appends them to its bytearray
        if ws.state is CONNECTING or not self._request.done():
            self._opening_events()
        else:
            self.last_activity = time.monotonic()
            events = ws.events_received()
            peer = self.peer if len(events) > 1 and isinstance(self.peer, ConsoleLeg) else None
            if peer is not None:
                peer.cork()
            try:
                for event in events:
                    if ws.state is not OPEN:
                        break
                    self._frame(event)
            finally:
                if peer is not None:
                    peer.uncork()
        self._flush()
        if ws.close_expected():
            self._closing()

    def eof_received(self) -> Optional[bool]:
        self._eof = True
        self.ws.receive_eof()
        self._flush()
        return False

    def _opening_events(self) -> None:
        for event in self.ws.events_received():
            if isinstance(event, Request) and not self._request.done():
                self._request.set_result(event)
        if not self._request.done() and self.ws.handshake_exc is not None:
            # Not HTTP at all: the library only closes; say why in a plain 400 first.
            response = self.ws.reject(400, "Expected an HTTP/1.1 websocket upgrade request.\n")
            assert self.transport is not None
            self.transport.write(response.serialize())
            self._request.set_exception(HandshakeFailed(str(self.ws.handshake_exc)))

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.CONT or opcode is Opcode.TEXT:
            if self.framing is Framing.BINARY:
                if opcode is Opcode.TEXT:
                    self.ws.fail(CloseCode.UNSUPPORTED_DATA, "text messages need the base64 subprotocol")
                    return
                self.received += len(frame.data)
                self.sink(frame.data)
            else:
                self._base64_fragment(frame)
        elif opcode is Opcode.PONG:
            self.ping_sent = None

    def _base64_fragment(self, frame: Frame) -> None:
        self._message += frame.data
        if not frame.fin:
            return
        try:
            payload = base64.b64decode(bytes(self._message), validate=True)
        except binascii.Error:
            self.ws.fail(CloseCode.INVALID_DATA, "invalid base64 in a message")
            return
        finally:
            self._message = bytearray()
        self.received += len(payload)
        self.sink(payload)

    def _closing(self) -> None:
        if self._closing_reported:
            return
        self._closing_reported = True
        sent = self.ws.close_sent
        received = self.ws.close_rcvd
        if received is not None:
            self.on_closing(received.code, received.reason)
        elif sent is not None:
            self.on_closing(sent.code, sent.reason)
        else:
            self.on_closing(None, "connection closed")

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.is_closing() or self._linger_timer is not None:
                pass
            elif self.ws.close_sent is not None and self.ws.close_rcvd is None and not self._eof:
                self._linger()
            else:
                transport.close()

    def _linger(self) -> None:
        """We failed the connection and the tenant may still be sending: drop its bytes a while, then close."""
        self._linger_since = self._linger_last = time.monotonic()
        self.resume_reading()  # whatever paused it (a full hold buffer, a slow console) no longer matters
        self._linger_timer = asyncio.get_running_loop().call_later(LINGER_QUIET, self._linger_check)

    def _linger_check(self) -> None:
        now = time.monotonic()
        quiet_at = self._linger_last + LINGER_QUIET
        if now >= quiet_at or now - self._linger_since >= CLOSE_TIMEOUT:
            self.close()
        else:
            self._linger_timer = asyncio.get_running_loop().call_later(quiet_at - now, self._linger_check)

