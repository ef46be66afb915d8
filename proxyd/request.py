"""What a websocket upgrade request asks for: its token, whether its Origin may connect, its framing.

Pure functions of the request's path and headers, so every rule has a
byte-level unit test and no socket is needed to check it.
"""

import enum
from http.cookies import SimpleCookie
from typing import Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

WEBSOCKET_PATH = "/websockify"
TOKEN_PARAMETER = "token"
MAX_TOKEN_LENGTH = 256
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class Framing(str, enum.Enum):
    """How console bytes travel in websocket messages (the subprotocol)."""

    BINARY = "binary"  # binary messages carry raw bytes; also when no subprotocol is offered
    BASE64 = "base64"  # text messages carry base64 (websockify before 0.9)


class TokenError(Exception):
    """The request carries no usable token; the message is safe to show the tenant."""


def select_framing(offered: Sequence[str]) -> Optional[str]:
    """The subprotocol to answer: ``binary`` whenever offered, else ``base64``, else none."""
    for candidate in (Framing.BINARY.value, Framing.BASE64.value):
        if candidate in offered:
            return candidate
    return None


def framing_of(subprotocol: Optional[str]) -> Framing:
    return Framing.BASE64 if subprotocol == Framing.BASE64.value else Framing.BINARY


def path_of(target: str) -> str:
    return urlsplit(target).path


def token_of(target: str, cookie_headers: Sequence[str]) -> str:
    """The token from the ``token`` query parameter, else from a ``token`` cookie."""
    values = parse_qs(urlsplit(target).query, keep_blank_values=True).get(TOKEN_PARAMETER, [])
    if len(values) > 1:
        raise TokenError("several tokens in the URL")
    if values:
        return _checked(values[0])
    cookie: SimpleCookie = SimpleCookie()
    cookie.load("; ".join(cookie_headers))  # lenient: stops at the first malformed pair
    if TOKEN_PARAMETER in cookie:
        return _checked(cookie[TOKEN_PARAMETER].value)
    raise TokenError("no token: add ?token=... to the URL or send a token cookie")


def _checked(token: str) -> str:
    if not token:
        raise TokenError("empty token")
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable() or " " in token:
        raise TokenError("malformed token")
    return token


def origin_allowed(origin: Optional[str], host: Optional[str], allowed: Sequence[str]) -> bool:
    """An absent Origin (not a browser) passes; a browser's must be the proxy's own or allow-listed."""
    if origin is None:
        return True
    parsed = _origin_parts(origin)
    if parsed is None:
        return False
    if host is not None and _host_parts(host, parsed[0]) == parsed[1:]:
        return True
    return any(_origin_parts(entry) == parsed for entry in allowed)


def _origin_parts(origin: str) -> Optional[Tuple[str, str, int]]:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


def _host_parts(host: str, scheme: str) -> Optional[Tuple[str, int]]:
    try:
        parts = urlsplit("//" + host.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]
