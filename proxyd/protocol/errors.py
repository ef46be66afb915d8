"""Errors shared by the protocol machines.

``reason`` is a stable short code (a metrics label, a log field); the message
is for humans.  Protocol-specific errors subclass these in their own modules.
"""

from __future__ import annotations

from typing import Optional


class ProtocolError(Exception):
    """The peer sent something the machine cannot accept."""

    reason = "protocol-error"

    def __init__(self, message: str, *, reason: Optional[str] = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class BadMagic(ProtocolError):
    reason = "bad-magic"


class UnsupportedVersion(ProtocolError):
    reason = "bad-version"


class Oversized(ProtocolError):
    """A length or count on the wire is over the machine's bound."""

    reason = "oversized"


class MalformedMessage(ProtocolError):
    reason = "malformed"
