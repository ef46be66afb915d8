"""A tenant's VNC session through proxyd, blocking, over any recv/sendall stream.

proxyd does the VeNCrypt x509 part with QEMU itself and offers the tenant
RFB 3.8 with the single security type None (the token already
authenticated it).  :func:`open_session` goes from the version exchange to
ServerInit; :func:`screen` asks for the whole screen in raw encoding (QEMU's
default 32 bits per pixel) and returns its pixels.
"""

from __future__ import annotations

import struct

from .netio import ByteStream, recv_exactly
from .vnc_vencrypt import RFB_VERSION, ServerInit, VncError, finish

SECURITY_NONE = 1
ENCODING_RAW = 0
ENCODING_DESKTOP_SIZE = -223
BYTES_PER_PIXEL = 4


def open_session(stream: ByteStream) -> ServerInit:
    """Version, security None, SecurityResult, ClientInit (shared) and ServerInit."""
    version = recv_exactly(stream, 12)
    if version != RFB_VERSION:
        raise VncError(f"expected {RFB_VERSION!r}, got {version!r}")
    stream.sendall(RFB_VERSION)
    offered = recv_exactly(stream, 2)
    if offered != bytes([1, SECURITY_NONE]):
        raise VncError(f"expected security type None alone, got {offered!r}")
    stream.sendall(bytes([SECURITY_NONE]))
    return finish(stream)  # type: ignore[arg-type]  # any ByteStream will do


def screen(stream: ByteStream, width: int, height: int) -> bytes:
    """The whole screen as raw pixels, from as many FramebufferUpdates as it takes."""
    stream.sendall(struct.pack(">BxHi", 2, 1, ENCODING_RAW))  # SetEncodings: raw only
    stream.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))  # FramebufferUpdateRequest
    pixels = bytearray()
    while len(pixels) < width * height * BYTES_PER_PIXEL:
        kind, count = struct.unpack(">BxH", recv_exactly(stream, 4))
        if kind != 0:
            raise VncError(f"expected a FramebufferUpdate, got server message {kind}")
        for _ in range(count):
            _x, _y, w, h, encoding = struct.unpack(">HHHHi", recv_exactly(stream, 12))
            if encoding == ENCODING_DESKTOP_SIZE:
                continue
            if encoding != ENCODING_RAW:
                raise VncError(f"expected raw pixels, got encoding {encoding}")
            pixels += recv_exactly(stream, w * h * BYTES_PER_PIXEL)
    return bytes(pixels)
