"""Client of resolverd's token API: ``GET <base>/token/<token>`` over mutual TLS, and the claim of one-time tokens.

The look-up asks resolverd not to claim a one-time token (``?claim=later``;
resolvers of the anchor's shape ignore it): the answer then says so, and the
connection claims the token (``POST <base>/token/<token>/claim``) only once
the console accepted the proxy, so a console that refuses or is down does not
spend the tenant's token.  Exactly one claim of a one-time token wins.

Blocking http.client calls meant for a worker's thread pool: one kept-alive
connection per thread, a connect time-out and a read time-out, so a resolver
that is down or slow ends in ResolverUnavailable within a bounded time.  A new
connection resumes the TLS session of the last one that answered (resolverd
closes connections idle for 75 s, so on a quiet proxy most look-ups start
one): no certificate to verify or sign on either side.
The answer keeps the anchor's shape (type, address, insecure, tlsTunnel,
password) and reads resolverd's extra fields when present.
"""

import argparse
import http.client
import json
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional
from urllib.parse import quote, urlsplit

from resolverd.settings import address

log = logging.getLogger(__name__)

MAX_ANSWER = 64 * 1024
CONSOLE_TYPES = {"vnc": "vnc", "spice": "spice", "serial": "serial", "console": "serial"}


class TokenRefused(Exception):
    """resolverd does not know the token (or it expired, or was used up)."""


class TokenSpent(TokenRefused):
    """The claim of a one-time token was lost: another session spent it first."""


class ResolverUnavailable(Exception):
    """No answer that can be trusted: down, slow, refused our certificate, or answered nonsense."""


@dataclass(frozen=True)
class Console:
    type: str  # "vnc" | "spice" | "serial"
    host: str
    port: int
    insecure: bool
    tls_tunnel: bool
    password: Optional[str] = None
    bridge_ticket: Optional[str] = None  # set for pty consoles, reached through resolverd's bridge
    domain: str = "?"  # name (or UUID) for logs, when the resolver says
    claim: bool = False  # a one-time token the look-up left unclaimed: claim it once the console accepted us

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_answer(document: Any) -> Console:
    """The console of a 200 answer; ValueError names the first field that is wrong."""
    if not isinstance(document, dict):
        raise ValueError("the answer is not a JSON object")
    kind = CONSOLE_TYPES.get(document.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise ValueError(f"unknown console type {document.get('type')!r}")
    text = document.get("address")
    if not isinstance(text, str):
        raise ValueError("no address")
    try:
        host, port = address(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"bad address: {exc}") from None
    if not host or port == 0:
        raise ValueError(f"bad address {text!r}")
    flags = {}
    for field in ("insecure", "tlsTunnel"):
        value = document.get(field, False)
        if not isinstance(value, bool):
            raise ValueError(f"{field} is not a boolean")
        flags[field] = value
    optional: Dict[str, Optional[str]] = {}
    for field in ("password", "bridgeTicket", "domainName", "domainUuid"):
        value = document.get(field)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{field} is not a string")
        optional[field] = value
    for field in ("once", "claimed"):
        if not isinstance(document.get(field, False), bool):
            raise ValueError(f"{field} is not a boolean")
    if flags["insecure"] and flags["tlsTunnel"]:
        raise ValueError("insecure and tlsTunnel contradict each other")
    return Console(type=kind, host=host, port=port, insecure=flags["insecure"], tls_tunnel=flags["tlsTunnel"],
                   password=optional["password"], bridge_ticket=optional["bridgeTicket"],
                   domain=optional["domainName"] or optional["domainUuid"] or "?",
                   claim=document.get("once") is True and document.get("claimed") is False)


class ResolverClient:
    def __init__(self, base_uri: str, context: Optional[ssl.SSLContext], connect_timeout: float,
                 read_timeout: float) -> None:
        parts = urlsplit(base_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URI: {base_uri!r}")
        if (parts.scheme == "https") != (context is not None):
            raise ValueError("an https resolver needs a TLS context, an http one none")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = parts.path.rstrip("/") + "/token/"
        self._context = context
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: "set[http.client.HTTPConnection]" = set()
        self._session: Optional[ssl.SSLSession] = None  # of the last connection that answered

    def lookup(self, token: str) -> Console:
        """Blocking; run it in a thread pool.  A one-time token is left unclaimed (``Console.claim``)."""
        status, body = self._call("GET", self._path + quote(token, safe="") + "?claim=later")
        if status == 404:
            raise TokenRefused()
        if status != 200:
            raise ResolverUnavailable(f"resolver answered HTTP {status}")
        try:
            return parse_answer(json.loads(body))
        except ValueError as exc:
            raise ResolverUnavailable(f"unusable answer: {exc}") from None

    def claim(self, token: str) -> None:
        """Blocking: spend a one-time token; TokenSpent if another session spent it first."""
        status, _ = self._call("POST", self._path + quote(token, safe="") + "/claim")
        if status == 409:
            raise TokenSpent()
        if status == 404:
            raise TokenRefused()
        if status != 200:
            raise ResolverUnavailable(f"resolver answered HTTP {status} to a claim")

    def _call(self, method: str, path: str) -> "tuple[int, bytes]":
        try:
            return self._exchange(method, path)
        except (OSError, http.client.HTTPException) as exc:
            raise ResolverUnavailable(_describe(exc)) from None

    def _exchange(self, method: str, path: str) -> "tuple[int, bytes]":
        connection, reused = self._connection()
        try:
            return self._request(connection, method, path)
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            self._drop(connection)
            if not reused:
                raise
        except BaseException:
            self._drop(connection)
            raise
        # resolverd closed the idle kept-alive connection before reading the request: retry once.
        connection, _ = self._connection()
        try:
            return self._request(connection, method, path)
        except BaseException:
            self._drop(connection)
            raise

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            connection.close()

    def _request(self, connection: http.client.HTTPConnection, method: str, path: str) -> "tuple[int, bytes]":
        connection.request(method, path, headers={"Accept": "application/json"})
        sock = connection.sock  # http.client lets go of it when the answer says Connection: close
        response = connection.getresponse()
        if isinstance(sock, ssl.SSLSocket):
            session = sock.session  # TLS 1.3 tickets come before the answer: read with its head
            if session is not None and session.has_ticket:
                self._session = session
        body = response.read(MAX_ANSWER + 1)
        if len(body) > MAX_ANSWER:
            self._drop(connection)
            raise ResolverUnavailable("answer too large")
        if response.will_close:
            self._drop(connection)
        return response.status, body

    def _connection(self) -> "tuple[http.client.HTTPConnection, bool]":
        connection: Optional[http.client.HTTPConnection] = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None:
            return connection, True
        if self._context is not None:
            connection = _ResumingHTTPSConnection(self._host, self._port, timeout=self._connect_timeout,
                                                  context=self._context, session=self._session)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(self._read_timeout)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.connection = connection
        with self._lock:
            self._connections.add(connection)
        return connection, False

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            self._connections.discard(connection)


class _ResumingHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that offers a previous TLS session (http.client has no way to pass one)."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext,
                 session: Optional[ssl.SSLSession]) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls_context = context
        self._tls_session = session

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP (no proxy tunnel here)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self.host, session=self._tls_session)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"resolver certificate not trusted: {exc.verify_message}"
    if isinstance(exc, socket.timeout):
        return "resolver timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with the resolver failed: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}"
