"""The console bridge: pty serial consoles for a proxy that holds no libvirt credentials.

resolverd opens the console with virDomainOpenConsole on its own libvirt
connection and relays it over a TLS listener (``--console-listen``) that
admits only client certificates of the API's CA.  The token API answers a pty
console with ``{"type": "serial", "address": <bridge>, "insecure": false,
"tlsTunnel": true, "bridgeTicket": <ticket>}``; the ticket is good for one
session within 30 seconds.

Wire format, after the TLS handshake (all lines ASCII, ending in LF):

    proxy  -> bridge   ``LCPBRIDGE1 <ticket>\\n``   (at most 256 bytes, within 10 s)
    bridge -> proxy    ``OK\\n``                    then raw console bytes both ways
                       ``ERR <reason>\\n``          and the bridge closes the connection

Either side closing ends the session; so does the guest's console going away
(domain stopped) or another client taking the console over.  The relay runs on
libvirt's event loop: the libvirt stream is non-blocking with callbacks and the
TLS socket is a watched handle, with bounded buffers in both directions (a
side is not read while the other side's buffer is full).
"""

import logging
import socket
import ssl
import threading
from typing import Callable, Optional, Set, Tuple

import libvirt

from resolverd.settings import Address
from resolverd.targets import join_host_port
from resolverd.tickets import BridgeRoute, TicketBook
from resolverd.tls import SwappableContext

log = logging.getLogger(__name__)

HELLO = b"LCPBRIDGE1 "
MAX_HELLO = 256
HANDSHAKE_TIMEOUT = 10.0
MAX_PENDING_HANDSHAKES = 64
CHUNK = 65536
BUFFER_LIMIT = 256 * 1024

_SOCKET_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)
_STREAM_GONE = libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP

ConnectionFor = Callable[[str], Optional[libvirt.virConnect]]


class HelloError(Exception):
    """The proxy's first line was not a bridge hello; the message is sent back after ``ERR``."""


def parse_hello(line: bytes) -> str:
    """The ticket of a ``LCPBRIDGE1 <ticket>`` line (without its LF)."""
    if not line.startswith(HELLO):
        raise HelloError("expected LCPBRIDGE1 <ticket>")
    ticket = line[len(HELLO):].strip()
    if not ticket or not ticket.isascii() or b" " in ticket:
        raise HelloError("malformed ticket")
    return ticket.decode("ascii")


class ConsoleBridge:
    def __init__(self, listen: Address, context: SwappableContext, tickets: TicketBook,
                 connection_for: ConnectionFor, advertise: Optional[str]) -> None:
        self._listen = listen
        self._context = context
        self._tickets = tickets
        self._connection_for = connection_for
        self._advertise = advertise
        self._sessions: Set["BridgeSession"] = set()
        self._lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._handshake_slots = threading.BoundedSemaphore(MAX_PENDING_HANDSHAKES)
        self._bound_port = 0
        self.address = ""

    def start(self) -> None:
        host, port = self._listen
        self._listener = socket.create_server((host, port), family=_family(host), backlog=64,
                                              dualstack_ipv6=host in ("", "::") and socket.has_dualstack_ipv6())
        self._bound_port = self._listener.getsockname()[1]
        self.advertise(self._advertise)
        threading.Thread(target=self._accept_loop, name="console-bridge", daemon=True).start()
        log.info("console bridge listening on %s, advertised as %s", join_host_port(host, self._bound_port),
                 self.address)

    def advertise(self, address: Optional[str]) -> None:
        """The address the API hands out for the bridge: ``address``, else the listening one (this host's
        FQDN for a wildcard); a reload may change it.  Open sessions are not affected."""
        host = self._listen[0]
        advertised_host = host if host not in ("", "0.0.0.0", "::") else socket.getfqdn()
        self._advertise = address
        self.address = address or join_host_port(advertised_host, self._bound_port)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close("resolverd stopping")
        log.info("console bridge stopped; %d sessions closed", len(sessions))

    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                raw, peer = self._listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            if not self._handshake_slots.acquire(blocking=False):
                log.warning("bridge client %s dropped: %d handshakes already pending", peer[0],
                            MAX_PENDING_HANDSHAKES)
                raw.close()
                continue
            threading.Thread(target=self._open_session, args=(raw, peer), name="console-bridge-open",
                             daemon=True).start()

    def _open_session(self, raw: socket.socket, peer: Tuple[str, int]) -> None:
        try:
            self._handshake(raw, peer)
        finally:
            self._handshake_slots.release()

    def _handshake(self, raw: socket.socket, peer: Tuple[str, int]) -> None:
        raw.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls_sock = self._context.current.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("bridge client %s refused at TLS: %s", peer[0], exc)
            raw.close()
            return
        try:
            line, rest = _read_line(tls_sock)
            route = self._tickets.redeem(parse_hello(line))
            if route is None:
                raise HelloError("unknown or expired ticket")
            stream = self._open_console(route)
        except HelloError as exc:
            log.info("bridge client %s: %s", peer[0], exc)
            _refuse(tls_sock, str(exc))
            return
        except (ssl.SSLError, OSError) as exc:
            log.info("bridge client %s dropped during the hello: %s", peer[0], exc)
            tls_sock.close()
            return
        try:
            tls_sock.sendall(b"OK\n")
            tls_sock.setblocking(False)
        except (ssl.SSLError, OSError) as exc:
            log.info("bridge client %s left before the console opened: %s", peer[0], exc)
            _abort(stream)
            tls_sock.close()
            return
        session = BridgeSession(tls_sock, stream, rest, self._forget)
        with self._lock:
            self._sessions.add(session)
        log.info("bridge session for %s from %s: domain %s device %s", route.uri, peer[0], route.domain_uuid,
                 route.device)
        session.start()

    def _open_console(self, route: BridgeRoute) -> libvirt.virStream:
        connection = self._connection_for(route.uri)
        if connection is None:
            raise HelloError("the hypervisor connection is down")
        try:
            domain = connection.lookupByUUIDString(route.domain_uuid)
            stream = connection.newStream(libvirt.VIR_STREAM_NONBLOCK)
            # The newest holder of a valid token wins: QEMU's serial port has one reader.
            domain.openConsole(route.device, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        except libvirt.libvirtError as exc:
            log.warning("cannot open console %s of domain %s: %s", route.device, route.domain_uuid, exc)
            raise HelloError("cannot open the console") from exc
        return stream

    def _forget(self, session: "BridgeSession") -> None:
        with self._lock:
            self._sessions.discard(session)


class BridgeSession:
    """Relays one TLS connection to one libvirt console stream, driven by libvirt's event loop."""

    def __init__(self, sock: ssl.SSLSocket, stream: libvirt.virStream, pending: bytes,
                 on_close: Callable[["BridgeSession"], None]) -> None:
        self._sock = sock
        self._stream = stream
        self._to_stream = bytearray(pending)
        self._to_sock = bytearray()
        self._on_close = on_close
        self._lock = threading.RLock()
        self._closed = False
        self._watch: Optional[int] = None
        self._kick: Optional[int] = None

    def start(self) -> None:
        with self._lock:
            self._watch = libvirt.virEventAddHandle(self._sock.fileno(), self._socket_events(), self._on_socket, None)
            self._stream.eventAddCallback(self._stream_events(), self._on_stream, None)
            # One pump on the loop thread picks up bytes the TLS layer already decrypted.
            self._kick = libvirt.virEventAddTimeout(0, self._on_kick, None)

    def close(self, reason: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._kick is not None:
                libvirt.virEventRemoveTimeout(self._kick)
            if self._watch is not None:
                libvirt.virEventRemoveHandle(self._watch)
            try:
                self._stream.eventRemoveCallback()
            except libvirt.libvirtError:
                pass
            _abort(self._stream)
            self._sock.close()
        log.info("bridge session closed: %s", reason)
        self._on_close(self)

    def _on_kick(self, _timer: int, _opaque: None) -> None:
        with self._lock:
            if self._kick is not None:
                libvirt.virEventRemoveTimeout(self._kick)
                self._kick = None
            self._pump()

    def _on_socket(self, _watch: int, _fd: int, _events: int, _opaque: None) -> None:
        with self._lock:
            self._pump()

    def _on_stream(self, _stream: libvirt.virStream, events: int, _opaque: None) -> None:
        with self._lock:
            self._pump()
            if events & _STREAM_GONE and not self._closed:
                self._flush_socket_best_effort()
                self.close("the console went away")

    def _pump(self) -> None:
        try:
            while not self._closed and self._move_once():
                pass
        except libvirt.libvirtError as exc:
            self.close(f"console stream error: {exc}")
        except (ssl.SSLError, OSError) as exc:
            self.close(f"proxy connection error: {exc}")
        if not self._closed:
            libvirt.virEventUpdateHandle(self._watch, self._socket_events())
            self._stream.eventUpdateCallback(self._stream_events())

    def _move_once(self) -> bool:
        """One pass over both directions; True when any byte moved."""
        moved = False
        while len(self._to_stream) < BUFFER_LIMIT:
            try:
                data = self._sock.recv(CHUNK)
            except _SOCKET_WOULD_BLOCK:
                break
            if not data:
                self.close("the proxy closed the connection")
                return False
            self._to_stream += data
            moved = True
        while self._to_stream:
            sent = self._stream.send(bytes(self._to_stream[:CHUNK]))
            if sent <= 0:
                break
            del self._to_stream[:sent]
            moved = True
        while len(self._to_sock) < BUFFER_LIMIT:
            received = self._stream.recv(CHUNK)
            if received == -2:
                break
            if not received:
                self._flush_socket_best_effort()
                self.close("the console ended")
                return False
            self._to_sock += received
            moved = True
        moved = self._flush_socket() or moved
        return moved

    def _flush_socket(self) -> bool:
        moved = False
        while self._to_sock:
            try:
                sent = self._sock.send(bytes(self._to_sock[:CHUNK]))
            except _SOCKET_WOULD_BLOCK:
                break
            del self._to_sock[:sent]
            moved = True
        return moved

    def _flush_socket_best_effort(self) -> None:
        try:
            self._flush_socket()
        except (ssl.SSLError, OSError):
            pass

    def _socket_events(self) -> int:
        events = 0
        if len(self._to_stream) < BUFFER_LIMIT:
            events |= libvirt.VIR_EVENT_HANDLE_READABLE
        if self._to_sock:
            events |= libvirt.VIR_EVENT_HANDLE_WRITABLE
        return events

    def _stream_events(self) -> int:
        events = _STREAM_GONE
        if len(self._to_sock) < BUFFER_LIMIT:
            events |= libvirt.VIR_STREAM_EVENT_READABLE
        if self._to_stream:
            events |= libvirt.VIR_STREAM_EVENT_WRITABLE
        return events


def _read_line(sock: ssl.SSLSocket) -> Tuple[bytes, bytes]:
    """The first line (without LF) and whatever came after it in the same reads."""
    received = b""
    while b"\n" not in received:
        if len(received) >= MAX_HELLO:
            raise HelloError("hello line too long")
        chunk = sock.recv(MAX_HELLO)
        if not chunk:
            raise HelloError("connection closed before the hello")
        received += chunk
    line, _, rest = received.partition(b"\n")
    if len(line) >= MAX_HELLO:
        raise HelloError("hello line too long")
    return line, rest


def _refuse(sock: ssl.SSLSocket, reason: str) -> None:
    try:
        sock.sendall(b"ERR " + reason.encode("ascii", "replace") + b"\n")
    except (ssl.SSLError, OSError):
        pass
    sock.close()


def _abort(stream: libvirt.virStream) -> None:
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass


def _family(host: str) -> socket.AddressFamily:
    if ":" in host or (host == "" and socket.has_dualstack_ipv6()):
        return socket.AF_INET6
    return socket.AF_INET
