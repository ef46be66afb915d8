"""The tenant's leg of the VNC MITM: the proxy as RFB server offering only None.

The token already authenticated the tenant, so the only thing this leg waits
for is the backend: the caller calls ``accept()`` once QEMU's leg is
authenticated (before or after the tenant's version arrives), or
``refuse(reason)`` when it failed.  Holding the security offer back until
then lets every client version be told why it was refused: the 3.3 form is
security type 0 with a reason, the 3.7/3.8 form an empty list with a reason.

The tenant may send ClientInit right after choosing None (3.3, 3.7); those
bytes come back in ``TenantAuthenticated.remaining`` for the relay.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import List

from ..errors import ProtocolError
from ..handshake import Handshake
from .errors import UnsupportedSecurityType
from .messages import (
    SECURITY_RESULT_FAILED,
    SECURITY_RESULT_OK,
    VERSION_LENGTH,
    RfbVersion,
    SecurityType,
    encode_reason,
    parse_version,
    version_from_client,
)

MAX_PENDING = 1024


@dataclass(frozen=True)
class TenantAuthenticated:
    version: RfbVersion
    remaining: bytes


class _State(enum.Enum):
    VERSION = "version"
    OFFER = "offer"
    CHOICE = "choice"
    DONE = "done"
    FAILED = "failed"


class RfbTenantHandshake(Handshake):
    def __init__(self) -> None:
        super().__init__(MAX_PENDING, RfbVersion.V3_8.wire)
        self._state = _State.VERSION
        self._version = RfbVersion.V3_8  # what we offered, until the tenant answers
        self._accepted = False

    def receive_data(self, data: bytes) -> List[TenantAuthenticated]:
        if self._state in (_State.DONE, _State.FAILED):
            raise RuntimeError(f"handshake is {self._state.value}")
        self._buffer.feed(data)
        return self._advance()

    def accept(self) -> List[TenantAuthenticated]:
        """The backend is ready: offer None and finish when the tenant takes it."""
        if self._state in (_State.DONE, _State.FAILED):
            raise RuntimeError(f"handshake is {self._state.value}")
        self._accepted = True
        return self._advance()

    def refuse(self, reason: str) -> None:
        """Queue the tenant's refusal; the caller flushes it and closes.

        Before the tenant's version has arrived there is no way to tell it,
        so nothing is queued then.
        """
        if self._state is _State.DONE:
            raise RuntimeError("handshake is done")
        if self._state is _State.OFFER:
            if self._version is RfbVersion.V3_3:
                self._out += struct.pack(">I", SecurityType.INVALID) + encode_reason(reason)
            else:
                self._out += bytes([0]) + encode_reason(reason)
        elif self._state is _State.CHOICE and self._version is RfbVersion.V3_8:
            self._out += SECURITY_RESULT_FAILED + encode_reason(reason)
        self._state = _State.FAILED

    def _advance(self) -> List[TenantAuthenticated]:
        try:
            events = self._step()
            if self._state is not _State.DONE:
                self._buffer.check_limit()
        except ProtocolError:
            self._state = _State.FAILED
            raise
        return events

    def _step(self) -> List[TenantAuthenticated]:
        if self._state is _State.VERSION:
            raw = self._buffer.take(VERSION_LENGTH)
            if raw is None:
                return []
            self._version = version_from_client(*parse_version(raw))
            self._state = _State.OFFER
        if self._state is _State.OFFER:
            if not self._accepted:
                return []
            if self._version is RfbVersion.V3_3:
                self._out += struct.pack(">I", SecurityType.NONE)
                return [self._finish()]
            self._out += bytes([1, SecurityType.NONE])
            self._state = _State.CHOICE
        if self._state is _State.CHOICE:
            choice = self._buffer.take(1)
            if choice is None:
                return []
            if choice[0] != SecurityType.NONE:
                if self._version is RfbVersion.V3_8:
                    self._out += SECURITY_RESULT_FAILED + encode_reason("security type None is the only one offered")
                raise UnsupportedSecurityType(f"tenant chose security type {choice[0]}, not None")
            if self._version is RfbVersion.V3_8:
                self._out += SECURITY_RESULT_OK
            return [self._finish()]
        return []

    def _finish(self) -> TenantAuthenticated:
        self._state = _State.DONE
        return TenantAuthenticated(self._version, self._buffer.take_all())
