"""One accepted connection on the public port, from its first byte to an open session or a refusal.

1. Peek at the first bytes (nothing is consumed): a TLS ClientHello, a
   clear-text ``CONNECT`` (remote-viewer's proxy=: the token is in its
   credentials or host; 200, then TLS and SPICE inside the tunnel), or a
   clear-text ``GET`` when the port runs with --listen-insecure.
2. TLS, then the first application bytes name the front: ``GET`` is a
   websocket upgrade, ``REDQ`` a native SPICE channel (proxyd.spice: the
   link MITM, the token being the ticket or the session's).
3. The upgrade request: path, Origin, a valid upgrade (else an HTTP 4xx);
   101 with the chosen subprotocol.
4. Token (URL or cookie), the per-address brake on failed attempts, the
   resolver look-up, the console leg (and the VNC MITM), the claim of a
   one-time token once the console accepted the proxy (a lost claim is a
   refusal); then the session.
   A SPICE console (spice-html5: one websocket per channel) gets the SPICE
   MITM with the URL's token; a token the resolver no longer knows may still
   open a later channel of the session it opened (a spent one-time token),
   if the tenant's first bytes are a SPICE link.

Everything up to the session counts against --handshake-timeout; its log
line names what the connection was waiting for.  A refusal after the 101 is
a close frame with a reason the tenant can read.
"""

import asyncio
import logging
import math
import socket
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterator, Optional, Set, TypeVar, Union, cast

from websockets.frames import CloseCode
from websockets.protocol import CLOSED, CLOSING, CONNECTING, OPEN

from proxyd.backends import Outbound, open_console
from proxyd.metrics import Failure, WorkerMetrics
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.front_sniffer import MAX_PEEK, Front, FrontDetected, FrontSniffer, UnknownFront
from proxyd.protocol.http_connect import (
    MAX_REQUEST_SIZE,
    ConnectRequestParser,
    established_reply,
    refusal_for,
    refusal_reply,
)
from proxyd.protocol.spice_link import TicketKey
from proxyd.ratelimit import FailedAttempts
from proxyd.refusal import Refusal
from proxyd.request import WEBSOCKET_PATH, TokenError, origin_allowed, path_of, token_of
from proxyd.resolver import Console, ResolverClient, ResolverUnavailable, TokenRefused, TokenSpent
from proxyd.session import Session
from proxyd.spice import Access, spice_link, starts_with_link
from proxyd.spice_directory import SessionDirectory
from proxyd.stream_leg import StreamLeg
from proxyd.websocket import HandshakeFailed, WebSocketLeg
from resolverd.logs import token_ref

log = logging.getLogger(__name__)

T = TypeVar("T")

PEEK_RETRY = 0.01  # the first bytes came in pieces: look again after this long
SPICE_LINK_WAIT = 0.5  # for a websocket with an unknown token: how long its first bytes may take to say SPICE
SPENT = "this one-time token was already used"


@dataclass
class Shared:
    """What every connection of a worker uses."""

    public_context: Optional[ssl.SSLContext]
    allowed_origins: "tuple[str, ...]"
    handshake_timeout: float
    resolver_timeout: float
    outbound: Outbound
    resolver: ResolverClient
    failed_attempts: FailedAttempts
    metrics: WorkerMetrics
    sessions: Set[Session]
    ticket_key: TicketKey
    directory: SessionDirectory


class _FirstBytes(asyncio.Protocol):
    """Holds the first application bytes after TLS until they name the front."""

    def __init__(self, allowed: Set[Front]) -> None:
        self._sniffer = FrontSniffer(allowed)
        self.detected: "asyncio.Future[FrontDetected]" = asyncio.get_running_loop().create_future()
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            found = self._sniffer.receive_data(data)
        except UnknownFront as exc:
            self.transport.pause_reading()
            self.detected.set_exception(exc)
            return
        if found is not None:
            self.transport.pause_reading()  # the next protocol takes over from here
            self.detected.set_result(found)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.detected.done():
            self.detected.set_exception(ConnectionError("closed before the first bytes"))


class Connection:
    def __init__(self, shared: Shared, sock: socket.socket, peer: "tuple[str, int]") -> None:
        self.shared = shared
        self.sock = sock
        self.peer_host = peer[0]
        self.peer = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        self.transport: Optional[asyncio.BaseTransport] = None
        self.client: Optional[WebSocketLeg] = None
        self.timed_out = False
        self.started = time.monotonic()
        self.awaiting = "the first bytes"

    async def run(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        timer = asyncio.get_running_loop().call_later(self.shared.handshake_timeout, self._time_out, task)
        try:
            await self._open()
        except Refusal as refusal:
            self._refuse(refusal)
        except asyncio.CancelledError:
            if not self.timed_out:
                self._refuse(Refusal(Failure.DRAINING, CloseCode.GOING_AWAY, "the proxy is shutting down"))
                raise
            self._refuse(Refusal(Failure.TIMEOUT, CloseCode.TRY_AGAIN_LATER, "timed out opening the console",
                                 f"handshake not done after {self.shared.handshake_timeout:g} s, "
                                 f"waiting for {self.awaiting}"))
        except Exception:
            log.exception("connection from %s failed", self.peer)
            self._abort()
        finally:
            timer.cancel()

    def _time_out(self, task: "asyncio.Task[None]") -> None:
        self.timed_out = True
        task.cancel()

    @contextmanager
    def _waiting_for(self, what: str) -> Iterator[None]:
        """Names what the connection waits for in the block, for the time-out's log line.

        Left as it is when the block raises: a time-out cancels the task inside it.
        """
        before, self.awaiting = self.awaiting, what
        yield
        self.awaiting = before

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        front = await self._peek_front()
        if front is Front.HTTP_CONNECT:
            with self._waiting_for("the CONNECT request"):
                token = await self._connect_request()
            await self._spice(await self._tls_front({Front.SPICE_LINK}), token)
            return
        if front is Front.TLS:
            leg = await self._tls_front({Front.HTTP_GET, Front.SPICE_LINK})
        else:
            leg = WebSocketLeg()
            self.transport, _ = await loop.connect_accepted_socket(lambda: leg, self.sock)
        if isinstance(leg, StreamLeg):
            await self._spice(leg, None)
            return
        self.client = leg
        await self._websocket(leg)

    async def _peek_front(self) -> Front:
        allowed = {Front.TLS, Front.HTTP_CONNECT} if self.shared.public_context is not None else {Front.HTTP_GET}
        sniffer = FrontSniffer(allowed)
        seen = 0
        while True:
            await self._readable()
            try:
                head = self.sock.recv(MAX_PEEK, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise Refusal(Failure.CLIENT_GONE, 0, "connection lost", str(exc)) from None
            if not head:
                raise Refusal(Failure.CLIENT_GONE, 0, "closed before sending anything")
            if len(head) > seen:
                try:
                    found = sniffer.receive_data(head[seen:])
                except UnknownFront:
                    self._plain_error(head)
                    raise Refusal(Failure.NOT_WEBSOCKET, 0, "not TLS" if Front.TLS in allowed else "not HTTP",
                                  f"first bytes {head!r}") from None
                seen = len(head)
                if found is not None:
                    return found.front
            await asyncio.sleep(PEEK_RETRY)

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: "asyncio.Future[None]" = loop.create_future()
        fd = self.sock.fileno()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    def _plain_error(self, head: bytes) -> None:
        """A clear-text HTTP client on the TLS port gets told so; anything else is just closed."""
        if self.shared.public_context is None or not head[:1].isalpha():
            return
        body = b"This port speaks TLS: use https:// or wss:// URLs.\n"
        try:
            self.sock.send(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass

    async def _connect_request(self) -> str:
        """Read the CONNECT request, answer 200 (or an HTTP error); the token it carries."""
        loop = asyncio.get_running_loop()
        parser = ConnectRequestParser()
        request = None
        while request is None:
            try:
                data = await loop.sock_recv(self.sock, MAX_REQUEST_SIZE)
            except OSError as exc:
                raise Refusal(Failure.CLIENT_GONE, 0, "connection lost", str(exc)) from None
            if not data:
                raise Refusal(Failure.CLIENT_GONE, 0, "closed during the CONNECT request")
            try:
                request = parser.receive_data(data)
            except ProtocolError as exc:
                await self._send_plain(refusal_for(exc))
                raise Refusal(Failure.CLIENT_PROTOCOL, 0, "bad CONNECT request", f"{exc} ({exc.reason})") from None
        if request.remaining:
            await self._send_plain(refusal_reply(400))
            raise Refusal(Failure.CLIENT_PROTOCOL, 0, "bad CONNECT request", "data before the 200 reply")
        try:
            self._check_brake()
        except Refusal:
            await self._send_plain(refusal_reply(403))
            raise
        await self._send_plain(established_reply())
        return request.token

    async def _send_plain(self, data: bytes) -> None:
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except OSError as exc:
            raise Refusal(Failure.CLIENT_GONE, 0, "connection lost", str(exc)) from None

    async def _tls_front(self, allowed: Set[Front]) -> Union[WebSocketLeg, StreamLeg]:
        loop = asyncio.get_running_loop()
        remaining = self.shared.handshake_timeout - (time.monotonic() - self.started)
        try:
            first = _FirstBytes(allowed)  # uvloop hands back its TLS protocol, not this one
            with self._waiting_for("the TLS handshake"):
                transport, _ = await loop.connect_accepted_socket(
                    lambda: first, self.sock, ssl=self.shared.public_context,
                    ssl_handshake_timeout=max(remaining, 0.1))
        except (ssl.SSLError, OSError, asyncio.TimeoutError) as exc:
            raise Refusal(Failure.TLS, 0, "TLS handshake failed", f"TLS handshake failed: {exc}") from None
        self.transport = transport
        try:
            with self._waiting_for("the first bytes inside TLS"):
                detected = await first.detected
        except UnknownFront as exc:
            body = b"Expected a websocket upgrade (GET /websockify) or a SPICE link.\n"
            transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            raise Refusal(Failure.NOT_WEBSOCKET, 0, "not a websocket upgrade", str(exc)) from None
        except ConnectionError as exc:
            raise Refusal(Failure.CLIENT_GONE, 0, "tenant left", str(exc)) from None
        leg: Union[WebSocketLeg, StreamLeg] = StreamLeg() if detected.front is Front.SPICE_LINK \
            else WebSocketLeg(detected.data)
        transport.set_protocol(leg)
        leg.connection_made(transport)
        if isinstance(leg, StreamLeg):
            leg.data_received(detected.data)
        transport.resume_reading()
        return leg

    async def _spice(self, leg: Union[StreamLeg, WebSocketLeg], token: Optional[str],
                     resolved: Optional[Console] = None) -> None:
        """Link a SPICE channel; ``resolved``: the console of ``token``, already looked up."""
        shared = self.shared

        async def resolve(presented: str) -> Console:
            return resolved if resolved is not None else await self._resolve(presented)

        access = Access(check_brake=self._check_brake, failed=lambda: shared.failed_attempts.failed(self.peer_host),
                        resolve=resolve, unspent=self._unspent, claim=self._claim)
        try:
            with self._waiting_for("the SPICE link, from the tenant or the console"):
                channel = await spice_link(leg, shared.ticket_key, shared.outbound, shared.directory, access, token)
        except Refusal as refusal:
            if isinstance(leg, WebSocketLeg) and not refusal.code:  # the SPICE error went first, in a message
                refusal.code = CloseCode.POLICY_VIOLATION
            raise
        directory, main = shared.directory, channel.main

        def ended(session: Session) -> None:
            shared.sessions.discard(session)
            if main is not None:
                directory.end(channel.session)
            else:
                directory.leave(channel.session, session)

        session = Session(leg, channel.console_leg, channel.console, self.peer, shared.metrics, ended,
                          secondary=main is None)
        shared.sessions.add(session)
        if main is None:
            directory.join(channel.session, session)
        session.start(token_ref(channel.token), f"spice_channel={channel.name} spice_session={channel.session:08x}")
        if main is not None:
            main.on_broken = lambda reason: session.end(CloseCode.INTERNAL_ERROR, reason)
            channel.console_leg.deliver_to(main.feed)

    async def _websocket(self, leg: WebSocketLeg) -> None:
        try:
            with self._waiting_for("the upgrade request"):
                request = await leg.request()
        except HandshakeFailed as exc:
            raise Refusal(Failure.NOT_WEBSOCKET, 0, "not an HTTP request", str(exc)) from None
        if request.protocol != "HTTP/1.1":
            leg.respond(leg.reject(400, "Websocket upgrades need HTTP/1.1.\n"))
            raise Refusal(Failure.NOT_WEBSOCKET, 0, "not HTTP/1.1", f"protocol {request.protocol}")
        if path_of(request.path) != WEBSOCKET_PATH:
            leg.respond(leg.reject(404, f"Not found: consoles are at {WEBSOCKET_PATH}?token=...\n"))
            raise Refusal(Failure.BAD_PATH, 0, "unknown path")
        response = leg.accept(request)
        if response.status_code != 101:
            leg.respond(response)
            raise Refusal(Failure.NOT_WEBSOCKET, 0, "not a websocket upgrade",
                          f"answered HTTP {response.status_code}: {leg.ws.handshake_exc}")
        hosts = request.headers.get_all("Host")
        if not origin_allowed(request.headers.get("Origin"), hosts[0] if len(hosts) == 1 else None,
                              self.shared.allowed_origins):
            leg.respond(leg.reject(403, "This origin may not open consoles here.\n"))
            raise Refusal(Failure.ORIGIN, 0, "origin not allowed", f"origin {request.headers.get('Origin')!r}")
        leg.respond(response)
        try:
            token = token_of(request.path, request.headers.get_all("Cookie"))
        except TokenError as exc:
            raise Refusal(Failure.NO_TOKEN, CloseCode.POLICY_VIOLATION, str(exc)) from None
        self._check_brake()
        try:
            console = await self._resolve(token, count_failure=False)
        except Refusal as refusal:
            if refusal.failure is Failure.UNKNOWN_TOKEN:
                with self._waiting_for("the tenant's first message"):
                    linked = await starts_with_link(leg, SPICE_LINK_WAIT)
                if linked:
                    await self._spice(leg, token)
                    return
                self.shared.failed_attempts.failed(self.peer_host)
            raise
        if console.type == "spice":
            await self._spice(leg, token, console)
            return
        self._tenant_still_open(leg)
        with self._waiting_for(f"the console {console.address}" + (" and the RFB handshake" if console.type == "vnc"
                                                                    else "")):
            console_leg = await open_console(console, self.shared.outbound, leg)
        try:
            self._tenant_still_open(leg)
            await self._claim(token, console)
        except BaseException:
            console_leg.close()
            raise
        session = Session(leg, console_leg, console, self.peer, self.shared.metrics, self.shared.sessions.discard)
        self.shared.sessions.add(session)
        session.start(token_ref(token))

    @staticmethod
    def _tenant_still_open(leg: WebSocketLeg) -> None:
        """A tenant that closed or broke the websocket meanwhile gets no console connection (nor holds one)."""
        if leg.ws.state is not OPEN:
            sent, received = leg.ws.close_sent, leg.ws.close_rcvd
            raise Refusal(Failure.CLIENT_GONE, 0, "tenant left",
                          f"websocket closing before the session opened: sent {sent}, received {received}")

    def _check_brake(self) -> None:
        attempts = self.shared.failed_attempts
        wait = attempts.barred_for(self.peer_host)
        if wait > 0:
            attempts.failed(self.peer_host)
            raise Refusal(Failure.RATE_LIMITED, CloseCode.POLICY_VIOLATION,
                          f"too many failed attempts; try again in {math.ceil(wait)} s")

    async def _resolve(self, token: str, count_failure: bool = True) -> Console:
        started = time.monotonic()
        try:
            with self._waiting_for("the resolver's look-up"):
                return await self._ask_resolver(self.shared.resolver.lookup, token)
        except TokenRefused:
            if count_failure:
                self.shared.failed_attempts.failed(self.peer_host)
            raise _unknown_token(f"resolver does not know token {token_ref(token)}") from None
        finally:
            self.shared.metrics.resolver_latency(time.monotonic() - started)

    async def _unspent(self, token: str, console: Console) -> None:
        """Refuses a one-time token the look-up left unclaimed if it no longer resolves (spent meanwhile)."""
        if not console.claim:
            return
        try:
            await self._resolve(token, count_failure=False)
        except Refusal as refusal:
            if refusal.failure is not Failure.UNKNOWN_TOKEN:
                raise
            raise _token_spent(f"one-time token {token_ref(token)} spent since its look-up") from None

    async def _claim(self, token: str, console: Console) -> None:
        """Spend a one-time token the look-up left unclaimed, now that the console accepted the proxy."""
        if not console.claim:
            return
        try:
            with self._waiting_for("the resolver's claim of the one-time token"):
                await self._ask_resolver(self.shared.resolver.claim, token)
        except TokenSpent:
            raise _token_spent(f"claim of one-time token {token_ref(token)} lost: another session spent it") from None
        except TokenRefused:
            raise _unknown_token(f"resolver no longer knows token {token_ref(token)} at its claim") from None
        log.info("claimed one-time token %s client=%s domain=%s", token_ref(token), self.peer, console.domain)

    async def _ask_resolver(self, call: Callable[[str], Awaitable[T]], token: str) -> T:
        """``call(token)`` within the resolver time-out; TokenRefused passes through."""
        try:
            return await asyncio.wait_for(call(token), self.shared.resolver_timeout)
        except (ResolverUnavailable, asyncio.TimeoutError) as exc:
            raise Refusal(Failure.RESOLVER_UNAVAILABLE, CloseCode.TRY_AGAIN_LATER,
                          "the console directory is unavailable; try again later",
                          f"resolver: {str(exc) or 'no answer in time'}") from None

    def _refuse(self, refusal: Refusal) -> None:
        self.shared.metrics.failed(refusal.failure)
        log.info("refused client=%s reason=%s detail=%r", self.peer, refusal.failure.value, refusal.detail)
        client = self.client
        if client is not None and client.ws.state is OPEN and refusal.code:
            client.close_with(refusal.code, refusal.reason)
        elif client is not None and client.ws.state is CONNECTING and not client.ws.eof_sent and self.timed_out:
            client.respond(client.reject(408, "Timed out waiting for the upgrade request.\n"))
        elif refusal.failure is Failure.TLS:
            self._abort()
        elif client is not None and client.ws.state in (CLOSING, CLOSED):
            pass  # its closing handshake (or the linger after failing it) is under way and ends the connection
        elif self.transport is not None:
            self.transport.close()  # after what was written, e.g. an HTTP error
        else:
            self.sock.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        else:
            self.sock.close()


def _token_spent(detail: str) -> Refusal:
    return Refusal(Failure.TOKEN_SPENT, CloseCode.POLICY_VIOLATION, SPENT, detail)


def _unknown_token(detail: str) -> Refusal:
    return Refusal(Failure.UNKNOWN_TOKEN, CloseCode.POLICY_VIOLATION, "unknown or expired token", detail)


def handler(shared: Shared) -> Callable[[socket.socket, "tuple[str, int]"], "asyncio.Task[None]"]:
    """What the accept loop calls for each new connection."""
    def start(sock: socket.socket, peer: "tuple[str, int]") -> "asyncio.Task[None]":
        return asyncio.get_running_loop().create_task(Connection(shared, sock, peer).run())
    return start
