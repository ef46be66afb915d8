"""The benchmark's RFB 3.8 client for its QEMU VNC mode, over any stream with ``send``/``exact``/``discard``.

Through proxyd the tenant sees security type None (the token authenticated
it); straight to QEMU it speaks VeNCrypt X509None and starts TLS in the
middle of the stream, as proxyd does.  After ServerInit it asks for raw
pixels only, so an update's size is known: width x height x bytes per pixel.
"""

import struct
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

RFB_VERSION = b"RFB 003.008\n"
SECURITY_NONE, SECURITY_VENCRYPT = 1, 19
SUBTYPE_X509NONE = 260
ENCODING_RAW, ENCODING_DESKTOP_SIZE, ENCODING_EXT_KEY_EVENT = 0, -223, -258
FRAMEBUFFER_UPDATE = 0


class Stream(Protocol):
    def send(self, data: bytes) -> None: ...

    async def exact(self, size: int) -> bytes: ...

    async def discard(self, size: int) -> None: ...


class RfbError(RuntimeError):
    """The server did not follow the handshake or sent something this client does not ask for."""


@dataclass(frozen=True)
class Screen:
    width: int
    height: int
    bytes_per_pixel: int


async def open_through_proxy(stream: Stream) -> Screen:
    """Version, the single security type None, then ServerInit."""
    await _versions(stream)
    offered = await stream.exact(2)
    if offered != bytes([1, SECURITY_NONE]):
        raise RfbError(f"expected security type None alone, got {offered!r}")
    stream.send(bytes([SECURITY_NONE]))
    return await _finish(stream)


async def open_vencrypt(stream: Stream, start_tls: Callable[[], Awaitable[None]]) -> Screen:
    """Version, VeNCrypt 0.2 with X509None, ``start_tls``, then ServerInit inside TLS."""
    await _versions(stream)
    (count,) = await stream.exact(1)
    offered = await stream.exact(count)
    if SECURITY_VENCRYPT not in offered:
        raise RfbError(f"no VeNCrypt among the security types {list(offered)}")
    stream.send(bytes([SECURITY_VENCRYPT]))
    await stream.exact(2)  # the server's VeNCrypt version
    stream.send(bytes([0, 2]))
    if await stream.exact(1) != b"\0":
        raise RfbError("VeNCrypt 0.2 refused")
    (count,) = await stream.exact(1)
    subtypes = struct.unpack(f">{count}I", await stream.exact(4 * count))
    if SUBTYPE_X509NONE not in subtypes:
        raise RfbError(f"no X509None among the VeNCrypt subtypes {subtypes}")
    stream.send(struct.pack(">I", SUBTYPE_X509NONE))
    if await stream.exact(1) != b"\1":
        raise RfbError("X509None refused")
    await start_tls()
    return await _finish(stream)


async def update(stream: Stream, screen: Screen, width: int, height: int) -> int:
    """Ask for the top left ``width`` x ``height`` pixels (not incremental); bytes of the answer, when all came."""
    stream.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    kind, rectangles = struct.unpack(">BxH", await stream.exact(4))
    if kind != FRAMEBUFFER_UPDATE:
        raise RfbError(f"expected a FramebufferUpdate, got server message {kind}")
    received = 4
    for _ in range(rectangles):
        _, _, w, h, encoding = struct.unpack(">HHHHi", await stream.exact(12))
        received += 12
        if encoding == ENCODING_DESKTOP_SIZE:
            continue
        if encoding != ENCODING_RAW:
            raise RfbError(f"expected raw pixels, got encoding {encoding}")
        await stream.discard(w * h * screen.bytes_per_pixel)
        received += w * h * screen.bytes_per_pixel
    return received


async def ping(stream: Stream) -> None:
    """A round trip through QEMU's VNC server that waits for no screen refresh.

    QEMU acknowledges SetEncodings naming its extended key event pseudo-encoding at once, with a
    FramebufferUpdate that holds that pseudo-rectangle alone; screen updates wait for its refresh timer,
    which backs off to seconds on a still screen.
    """
    stream.send(struct.pack(">BxHii", 2, 2, ENCODING_RAW, ENCODING_EXT_KEY_EVENT))
    kind, rectangles = struct.unpack(">BxH", await stream.exact(4))
    _, _, _, _, encoding = struct.unpack(">HHHHi", await stream.exact(12))
    if (kind, rectangles, encoding) != (FRAMEBUFFER_UPDATE, 1, ENCODING_EXT_KEY_EVENT):
        raise RfbError(f"expected the extended key event acknowledgement, got message {kind} with {rectangles} "
                       f"rectangles, encoding {encoding}")


async def _versions(stream: Stream) -> None:
    version = await stream.exact(12)
    if not version.startswith(b"RFB "):
        raise RfbError(f"not an RFB server: {version!r}")
    stream.send(RFB_VERSION)


async def _finish(stream: Stream) -> Screen:
    """SecurityResult, ClientInit (shared), ServerInit; then raw encoding only."""
    if await stream.exact(4) != b"\0\0\0\0":
        raise RfbError("SecurityResult: failed")
    stream.send(b"\x01")
    head = await stream.exact(24)
    width, height, bits_per_pixel = struct.unpack(">HHB", head[:5])
    (name_length,) = struct.unpack(">I", head[20:24])
    await stream.discard(name_length)
    stream.send(struct.pack(">BxHi", 2, 1, ENCODING_RAW))  # SetEncodings
    return Screen(width, height, bits_per_pixel // 8)
