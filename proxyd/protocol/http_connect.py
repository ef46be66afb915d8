"""Clear-text HTTP ``CONNECT`` as remote-viewer's ``proxy=`` setting sends it.

GLib sends one request per SPICE channel, credentials up front and no retry
after a 407::

    CONNECT host:port HTTP/1.0
    Host: host:port
    Proxy-Connection: keep-alive
    User-Agent: GLib/2.74
    Proxy-Authorization: Basic base64(user:password)

The token is the Basic password, else the Basic user, else the CONNECT host
(Proxmox style: ``.vv host=TOKEN``).  The reply is read up to the blank line;
any 2xx is success.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

from .errors import MalformedMessage, Oversized, ProtocolError, UnsupportedVersion
from .receive_buffer import ReceiveBuffer

MAX_REQUEST_SIZE = 8192
MAX_HEADERS = 64

_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REG_NAME = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_VERSIONS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1"}

REASON_PHRASES = {
    200: "Connection established",
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    502: "Bad Gateway",
}


class BadRequest(ProtocolError):
    reason = "bad-request"


class BadCredentials(ProtocolError):
    """Proxy-Authorization is present but not usable Basic credentials."""

    reason = "bad-credentials"


@dataclass(frozen=True)
class BasicCredentials:
    user: str
    password: str

    @property
    def token(self) -> str:
        return self.password or self.user


@dataclass(frozen=True)
class ConnectRequest:
    host: str
    """Without the brackets of an IPv6 literal."""
    port: int
    http_version: str
    headers: tuple[tuple[str, str], ...]
    """Names lower-cased, in the order received."""
    credentials: Optional[BasicCredentials]
    remaining: bytes
    """Bytes the client sent after the request (the start of the tunnel)."""

    @property
    def token(self) -> str:
        if self.credentials is not None and self.credentials.token:
            return self.credentials.token
        return self.host


class ConnectRequestParser:
    """Reads one CONNECT request of at most ``MAX_REQUEST_SIZE`` bytes."""

    def __init__(self) -> None:
        self._buffer = ReceiveBuffer(MAX_REQUEST_SIZE)
        self._searched = 0
        self._done = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> Optional[ConnectRequest]:
        if self._done:
            raise RuntimeError("the request is already complete")
        self._buffer.feed(data)
        end = self._buffer.find(b"\r\n\r\n", self._searched)
        if end < 0 or end + 4 > MAX_REQUEST_SIZE:
            if len(self._buffer) >= MAX_REQUEST_SIZE:
                self._done = True
                raise Oversized(f"request head is over {MAX_REQUEST_SIZE} bytes")
            self._searched = max(0, len(self._buffer) - 3)
            return None
        self._done = True
        head = self._buffer.take(end + 4)
        assert head is not None
        return _parse_head(head[:end], self._buffer.take_all())


def _parse_head(head: bytes, remaining: bytes) -> ConnectRequest:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request head is not ASCII") from None
    lines = text.split("\r\n")
    if any("\r" in line or "\n" in line or "\0" in line for line in lines):
        raise MalformedMessage("bare CR, LF or NUL in the request head")
    host, port, version = _parse_request_line(lines[0])
    headers = tuple(_parse_header(line) for line in lines[1:])
    if len(headers) > MAX_HEADERS:
        raise Oversized(f"{len(headers)} header fields, over {MAX_HEADERS}")
    authorizations = [value for name, value in headers if name == "proxy-authorization"]
    if len(authorizations) > 1:
        raise BadRequest("more than one Proxy-Authorization field")
    credentials = _parse_basic(authorizations[0]) if authorizations else None
    return ConnectRequest(host, port, version, headers, credentials, remaining)


def _parse_request_line(line: str) -> tuple[str, int, str]:
    parts = line.split(" ")
    if len(parts) != 3:
        raise BadRequest(f"request line {line[:80]!r} is not METHOD TARGET VERSION")
    method, target, version = parts
    if method != "CONNECT":
        raise BadRequest(f"method {method[:20]!r} is not CONNECT")
    if version not in _VERSIONS:
        raise UnsupportedVersion(f"{version[:20]!r} is not HTTP/1.0 or HTTP/1.1")
    host, port = _parse_authority(target)
    return host, port, _VERSIONS[version]


def _parse_authority(target: str) -> tuple[str, int]:
    if target.startswith("["):
        literal, _, port_text = target[1:].partition("]:")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise BadRequest(f"target {target[:80]!r} is not [IPv6]:port") from None
        host = literal
    else:
        host, _, port_text = target.rpartition(":")
        if not _REG_NAME.fullmatch(host):
            raise BadRequest(f"target {target[:80]!r} is not host:port")
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise BadRequest(f"target {target[:80]!r} has no valid port")
    return host, int(port_text)


def _parse_header(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon or not _TOKEN_CHARS.fullmatch(name):
        raise BadRequest(f"header line {line[:40]!r} is not name: value")
    return name.lower(), value.strip(" \t")


def _parse_basic(value: str) -> BasicCredentials:
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        raise BadCredentials(f"Proxy-Authorization scheme {scheme[:20]!r} is not Basic")
    try:
        decoded = base64.b64decode(encoded.strip(" "), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("Proxy-Authorization is not base64 of UTF-8") from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise BadCredentials("Basic credentials without a colon")
    return BasicCredentials(user, password)


def established_reply() -> bytes:
    return b"HTTP/1.1 200 Connection established\r\n\r\n"


def refusal_reply(status: int, realm: str = "virt-console-proxy") -> bytes:
    """A final error reply; the caller closes the connection after it."""
    if status not in REASON_PHRASES or status == 200:
        raise ValueError(f"no refusal with status {status}")
    lines = [f"HTTP/1.1 {status} {REASON_PHRASES[status]}"]
    if status == 407:
        lines.append(f'Proxy-Authenticate: Basic realm="{realm}"')
    lines += ["Content-Length: 0", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii")


def refusal_for(error: ProtocolError) -> bytes:
    """The reply to a request the parser rejected."""
    return refusal_reply(407 if isinstance(error, BadCredentials) else 400)
