"""A minimal blocking SPICE link-stage client, to check what QEMU answers.

Independent of proxyd's own protocol code on purpose: the lab checks QEMU
with it, and end-to-end tests can check proxyd with it.  Byte layout per
spice-protocol's SpiceLinkHeader / SpiceLinkMess / SpiceLinkReply (all
little-endian, packed).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from .netio import recv_exactly

MAGIC = b"REDQ"
VERSION = (2, 2)
HEADER = struct.Struct("<4sIII")      # magic, major, minor, size
LINK_MESS = struct.Struct("<IBBIII")  # connection_id, type, id, ncommon, nchannel, caps_offset
REPLY_FIXED = 4 + 162 + 12            # error, pub_key, ncommon, nchannel, caps_offset
PUBKEY_BYTES = 162

CHANNEL_MAIN = 1
CHANNEL_DISPLAY = 2
COMMON_CAP_AUTH_SELECTION = 0
COMMON_CAP_AUTH_SPICE = 1
COMMON_CAP_MINI_HEADER = 3
AUTH_SPICE = 1

LINK_OK = 0
LINK_PERMISSION_DENIED = 7


@dataclass
class LinkReply:
    """What the server answered to a SpiceLinkMess."""

    major: int
    minor: int
    error: int
    pub_key: bytes
    common_caps: list[int]
    channel_caps: list[int]

    def has_common_cap(self, bit: int) -> bool:
        return _has(self.common_caps, bit)


def _has(words: Sequence[int], bit: int) -> bool:
    return len(words) > bit // 32 and bool(words[bit // 32] & (1 << (bit % 32)))


def _words(bits: Sequence[int]) -> list[int]:
    if not bits:
        return []
    words = [0] * (max(bits) // 32 + 1)
    for bit in bits:
        words[bit // 32] |= 1 << (bit % 32)
    return words


def link_message(channel_type: int = CHANNEL_MAIN, channel_id: int = 0,
                 connection_id: int = 0,
                 common_caps: Sequence[int] = (COMMON_CAP_AUTH_SELECTION, COMMON_CAP_MINI_HEADER),
                 channel_caps: Sequence[int] = ()) -> bytes:
    """The client's first packet: SpiceLinkHeader + SpiceLinkMess + caps."""
    common, channel = _words(common_caps), _words(channel_caps)
    body = LINK_MESS.pack(connection_id, channel_type, channel_id,
                          len(common), len(channel), LINK_MESS.size)
    body += b"".join(struct.pack("<I", w) for w in common + channel)
    return HEADER.pack(MAGIC, *VERSION, len(body)) + body


def read_link_reply(sock: socket.socket) -> LinkReply:
    """Read and parse a SpiceLinkHeader + SpiceLinkReply."""
    magic, major, minor, size = HEADER.unpack(recv_exactly(sock, HEADER.size))
    if magic != MAGIC:
        raise ValueError(f"bad SPICE magic {magic!r}")
    if size < REPLY_FIXED:
        raise ValueError(f"SpiceLinkReply of {size} bytes is too short")
    body = recv_exactly(sock, size)
    (error,) = struct.unpack_from("<I", body, 0)
    pub_key = body[4:4 + PUBKEY_BYTES]
    ncommon, nchannel, caps_offset = struct.unpack_from("<III", body, 4 + PUBKEY_BYTES)
    words = [struct.unpack_from("<I", body, caps_offset + 4 * i)[0]
             for i in range(ncommon + nchannel)] if error == LINK_OK else []
    return LinkReply(major, minor, error, pub_key, words[:ncommon], words[ncommon:])


def encrypt_ticket(pub_key: bytes, password: str) -> bytes:
    """The 128-byte SpiceLinkEncryptedTicket (RSA-OAEP-SHA1 of password + NUL)."""
    key = serialization.load_der_public_key(pub_key)
    return key.encrypt(  # type: ignore[union-attr]
        password.encode() + b"\0",
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    )


def link(sock: socket.socket, channel_type: int = CHANNEL_MAIN, channel_id: int = 0,
         connection_id: int = 0) -> LinkReply:
    """Send a link message and return the server's reply."""
    sock.sendall(link_message(channel_type, channel_id, connection_id))
    return read_link_reply(sock)


def authenticate(sock: socket.socket, reply: LinkReply, password: str) -> int:
    """Finish the link with a ticket; return the server's u32 result (0 = OK)."""
    if reply.has_common_cap(COMMON_CAP_AUTH_SELECTION):
        sock.sendall(struct.pack("<I", AUTH_SPICE))
    sock.sendall(encrypt_ticket(reply.pub_key, password))
    (result,) = struct.unpack("<I", recv_exactly(sock, 4))
    return result
