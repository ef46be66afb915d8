"""RFB (RFC 6143) handshake values and encodings; integers are big-endian."""

from __future__ import annotations

import enum
import re
import struct
from typing import Iterable

from ..errors import MalformedMessage, UnsupportedVersion

VERSION_LENGTH = 12
MAX_REASON_LENGTH = 4096

SECURITY_RESULT_OK = struct.pack(">I", 0)
SECURITY_RESULT_FAILED = struct.pack(">I", 1)

_VERSION = re.compile(rb"RFB ([0-9]{3})\.([0-9]{3})\n")


class RfbVersion(enum.Enum):
    V3_3 = (3, 3)
    V3_7 = (3, 7)
    V3_8 = (3, 8)

    @property
    def wire(self) -> bytes:
        return b"RFB %03d.%03d\n" % self.value


class SecurityType(enum.IntEnum):
    INVALID = 0
    NONE = 1
    VNC_AUTH = 2
    RA2 = 5
    RA2NE = 6
    TIGHT = 16
    ULTRA = 17
    TLS = 18
    VENCRYPT = 19
    SASL = 20
    MD5 = 21
    XVP = 22


class VeNCryptSubtype(enum.IntEnum):
    PLAIN = 256
    TLS_NONE = 257
    TLS_VNC = 258
    TLS_PLAIN = 259
    X509_NONE = 260
    X509_VNC = 261
    X509_PLAIN = 262
    X509_SASL = 263
    TLS_SASL = 264


def parse_version(data: bytes) -> tuple[int, int]:
    match = _VERSION.fullmatch(data)
    if match is None:
        raise MalformedMessage(f"{data!r} is not an RFB ProtocolVersion")
    return int(match.group(1)), int(match.group(2))


def version_from_client(major: int, minor: int) -> RfbVersion:
    """The version a client asked for; RFC 6143 reads unknown 3.x as 3.3."""
    if major != 3:
        raise UnsupportedVersion(f"client asks for RFB {major}.{minor}")
    if minor in (7, 8):
        return RfbVersion((3, minor))
    return RfbVersion.V3_3


def version_for_server(major: int, minor: int) -> RfbVersion:
    """The highest version we speak that is not above the server's."""
    if major < 3:
        raise UnsupportedVersion(f"server offers RFB {major}.{minor}")
    if major > 3 or minor >= 8:
        return RfbVersion.V3_8
    return RfbVersion.V3_7 if minor == 7 else RfbVersion.V3_3


def describe(values: Iterable[int], names: type[enum.IntEnum]) -> str:
    """``"2 (VNC_AUTH), 42 (unknown)"`` for error messages."""
    described = []
    for value in values:
        try:
            described.append(f"{value} ({names(value).name})")
        except ValueError:
            described.append(f"{value} (unknown)")
    return ", ".join(described) or "none"


def encode_reason(reason: str) -> bytes:
    """A length-prefixed reason string, cut to ``MAX_REASON_LENGTH`` bytes."""
    text = reason.encode("utf-8")[:MAX_REASON_LENGTH]
    return struct.pack(">I", len(text)) + text


def decode_reason(text: bytes) -> str:
    return text.rstrip(b"\0").decode("utf-8", errors="replace")
