"""Client of resolverd's token API: ``GET <base>/token/<token>`` over mutual TLS, and the claim of one-time tokens.

The look-up asks resolverd not to claim a one-time token (``?claim=later``;
resolvers of the anchor's shape ignore it): the answer then says so, and the
connection claims the token (``POST <base>/token/<token>/claim``) only once
the console accepted the proxy, so a console that refuses or is down does not
spend the tenant's token.  Exactly one claim of a one-time token wins.

HTTP/1.1 on the worker's event loop (a thread pool cost a worker about 1 ms
of CPU per look-up): kept-alive connections, at most CONNECTIONS at once, a
connect time-out and a read time-out, so a resolver that is down or slow
ends in ResolverUnavailable within a bounded time.  asyncio cannot offer a
previous TLS session, so a new connection is a full handshake; resolverd
keeps idle connections 75 s, so a busy proxy rarely opens one.
The answer keeps the anchor's shape (type, address, insecure, tlsTunnel,
password) and reads resolverd's extra fields when present.
"""

import argparse
import asyncio
import http.client
import io
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote, urlsplit

from resolverd.settings import address
from resolverd.targets import join_host_port

log = logging.getLogger(__name__)

MAX_ANSWER = 64 * 1024
CONNECTIONS = 32  # per worker: look-ups beyond that wait for a connection
_Connection = Tuple[asyncio.StreamReader, asyncio.StreamWriter]
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
    """resolverd's API on the worker's event loop, over at most CONNECTIONS kept-alive connections."""

    def __init__(self, base_uri: str, context: Optional[ssl.SSLContext], connect_timeout: float,
                 read_timeout: float) -> None:
        parts = urlsplit(base_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URI: {base_uri!r}")
        if (parts.scheme == "https") != (context is not None):
            raise ValueError("an https resolver needs a TLS context, an http one none")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._host_header = join_host_port(self._host, self._port)
        self._path = parts.path.rstrip("/") + "/token/"
        self._context = context
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: List[_Connection] = []
        self._slots: Optional[asyncio.Semaphore] = None
        self._closed = False

    async def lookup(self, token: str) -> Console:
        """The console of ``token``; a one-time token is left unclaimed (``Console.claim``)."""
        status, body = await self._call("GET", self._path + quote(token, safe="") + "?claim=later")
        if status == 404:
            raise TokenRefused()
        if status != 200:
            raise ResolverUnavailable(f"resolver answered HTTP {status}")
        try:
            return parse_answer(json.loads(body))
        except ValueError as exc:
            raise ResolverUnavailable(f"unusable answer: {exc}") from None

    async def claim(self, token: str) -> None:
        """Spend a one-time token; TokenSpent if another session spent it first."""
        status, _ = await self._call("POST", self._path + quote(token, safe="") + "/claim")
        if status == 409:
            raise TokenSpent()
        if status == 404:
            raise TokenRefused()
        if status != 200:
            raise ResolverUnavailable(f"resolver answered HTTP {status} to a claim")

    def close(self) -> None:
        """Close the idle connections; those in use close when their answer is in."""
        self._closed = True
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    async def _call(self, method: str, path: str) -> Tuple[int, bytes]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(CONNECTIONS)
        async with self._slots:
            try:
                return await self._exchange(method, path)
            except asyncio.TimeoutError:
                raise ResolverUnavailable("resolver timed out") from None
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                raise ResolverUnavailable(_describe(exc)) from None

    async def _exchange(self, method: str, path: str) -> Tuple[int, bytes]:
        while self._idle:
            reader, writer = connection = self._idle.pop()
            if writer.is_closing() or reader.at_eof():
                writer.close()
                continue
            try:
                return await self._request(connection, method, path, reused=True)
            except _Stale:
                continue  # resolverd closed the idle kept-alive connection before reading the request
        return await self._request(await self._open(), method, path, reused=False)

    async def _open(self) -> _Connection:
        return await asyncio.wait_for(asyncio.open_connection(
            self._host, self._port, ssl=self._context, server_hostname=self._host if self._context else None,
            ssl_handshake_timeout=self._connect_timeout if self._context else None), self._connect_timeout)

    async def _request(self, connection: _Connection, method: str, path: str, reused: bool) -> Tuple[int, bytes]:
        reader, writer = connection
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\nAccept: application/json\r\n"
                         "Content-Length: 0\r\n\r\n".encode())
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._read_timeout)
            except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
                if reused:
                    raise _Stale() from None
                raise ConnectionError("resolver closed the connection without answering") from None
            status, headers = _parse_head(head)
            if headers.get("Transfer-Encoding"):
                raise ValueError(f"Transfer-Encoding {headers['Transfer-Encoding']} is not supported")
            length = int(headers.get("Content-Length") or 0)
            if length > MAX_ANSWER:
                raise ResolverUnavailable("answer too large")
            body = await asyncio.wait_for(reader.readexactly(length), self._read_timeout)
        except BaseException:
            writer.close()
            raise
        if self._closed or (headers.get("Connection") or "").lower() == "close":
            writer.close()
        else:
            self._idle.append(connection)
        return status, body


class _Stale(Exception):
    """A kept-alive connection was closed by resolverd before it answered."""


def _parse_head(head: bytes) -> Tuple[int, "http.client.HTTPMessage"]:
    """Status and headers of an HTTP/1.1 answer's head (ValueError when it is not one)."""
    status_line, _, fields = head.partition(b"\r\n")
    version, _, rest = status_line.decode("latin-1").partition(" ")
    code = rest.split(" ", 1)[0]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit() or len(code) != 3:
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    headers = http.client.parse_headers(io.BytesIO(fields))
    if version == "HTTP/1.0" and (headers.get("Connection") or "").lower() != "keep-alive":
        headers["Connection"] = "close"
    return int(code), headers


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"resolver certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with the resolver failed: {exc.reason or exc}"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "resolver closed the connection in the middle of its answer"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "answer head too large"
    return f"{type(exc).__name__}: {exc}"
