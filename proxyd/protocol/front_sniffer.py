"""Which protocol a connection on the public port speaks, from its first bytes.

The one public port carries a TLS ClientHello (a handshake record, ``16 03``)
or a clear-text HTTP ``CONNECT`` (remote-viewer's ``proxy=``); inside TLS or a
tunnel come a native SPICE link (``REDQ``) or an HTTP ``GET`` (a websocket
upgrade).  The caller says which of these it accepts at each stage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Optional

from .errors import ProtocolError


class Front(enum.Enum):
    TLS = "tls"
    HTTP_CONNECT = "http-connect"
    SPICE_LINK = "spice-link"
    HTTP_GET = "http-get"


SIGNATURES = {
    Front.TLS: b"\x16\x03",
    Front.HTTP_CONNECT: b"CONNECT ",
    Front.SPICE_LINK: b"REDQ",
    Front.HTTP_GET: b"GET ",
}
MAX_PEEK = max(len(signature) for signature in SIGNATURES.values())


class UnknownFront(ProtocolError):
    reason = "unknown-front"


@dataclass(frozen=True)
class FrontDetected:
    front: Front
    data: bytes
    """Every byte received so far: the start of the detected protocol."""


class FrontSniffer:
    """Buffers at most ``MAX_PEEK`` bytes, then names the front or raises UnknownFront."""

    def __init__(self, allowed: Iterable[Front]) -> None:
        self._signatures = {front: SIGNATURES[front] for front in allowed}
        if not self._signatures:
            raise ValueError("no front allowed")
        self._data = b""
        self._done = False

    def receive_data(self, data: bytes) -> Optional[FrontDetected]:
        if self._done:
            raise RuntimeError("the front is already known")
        self._data += data
        head = self._data[:MAX_PEEK]
        possible = False
        for front, signature in self._signatures.items():
            if head.startswith(signature):
                self._done = True
                return FrontDetected(front, self._data)
            possible = possible or signature.startswith(head)
        if not possible:
            self._done = True
            raise UnknownFront(f"connection starts with {head!r}")
        return None
