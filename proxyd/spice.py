"""Drives the SPICE link MITM (proxyd.protocol.spice_link) for one channel connection of a tenant.

The tenant sees a SPICE server with the proxy's own RSA key; QEMU sees a
SPICE client that presents the console's real password (from the resolver;
tenants never see it).  Every channel type is linked the same way:

- **main, token in the ticket** (remote-viewer with password=TOKEN): the
  client must be answered before the token, hence the console, is known,
  so the reply claims nothing of QEMU's (``reply_first_caps``); the ticket
  is the token, resolved like any other; then QEMU is linked and its
  mini-header choice must match what the client was told.
- **main, token known before the link** (the CONNECT front's credentials
  or host, the websocket's URL or cookie): resolved first, QEMU linked
  first, and the client answered with QEMU's own caps.
- **any other channel**: its connection id names a live session in the
  master's table (proxyd.spice_sessions), which gives the console; QEMU is
  linked first with QEMU's own session id and the client gets QEMU's caps;
  the token must be the one that opened the session.  Nothing goes to the
  resolver, so one-time tokens keep working for the session's channels.

The ticket is the token, unless the front carried the token: then the
ticket is not checked (spice-html5 sends whatever password its page has).

QEMU gets the real password only after the tenant's ticket passed, and the
tenant hears OK only after QEMU did.  On main, a one-time token the look-up
left unclaimed is claimed between QEMU's OK and the tenant's: a console that
refuses or is down leaves the token unspent, and a lost claim (another
session spent it first) is the tenant's PERMISSION_DENIED.  Because QEMU
drops its client whenever it accepts a new main link, such a token is
looked up again just before QEMU gets the password: a session that spent it
meanwhile (say while this tenant's websocket sat open) is not cut off by a
main link that would lose the claim anyway.  Errors reach the client as SPICE
expects them (the whole error reply before the link reply, a bare u32
after it); QEMU's own error codes are passed on.

On main, QEMU's MAIN_INIT carries QEMU's session id: the proxy registers
the session and hands the client an id of its own instead (spice-server's
ids repeat across QEMU processes).  Migration: the proxy never offers QEMU
the migration caps, so QEMU sends no MIGRATE_BEGIN(_SEAMLESS); the
MIGRATE_SWITCH_HOST it still sends after a live migration would take the
client around the proxy, so it is dropped (as are 101/116, should they
come): the session ends with the source QEMU and the tenant reconnects
through the proxy.
"""

import asyncio
import hmac
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, List, Optional, TypeVar

from proxyd.backends import Outbound, connect_console
from proxyd.metrics import Failure
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.spice_link import (
    BackendLinked,
    BadTicket,
    ChannelType,
    HeaderModeMismatch,
    LinkError,
    LinkMess,
    LinkRefused,
    LinkReply,
    LinkReplyReceived,
    LinkRequested,
    SpiceBackendLink,
    SpiceClientLink,
    TicketKey,
    TicketReceived,
    mirror_reply_caps,
    relay_header_mode,
    reply_first_caps,
    to_backend,
)
from proxyd.protocol.spice_link.backend_link import Event as BackendEvent
from proxyd.protocol.spice_link.constants import MAGIC
from proxyd.protocol.spice_link.client_link import Event as ClientEvent
from proxyd.protocol.spice_link.messages import Caps
from proxyd.protocol.spice_main import MainChannelFilter, MainInit, MigrateMessage, PassThrough, with_session_id
from proxyd.refusal import Refusal
from proxyd.relay import ConsoleLeg, Leg
from proxyd.resolver import Console
from proxyd.spice_directory import DirectoryUnavailable, Joinable, SessionDirectory

log = logging.getLogger(__name__)

INBOX_LIMIT = 256 * 1024

T = TypeVar("T")

# Why the proxy turned a link down -> what the SPICE client is told.
LINK_ERRORS = {
    Failure.UNKNOWN_TOKEN: LinkError.PERMISSION_DENIED,
    Failure.TOKEN_SPENT: LinkError.PERMISSION_DENIED,
    Failure.RATE_LIMITED: LinkError.PERMISSION_DENIED,
    Failure.POLICY: LinkError.PERMISSION_DENIED,
    Failure.UNKNOWN_SESSION: LinkError.BAD_CONNECTION_ID,
    Failure.CLIENT_PROTOCOL: LinkError.INVALID_DATA,
}


class LinkFailed(Refusal):
    """A refusal with the SPICE link error the client gets."""

    def __init__(self, link_error: LinkError, failure: Failure, reason: str, detail: Optional[str] = None) -> None:
        super().__init__(failure, 0, reason, detail)
        self.link_error = link_error


@dataclass(frozen=True)
class Access:
    """What the connection lends the link: the brake on failed attempts and the resolver."""

    check_brake: Callable[[], None]
    """Raises a Refusal while the client's address is barred."""
    failed: Callable[[], None]
    """Counts a failed attempt against the client's address."""
    resolve: Callable[[str], Awaitable[Console]]
    """The console of a token; raises a Refusal (and counts the failure) for an unknown one."""
    unspent: Callable[[str, Console], Awaitable[None]]
    """Raises a Refusal if a one-time token the look-up left unclaimed was spent since."""
    claim: Callable[[str, Console], Awaitable[None]]
    """Spends a one-time token the look-up left unclaimed; raises a Refusal when the claim is lost."""


@dataclass
class Channel:
    """A linked channel, both legs holding what follows the link."""

    console: Console
    console_leg: ConsoleLeg
    token: str
    session: int
    """The session id the client knows (the proxy's, not QEMU's)."""
    channel_type: int
    channel_id: int
    main: Optional["MainRelay"]
    """For the main channel: what QEMU's bytes must go through on their way to the client."""

    @property
    def name(self) -> str:
        try:
            kind = ChannelType(self.channel_type).name.lower()
        except ValueError:
            kind = f"type{self.channel_type}"
        return f"{kind}:{self.channel_id}"


class MainRelay:
    """QEMU -> client bytes of a main channel: MAIN_INIT gets the proxy's session id, migration messages go."""

    def __init__(self, to_client: Callable[[bytes], None], mini_header: bool, where: str) -> None:
        self._filter = MainChannelFilter(mini_header=mini_header)
        self._mini_header = mini_header
        self._to_client = to_client
        self._where = where
        self._held: List[bytes] = []
        self.init: Optional[MainInit] = None
        self.session: Optional[int] = None
        self.on_broken: Callable[[str], None] = lambda reason: None

    def feed(self, data: bytes) -> None:
        try:
            events = self._filter.receive_data(data)
        except ProtocolError as exc:
            log.warning("main channel of %s: %s (%s)", self._where, exc, exc.reason)
            self.on_broken(f"unreadable main channel message: {exc.reason}")
            return
        for event in events:
            if isinstance(event, PassThrough):
                self._out(event.data)
            elif isinstance(event, MainInit):
                if self.init is None:
                    self.init = event
                else:
                    self._out(self._rewritten(event))
            elif isinstance(event, MigrateMessage):
                log.info("dropped migration message %d from %s: the client stays with the proxy", event.msg_type,
                         self._where)

    def start(self, session: int) -> None:
        """The session id is known: MAIN_INIT and what followed it go to the client."""
        assert self.init is not None
        self.session = session
        held, self._held = self._held, []
        self._to_client(self._rewritten(self.init) + b"".join(held))

    def _rewritten(self, init: MainInit) -> bytes:
        assert self.session is not None
        return with_session_id(init, self.session, mini_header=self._mini_header)

    def _out(self, data: bytes) -> None:
        if self.init is not None and self.session is None:
            self._held.append(data)
        else:
            self._to_client(data)


class _Inbox:
    """What one leg received during the link, awaited chunk by chunk."""

    def __init__(self, leg: Leg, gone: Callable[[], Refusal]) -> None:
        self._leg = leg
        self._gone = gone
        self._data = bytearray()
        self._lost = False
        self._paused = False
        self._waiter: "Optional[asyncio.Future[None]]" = None
        leg.on_lost(self._on_lost)
        leg.deliver_to(self._put)

    async def get(self) -> bytes:
        while not self._data:
            if self._lost:
                raise self._gone()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self.take()

    def take(self) -> bytes:
        data = bytes(self._data)
        self._data.clear()
        if self._paused:
            self._paused = False
            self._leg.resume_reading()
        return data

    def release(self, prefix: bytes = b"") -> None:
        """The link is over: the leg holds ``prefix`` and what came since, for the relay."""
        self._leg.hold(prefix + self.take())

    def _put(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > INBOX_LIMIT and not self._paused:
            self._paused = True
            self._leg.pause_reading()
        self._wake()

    def _on_lost(self, exc: Optional[Exception]) -> None:
        self._lost = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Link:
    def __init__(self, tenant: Leg, key: TicketKey, outbound: Outbound, directory: SessionDirectory, access: Access,
                 token: Optional[str]) -> None:
        self.tenant = tenant
        self.outbound = outbound
        self.directory = directory
        self.access = access
        self.token = token
        self.client = SpiceClientLink(key)
        self.tenant_in = _Inbox(tenant, lambda: Refusal(Failure.CLIENT_GONE, 0, "tenant left",
                                                        "tenant left during the SPICE link"))
        self.answered = False  # the client has its final answer (OK, or an error the machine queued)
        self.console: Optional[Console] = None
        self.console_leg: Optional[ConsoleLeg] = None
        self.console_in: Optional[_Inbox] = None
        self.backend: Optional[SpiceBackendLink] = None

    async def run(self) -> Channel:
        try:
            message = await self._link_requested()
            self.access.check_brake()
            if message.connection_id == 0 and message.channel_type == ChannelType.MAIN:
                return await self._main(message)
            return await self._secondary(message)
        except Refusal as refusal:
            self._tell_client(refusal)
            self._close_console()
            raise
        except asyncio.CancelledError:  # the handshake timed out, or the worker is draining
            self._tell_client(Refusal(Failure.TIMEOUT, 0, "the link took too long"))
            self._close_console()
            raise
        except BaseException:
            self._close_console()
            raise

    # -- the two kinds of channel

    async def _main(self, message: LinkMess) -> Channel:
        announced: Optional[Caps] = None
        if self.token is None:
            common, channel = reply_first_caps(message)
            announced = common
            token = await self._ticket(self._reply(common, channel))
            console = await self._resolve(token)
        else:
            token = self.token
            console = await self._after_ticket(message, self._resolve(token))
        backend_message = to_backend(message, 0)
        reply = await self._link_backend(console, backend_message)
        if announced is None:
            common, channel = mirror_reply_caps(message, reply)
            announced = common
            await self._check_ticket(await self._ticket(self._reply(common, channel)), token)
        mini_header = self._header_mode(message, backend_message, announced, reply)
        await self.access.unspent(token, console)  # QEMU drops its client for any main link it accepts
        linked = await self._backend_linked()
        await self.access.claim(token, console)
        remaining = self._complete()
        relay = MainRelay(self.tenant.send, mini_header, console.address)
        relay.feed(linked.remaining)
        assert self.console_in is not None and self.console_leg is not None
        while relay.init is None:
            relay.feed(await self.console_in.get())
        try:
            session = await self.directory.register(console, relay.init.session_id, token)
        except DirectoryUnavailable as exc:
            raise Refusal(Failure.SESSION_TABLE, 0, "the session table is unavailable", str(exc)) from None
        relay.feed(self.console_in.take())
        self.console_leg.hold()
        relay.start(session)
        self.tenant_in.release(remaining)
        return Channel(console, self.console_leg, token, session, message.channel_type, message.channel_id, relay)

    async def _secondary(self, message: LinkMess) -> Channel:
        joinable = await self._joinable(message.connection_id)
        if self.token is not None:
            await self._after_ticket(message, self._same_token(self.token, joinable))
        backend_message = to_backend(message, joinable.qemu_id)
        reply = await self._link_backend(joinable.console, backend_message)
        common, channel = mirror_reply_caps(message, reply)
        self._header_mode(message, backend_message, common, reply)
        ticket = await self._ticket(self._reply(common, channel))
        await self._check_ticket(ticket, joinable)
        linked = await self._backend_linked()
        remaining = self._complete()
        assert self.console_in is not None and self.console_leg is not None
        self.console_in.release(linked.remaining)  # what QEMU sent right after its link result (a port's PORT_INIT)
        self.tenant_in.release(remaining)
        return Channel(joinable.console, self.console_leg, self.token or ticket, message.connection_id,
                       message.channel_type, message.channel_id, None)

    # -- authorization

    async def _resolve(self, token: str) -> Console:
        console = await self.access.resolve(token)
        if console.type != "spice":
            raise Refusal(Failure.POLICY, 0, "not a SPICE console", f"token is for a {console.type} console")
        return console

    async def _joinable(self, session: int) -> Joinable:
        try:
            joinable = await self.directory.lookup(session)
        except DirectoryUnavailable as exc:
            raise Refusal(Failure.SESSION_TABLE, 0, "the session table is unavailable", str(exc)) from None
        if joinable is None:
            self.access.failed()
            raise Refusal(Failure.UNKNOWN_SESSION, 0, "no such SPICE session",
                          f"connection id {session:08x} names no live session")
        return joinable

    async def _after_ticket(self, message: LinkMess, check: Awaitable[T]) -> T:
        """``check``'s result; if it denies access, the client hears so after its ticket.

        spice-gtk reports a PERMISSION_DENIED link reply as a link error,
        and only the result after the ticket as an authentication error.
        """
        try:
            return await check
        except Refusal as refusal:
            if LINK_ERRORS.get(refusal.failure) is LinkError.PERMISSION_DENIED:
                await self._ticket(self._reply(*reply_first_caps(message)))
            raise

    async def _check_ticket(self, ticket: str, expected: "str | Joinable") -> None:
        """The ticket must be the token, unless the front carried the token (checked already)."""
        if self.token is None:
            await self._same_token(ticket, expected)

    async def _same_token(self, ticket: str, expected: "str | Joinable") -> None:
        same = expected.opened_by(ticket) if isinstance(expected, Joinable) else _equal(ticket, expected)
        if not same:
            self.access.failed()
            raise Refusal(Failure.UNKNOWN_TOKEN, 0, "wrong ticket", "ticket is not the token of the session")

    # -- the tenant's leg

    async def _link_requested(self) -> LinkMess:
        while True:
            for event in self._from_client(await self.tenant_in.get()):
                if isinstance(event, LinkRequested):
                    return event.message

    def _reply(self, common: Caps, channel: Caps) -> List[ClientEvent]:
        return self._client_step(lambda: self.client.send_reply(common, channel))

    async def _ticket(self, events: List[ClientEvent]) -> str:
        while True:
            for event in events:
                if isinstance(event, TicketReceived):
                    return event.password
            events = self._from_client(await self.tenant_in.get())

    def _from_client(self, data: bytes) -> List[ClientEvent]:
        return self._client_step(lambda: self.client.receive_data(data))

    def _client_step(self, step: Callable[[], List[ClientEvent]]) -> List[ClientEvent]:
        try:
            events = step()
        except ProtocolError as exc:
            self.answered = True
            self._flush_client()
            if isinstance(exc, BadTicket):
                self.access.failed()
            raise Refusal(Failure.CLIENT_PROTOCOL, 0, "bad SPICE link", f"SPICE link: {exc} ({exc.reason})") from None
        self._flush_client()
        return events

    def _complete(self) -> bytes:
        remaining = self.client.complete()
        self.answered = True
        self._flush_client()
        return remaining

    def _flush_client(self) -> None:
        out = self.client.data_to_send()
        if out:
            self.tenant.send(out)

    def _tell_client(self, refusal: Refusal) -> None:
        if self.answered:
            return
        self.answered = True
        if isinstance(refusal, LinkFailed):
            error = refusal.link_error
        else:
            error = LINK_ERRORS.get(refusal.failure, LinkError.ERROR)
        self.client.refuse(error)
        self._flush_client()

    # -- QEMU's leg

    async def _link_backend(self, console: Console, message: LinkMess) -> LinkReply:
        try:
            self.backend = SpiceBackendLink(message, console.password or "")
        except ValueError as exc:
            raise Refusal(Failure.RESOLVER_ANSWER, 0, "unusable console password", str(exc)) from None
        self.console = console
        self.console_leg = await connect_console(console, self.outbound)
        self.console_in = _Inbox(self.console_leg, lambda: Refusal(
            Failure.BACKEND_PROTOCOL, 0, "the console closed the connection",
            f"SPICE server {console.address} closed during the link"))
        self.console_leg.send(self.backend.data_to_send())
        while True:
            for event in self._from_backend(await self.console_in.get()):
                if isinstance(event, LinkReplyReceived):
                    return event.reply

    async def _backend_linked(self) -> BackendLinked:
        assert self.backend is not None and self.console_leg is not None and self.console_in is not None
        self.console_leg.send(self.backend.data_to_send())  # the auth mechanism and the real password
        while True:
            for event in self._from_backend(await self.console_in.get()):
                if isinstance(event, BackendLinked):
                    return event

    def _from_backend(self, data: bytes) -> List[BackendEvent]:
        assert self.backend is not None and self.console is not None
        try:
            return self.backend.receive_data(data)
        except LinkRefused as exc:
            raise LinkFailed(exc.link_error, Failure.BACKEND_PROTOCOL, "the console refused the link",
                             f"SPICE server {self.console.address}: {exc}") from None
        except ProtocolError as exc:
            raise Refusal(Failure.BACKEND_PROTOCOL, 0, "SPICE link with the console failed",
                          f"SPICE server {self.console.address}: {exc} ({exc.reason})") from None

    def _header_mode(self, client: LinkMess, backend: LinkMess, announced: Caps, reply: LinkReply) -> bool:
        try:
            return relay_header_mode(client, backend, announced, reply)
        except HeaderModeMismatch as exc:
            raise Refusal(Failure.BACKEND_PROTOCOL, 0, "SPICE link with the console failed", str(exc)) from None

    def _close_console(self) -> None:
        if self.console_leg is not None:
            self.console_leg.abort()


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


async def starts_with_link(tenant: Leg, timeout: float) -> bool:
    """Whether the tenant's first bytes, within ``timeout``, start a SPICE link; the tenant's leg keeps them."""
    inbox = _Inbox(tenant, lambda: Refusal(Failure.CLIENT_GONE, 0, "tenant left"))
    seen = b""
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while len(seen) < len(MAGIC) and MAGIC.startswith(seen):
            seen += await asyncio.wait_for(inbox.get(), deadline - asyncio.get_running_loop().time())
    except (asyncio.TimeoutError, Refusal):
        pass
    inbox.release(seen)
    return seen.startswith(MAGIC)


async def spice_link(tenant: Leg, key: TicketKey, outbound: Outbound, directory: SessionDirectory, access: Access,
                     token: Optional[str] = None) -> Channel:
    """Link one channel on both legs; ``token`` when the front carried one (else it is the ticket)."""
    return await _Link(tenant, key, outbound, directory, access, token).run()
