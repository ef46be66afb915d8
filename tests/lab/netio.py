"""Blocking socket helpers shared by the lab's protocol probes."""

from __future__ import annotations

from typing import Protocol


class ByteStream(Protocol):
    """A socket, a TLS socket, or a websocket seen as one (:class:`lab.wsstream.WsStream`)."""

    def recv(self, size: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...


def recv_exactly(sock: ByteStream, count: int) -> bytes:
    """Read exactly ``count`` bytes or raise EOFError."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"peer closed after {len(data)} of {count} bytes")
        data += chunk
    return data
