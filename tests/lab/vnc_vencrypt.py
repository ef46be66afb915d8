"""A minimal blocking RFB 3.8 + VeNCrypt X509None client.

Enough to check what QEMU's VNC server offers and that its TLS layer takes
(or refuses) a given client certificate; end-to-end tests can reuse it
against proxyd.  Flow: version, security types (19 = VeNCrypt), VeNCrypt
version 0.2 and ack, subtypes (260 = X509None), chosen subtype and accept
byte, TLS handshake, SecurityResult, ClientInit/ServerInit.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass, field

from .netio import recv_exactly

RFB_VERSION = b"RFB 003.008\n"
SECURITY_VENCRYPT = 19
SUBTYPE_X509NONE = 260


class VncError(Exception):
    """The server did not follow the expected handshake."""


@dataclass
class VeNCryptOffer:
    """What the server offered before TLS."""

    server_version: bytes
    security_types: list[int]
    vencrypt_version: tuple[int, int] = (0, 0)
    subtypes: list[int] = field(default_factory=list)


@dataclass
class ServerInit:
    width: int
    height: int
    name: str


def negotiate(sock: socket.socket, subtype: int = SUBTYPE_X509NONE) -> VeNCryptOffer:
    """Plain-text part of the handshake, up to the point where TLS starts."""
    version = recv_exactly(sock, 12)
    if not version.startswith(b"RFB "):
        raise VncError(f"not an RFB server: {version!r}")
    sock.sendall(RFB_VERSION)
    (count,) = recv_exactly(sock, 1)
    if count == 0:
        (length,) = struct.unpack(">I", recv_exactly(sock, 4))
        raise VncError(f"server refused: {recv_exactly(sock, length)!r}")
    offer = VeNCryptOffer(version, list(recv_exactly(sock, count)))
    if SECURITY_VENCRYPT not in offer.security_types:
        raise VncError(f"no VeNCrypt among {offer.security_types}")
    sock.sendall(bytes([SECURITY_VENCRYPT]))
    major, minor = recv_exactly(sock, 2)
    offer.vencrypt_version = (major, minor)
    sock.sendall(bytes([0, 2]))
    (status,) = recv_exactly(sock, 1)
    if status != 0:
        raise VncError(f"server refused VeNCrypt 0.2 (status {status})")
    (nsub,) = recv_exactly(sock, 1)
    offer.subtypes = list(struct.unpack(f">{nsub}I", recv_exactly(sock, 4 * nsub)))
    if subtype not in offer.subtypes:
        raise VncError(f"subtype {subtype} not offered: {offer.subtypes}")
    sock.sendall(struct.pack(">I", subtype))
    (accepted,) = recv_exactly(sock, 1)
    if accepted != 1:
        raise VncError(f"server rejected subtype {subtype}")
    return offer


def start_tls(sock: socket.socket, context: ssl.SSLContext,
              server_hostname: str = "127.0.0.1") -> ssl.SSLSocket:
    """TLS handshake after :func:`negotiate`."""
    return context.wrap_socket(sock, server_hostname=server_hostname)


def finish(tls: ssl.SSLSocket) -> ServerInit:
    """SecurityResult, ClientInit (shared) and ServerInit over the TLS layer.

    With TLS 1.3 a refused client certificate only shows here (the alert
    comes after the client's Finished): expect ssl.SSLError or EOFError.
    """
    (result,) = struct.unpack(">I", recv_exactly(tls, 4))
    if result != 0:
        raise VncError(f"SecurityResult {result}")
    tls.sendall(b"\x01")
    head = recv_exactly(tls, 24)
    width, height = struct.unpack(">HH", head[:4])
    (name_length,) = struct.unpack(">I", head[20:24])
    name = recv_exactly(tls, name_length).decode(errors="replace")
    return ServerInit(width, height, name)
