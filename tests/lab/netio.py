"""Blocking socket helpers shared by the lab's protocol probes."""

from __future__ import annotations

import socket


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    """Read exactly ``count`` bytes or raise EOFError."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"peer closed after {len(data)} of {count} bytes")
        data += chunk
    return data
