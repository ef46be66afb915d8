"""SPICE link-stage messages: encoding and validating parsing (all little-endian).

``caps_offset`` counts from the start of SpiceLinkMess/SpiceLinkReply, i.e.
from the byte after the 16-byte header; the caps follow as
``num_common_caps`` u32 words, then ``num_channel_caps`` words, and cap ``n``
is bit ``n % 32`` of word ``n // 32``.  Nothing read from the wire is trusted:
sizes, counts and offsets are checked against the message before use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Tuple

from ..errors import BadMagic, MalformedMessage, Oversized, UnsupportedVersion
from .constants import (
    LINK_MESS_SIZE,
    LINK_REPLY_SIZE,
    MAGIC,
    MAX_CAPS_WORDS,
    MAX_LINK_SIZE,
    PUBKEY_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    CommonCap,
    LinkError,
)
from .errors import BadCapabilities

Caps = Tuple[int, ...]

_HEADER = struct.Struct("<4sIII")
_MESS = struct.Struct("<IBBIII")
_REPLY = struct.Struct(f"<I{PUBKEY_SIZE}sIII")
_U32 = struct.Struct("<I")


def has_cap(words: Caps, bit: int) -> bool:
    word, shift = divmod(bit, 32)
    return word < len(words) and bool(words[word] >> shift & 1)


def set_cap(words: Caps, bit: int, present: bool) -> Caps:
    word, shift = divmod(bit, 32)
    padded = list(words) + [0] * max(0, word + 1 - len(words))
    if present:
        padded[word] |= 1 << shift
    else:
        padded[word] &= ~(1 << shift)
    return tuple(padded)


def caps_from_bits(*bits: int) -> Caps:
    words: Caps = ()
    for bit in bits:
        words = set_cap(words, bit, True)
    return words


@dataclass(frozen=True)
class LinkHeader:
    major: int
    minor: int
    size: int

    def encode(self) -> bytes:
        return _HEADER.pack(MAGIC, self.major, self.minor, self.size)


def parse_link_header(data: bytes, min_size: int) -> LinkHeader:
    """The 16-byte header; ``size`` must cover the fixed part that follows."""
    magic, major, minor, size = _HEADER.unpack(data)
    if magic != MAGIC:
        raise BadMagic(f"link header starts with {magic!r}")
    if major != VERSION_MAJOR:
        raise UnsupportedVersion(f"SPICE link protocol {major}.{minor}")
    if size < min_size:
        raise MalformedMessage(f"link message of {size} bytes, under {min_size}")
    if size > MAX_LINK_SIZE:
        raise Oversized(f"link message of {size} bytes, over {MAX_LINK_SIZE}")
    return LinkHeader(major, minor, size)


def _parse_caps(body: bytes, fixed_size: int, num_common: int, num_channel: int, offset: int) -> Tuple[Caps, Caps]:
    if num_common > MAX_CAPS_WORDS or num_channel > MAX_CAPS_WORDS:
        raise BadCapabilities(f"{num_common} common and {num_channel} channel caps words")
    count = num_common + num_channel
    if count == 0:  # spice-server ignores caps_offset then, and so do we
        return (), ()
    if offset < fixed_size or offset + 4 * count > len(body):
        raise BadCapabilities(f"{count} caps words at offset {offset} do not fit {len(body)} bytes")
    words = struct.unpack_from(f"<{count}I", body, offset)
    return words[:num_common], words[num_common:]


def _encode_caps(common: Caps, channel: Caps) -> bytes:
    return struct.pack(f"<{len(common) + len(channel)}I", *common, *channel)


@dataclass(frozen=True)
class LinkMess:
    """What a client sends to open one channel."""

    connection_id: int
    channel_type: int
    channel_id: int
    common_caps: Caps = ()
    channel_caps: Caps = ()

    @property
    def mini_header(self) -> bool:
        return has_cap(self.common_caps, CommonCap.MINI_HEADER)

    @property
    def auth_selection(self) -> bool:
        return has_cap(self.common_caps, CommonCap.PROTOCOL_AUTH_SELECTION)

    def encode(self) -> bytes:
        caps = _encode_caps(self.common_caps, self.channel_caps)
        body = _MESS.pack(
            self.connection_id, self.channel_type, self.channel_id,
            len(self.common_caps), len(self.channel_caps), LINK_MESS_SIZE,
        )
        return LinkHeader(VERSION_MAJOR, VERSION_MINOR, len(body) + len(caps)).encode() + body + caps

    @classmethod
    def parse(cls, body: bytes) -> LinkMess:
        """The ``size`` bytes after a header checked by ``parse_link_header(..., LINK_MESS_SIZE)``."""
        connection_id, channel_type, channel_id, num_common, num_channel, offset = _MESS.unpack_from(body)
        common, channel = _parse_caps(body, LINK_MESS_SIZE, num_common, num_channel, offset)
        return cls(connection_id, channel_type, channel_id, common, channel)


@dataclass(frozen=True)
class LinkReply:
    """What a server answers a LinkMess with; ``error`` other than OK ends the link."""

    error: LinkError
    pub_key: bytes
    common_caps: Caps = ()
    channel_caps: Caps = ()

    @property
    def mini_header(self) -> bool:
        return has_cap(self.common_caps, CommonCap.MINI_HEADER)

    def encode(self) -> bytes:
        if len(self.pub_key) != PUBKEY_SIZE:
            raise ValueError(f"public key of {len(self.pub_key)} bytes, not {PUBKEY_SIZE}")
        caps = _encode_caps(self.common_caps, self.channel_caps)
        body = _REPLY.pack(self.error, self.pub_key, len(self.common_caps), len(self.channel_caps), LINK_REPLY_SIZE)
        return LinkHeader(VERSION_MAJOR, VERSION_MINOR, len(body) + len(caps)).encode() + body + caps

    @classmethod
    def parse(cls, body: bytes) -> LinkReply:
        """The ``size`` bytes after a header checked by ``parse_link_header(..., LINK_REPLY_SIZE)``.

        An error reply is all zeroes but its error code, so its caps are not read.
        """
        error, pub_key, num_common, num_channel, offset = _REPLY.unpack_from(body)
        if error != LinkError.OK:
            return cls(_link_error(error), pub_key)
        common, channel = _parse_caps(body, LINK_REPLY_SIZE, num_common, num_channel, offset)
        return cls(LinkError.OK, pub_key, common, channel)


def _link_error(value: int) -> LinkError:
    try:
        return LinkError(value)
    except ValueError:
        return LinkError.ERROR


def encode_link_error(error: LinkError) -> bytes:
    """The whole 194-byte error reply spice-server sends before a link is answered.

    spice-gtk refuses a reply shorter than SpiceLinkReply, so a bare u32 will not do.
    """
    body = _REPLY.pack(error, bytes(PUBKEY_SIZE), 0, 0, 0)
    return LinkHeader(VERSION_MAJOR, VERSION_MINOR, LINK_REPLY_SIZE).encode() + body


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def parse_u32(data: bytes) -> int:
    return _U32.unpack(data)[0]


def parse_link_result(data: bytes) -> LinkError:
    return _link_error(parse_u32(data))
