"""Why an RFB handshake failed, beyond malformed bytes."""

from __future__ import annotations

from ..errors import ProtocolError


class UnsupportedSecurityType(ProtocolError):
    """No security type (or VeNCrypt subtype) on offer is one we may use."""

    reason = "unsupported-security-type"


class ServerRefused(ProtocolError):
    """The server ended the handshake with a reason string of its own."""

    reason = "backend-refused"


class AuthenticationFailed(ProtocolError):
    """The server's SecurityResult was not OK."""

    reason = "auth-failed"
