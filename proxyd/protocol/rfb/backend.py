"""QEMU's leg of the VNC MITM: the proxy as RFB client.

Security types in order of preference: VeNCrypt (19) with X509None (260),
or X509Vnc (261) when the resolver gave a password; VNC Authentication (2)
when it gave a password; None (1) only for a console marked insecure (or
reached through a TLS tunnel).  The anonymous-DH ``TLS*`` and the ``*Plain``
subtypes are never used: the first has no certificates to check and the
second needs a user name we do not have.

VeNCrypt switches to TLS in the middle of the handshake: after the
``StartTLS`` event the caller wraps the connection with its client
certificate, then calls ``tls_established()`` and feeds decrypted bytes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Type, Union

from ..errors import MalformedMessage, Oversized, ProtocolError, UnsupportedVersion
from ..handshake import Handshake
from .errors import AuthenticationFailed, ServerRefused, UnsupportedSecurityType
from .messages import (
    MAX_REASON_LENGTH,
    VERSION_LENGTH,
    RfbVersion,
    SecurityType,
    VeNCryptSubtype,
    decode_reason,
    describe,
    parse_version,
    version_for_server,
)
from .vnc_des import CHALLENGE_LENGTH, vnc_auth_response

MAX_PENDING = 8192
VENCRYPT_VERSION = (0, 2)


@dataclass(frozen=True)
class StartTLS:
    """Wrap the backend connection in TLS now, then call ``tls_established()``."""


@dataclass(frozen=True)
class BackendAuthenticated:
    version: RfbVersion
    security_type: SecurityType
    vencrypt_subtype: Optional[VeNCryptSubtype]
    remaining: bytes


Event = Union[StartTLS, BackendAuthenticated]


class _State(enum.Enum):
    VERSION = "version"
    SECURITY_TYPE = "security-type"
    SECURITY_TYPES = "security-types"
    VENCRYPT_VERSION = "vencrypt-version"
    VENCRYPT_VERSION_ACK = "vencrypt-version-ack"
    VENCRYPT_SUBTYPES = "vencrypt-subtypes"
    VENCRYPT_SUBTYPE_ACK = "vencrypt-subtype-ack"
    AWAIT_TLS = "await-tls"
    VNC_CHALLENGE = "vnc-challenge"
    SECURITY_RESULT = "security-result"
    REASON = "reason"
    DONE = "done"
    FAILED = "failed"


class RfbBackendHandshake(Handshake):
    def __init__(self, *, password: Optional[str] = None, allow_none: bool = False) -> None:
        self._password = password.encode("utf-8") if password else None
        self._allow_none = allow_none
        super().__init__(MAX_PENDING)
        self._state = _State.VERSION
        self._version = RfbVersion.V3_8  # until the server's version is read
        self._security_type = SecurityType.INVALID
        self._subtype: Optional[VeNCryptSubtype] = None
        self._reason_error: Type[ProtocolError] = ServerRefused
        self._events: List[Event] = []
        self._handlers: Dict[_State, Callable[[], bool]] = {
            _State.VERSION: self._on_version,
            _State.SECURITY_TYPE: self._on_security_type,
            _State.SECURITY_TYPES: self._on_security_types,
            _State.VENCRYPT_VERSION: self._on_vencrypt_version,
            _State.VENCRYPT_VERSION_ACK: self._on_vencrypt_version_ack,
            _State.VENCRYPT_SUBTYPES: self._on_vencrypt_subtypes,
            _State.VENCRYPT_SUBTYPE_ACK: self._on_vencrypt_subtype_ack,
            _State.VNC_CHALLENGE: self._on_vnc_challenge,
            _State.SECURITY_RESULT: self._on_security_result,
            _State.REASON: self._on_reason,
        }

    def receive_data(self, data: bytes) -> List[Event]:
        if self._state in (_State.DONE, _State.FAILED, _State.AWAIT_TLS):
            raise RuntimeError(f"receive_data() while {self._state.value}")
        self._buffer.feed(data)
        return self._advance()

    def tls_established(self) -> List[Event]:
        if self._state is not _State.AWAIT_TLS:
            raise RuntimeError(f"tls_established() while {self._state.value}")
        if self._subtype is VeNCryptSubtype.X509_VNC:
            self._state = _State.VNC_CHALLENGE
        else:
            self._state = _State.SECURITY_RESULT
        return self._advance()

    def _advance(self) -> List[Event]:
        try:
            while self._state not in (_State.DONE, _State.AWAIT_TLS) and self._handlers[self._state]():
                pass
            if self._state is not _State.DONE:
                self._buffer.check_limit()
        except ProtocolError:
            self._state = _State.FAILED
            raise
        events, self._events = self._events, []
        return events

    def _on_version(self) -> bool:
        raw = self._buffer.take(VERSION_LENGTH)
        if raw is None:
            return False
        self._version = version_for_server(*parse_version(raw))
        self._out += self._version.wire
        if self._version is RfbVersion.V3_3:
            self._state = _State.SECURITY_TYPE
        else:
            self._state = _State.SECURITY_TYPES
        return True

    def _on_security_type(self) -> bool:
        raw = self._buffer.take(4)
        if raw is None:
            return False
        (offered,) = struct.unpack(">I", raw)
        if offered == SecurityType.INVALID:
            return self._expect_reason(ServerRefused)
        if offered not in (SecurityType.NONE, SecurityType.VNC_AUTH):
            raise MalformedMessage(f"RFB 3.3 server decided on security type {offered}")
        return self._use(self._choose([offered]))

    def _on_security_types(self) -> bool:
        count = self._buffer.peek(1)
        if count is None:
            return False
        if count[0] == 0:
            self._buffer.take(1)
            return self._expect_reason(ServerRefused)
        raw = self._buffer.take(1 + count[0])
        if raw is None:
            return False
        chosen = self._choose(list(raw[1:]))
        self._out.append(chosen)
        return self._use(chosen)

    def _choose(self, offered: List[int]) -> SecurityType:
        if SecurityType.VENCRYPT in offered:
            return SecurityType.VENCRYPT
        if SecurityType.VNC_AUTH in offered and self._password is not None:
            return SecurityType.VNC_AUTH
        if SecurityType.NONE in offered and self._allow_none:
            return SecurityType.NONE
        raise UnsupportedSecurityType(
            f"no usable security type among {describe(offered, SecurityType)}"
            f" (password given: {self._password is not None}, None allowed: {self._allow_none})"
        )

    def _use(self, chosen: SecurityType) -> bool:
        self._security_type = chosen
        if chosen is SecurityType.VENCRYPT:
            self._state = _State.VENCRYPT_VERSION
        elif chosen is SecurityType.VNC_AUTH:
            self._state = _State.VNC_CHALLENGE
        elif self._version is RfbVersion.V3_8:
            self._state = _State.SECURITY_RESULT
        else:
            self._finish()  # None before 3.8 has no SecurityResult
        return True

    def _on_vencrypt_version(self) -> bool:
        raw = self._buffer.take(2)
        if raw is None:
            return False
        if tuple(raw) < VENCRYPT_VERSION:
            raise UnsupportedVersion(f"server offers VeNCrypt {raw[0]}.{raw[1]}, not 0.2")
        self._out += bytes(VENCRYPT_VERSION)
        self._state = _State.VENCRYPT_VERSION_ACK
        return True

    def _on_vencrypt_version_ack(self) -> bool:
        raw = self._buffer.take(1)
        if raw is None:
            return False
        if raw[0] != 0:
            raise ServerRefused("server refused VeNCrypt 0.2")
        self._state = _State.VENCRYPT_SUBTYPES
        return True

    def _on_vencrypt_subtypes(self) -> bool:
        count = self._buffer.peek(1)
        if count is None:
            return False
        if count[0] == 0:
            raise ServerRefused("server offers no VeNCrypt subtype")
        raw = self._buffer.take(1 + 4 * count[0])
        if raw is None:
            return False
        offered = list(struct.unpack(f">{count[0]}I", raw[1:]))
        if VeNCryptSubtype.X509_NONE in offered:
            self._subtype = VeNCryptSubtype.X509_NONE
        elif VeNCryptSubtype.X509_VNC in offered and self._password is not None:
            self._subtype = VeNCryptSubtype.X509_VNC
        else:
            raise UnsupportedSecurityType(
                f"no usable VeNCrypt subtype among {describe(offered, VeNCryptSubtype)}"
                f" (password given: {self._password is not None})"
            )
        self._out += struct.pack(">I", self._subtype)
        self._state = _State.VENCRYPT_SUBTYPE_ACK
        return True

    def _on_vencrypt_subtype_ack(self) -> bool:
        raw = self._buffer.take(1)
        if raw is None:
            return False
        if raw[0] != 1:
            assert self._subtype is not None
            raise ServerRefused(f"server refused VeNCrypt subtype {describe([self._subtype], VeNCryptSubtype)}")
        if len(self._buffer):
            raise MalformedMessage("server sent data before the TLS handshake", reason="unexpected-data")
        self._state = _State.AWAIT_TLS
        self._events.append(StartTLS())
        return True

    def _on_vnc_challenge(self) -> bool:
        challenge = self._buffer.take(CHALLENGE_LENGTH)
        if challenge is None:
            return False
        assert self._password is not None
        self._out += vnc_auth_response(challenge, self._password)
        self._state = _State.SECURITY_RESULT
        return True

    def _on_security_result(self) -> bool:
        raw = self._buffer.take(4)
        if raw is None:
            return False
        (result,) = struct.unpack(">I", raw)
        if result == 0:
            self._finish()
            return True
        if self._version is RfbVersion.V3_8:
            return self._expect_reason(AuthenticationFailed)
        raise AuthenticationFailed(f"security result {result}")

    def _expect_reason(self, error: Type[ProtocolError]) -> bool:
        self._reason_error = error
        self._state = _State.REASON
        return True

    def _on_reason(self) -> bool:
        head = self._buffer.peek(4)
        if head is None:
            return False
        (length,) = struct.unpack(">I", head)
        if length > MAX_REASON_LENGTH:
            raise Oversized(f"reason string of {length} bytes")
        raw = self._buffer.take(4 + length)
        if raw is None:
            return False
        raise self._reason_error(decode_reason(raw[4:]))

    def _finish(self) -> None:
        self._state = _State.DONE
        remaining = self._buffer.take_all()
        self._events.append(BackendAuthenticated(self._version, self._security_type, self._subtype, remaining))
