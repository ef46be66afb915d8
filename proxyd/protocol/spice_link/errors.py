"""Why a SPICE link failed, beyond malformed bytes."""

from __future__ import annotations

from ..errors import MalformedMessage, ProtocolError
from .constants import LinkError


class BadCapabilities(MalformedMessage):
    """Caps counts or ``caps_offset`` that do not fit the message."""

    reason = "bad-caps"


class UnsupportedAuthMechanism(ProtocolError):
    reason = "bad-auth-mechanism"


class BadTicket(ProtocolError):
    """The encrypted ticket does not decrypt to a password."""

    reason = "bad-ticket"


class BadPublicKey(MalformedMessage):
    reason = "bad-public-key"


class LinkRefused(ProtocolError):
    """QEMU answered the link with an error; ``link_error`` is for passing it on."""

    reason = "link-refused"

    def __init__(self, link_error: LinkError, stage: str) -> None:
        super().__init__(f"backend refused the link {stage}: {link_error.name}")
        self.link_error = link_error


class HeaderModeMismatch(ProtocolError):
    """The two legs would frame messages differently, so bytes cannot be relayed as they are."""

    reason = "header-mode-mismatch"
