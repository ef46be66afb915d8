"""A websocket client connection seen as a byte stream, for the lab's socket-based protocol probes."""

from __future__ import annotations

import time
from typing import Tuple

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from .bootsector import BANNER, ENQ

DEADLINE = 10.0


class WsStream:
    """recv/sendall over binary websocket messages, so lab.spice_link and lab.vnc_vencrypt can speak through it."""

    def __init__(self, ws: ClientConnection, timeout: float = DEADLINE) -> None:
        self.ws = ws
        self.timeout = timeout
        self.pending = b""

    def recv(self, size: int) -> bytes:
        if not self.pending:
            message = self.ws.recv(timeout=self.timeout)
            self.pending = message if isinstance(message, bytes) else message.encode()
        chunk, self.pending = self.pending[:size], self.pending[size:]
        return chunk

    def sendall(self, data: bytes) -> None:
        self.ws.send(data)

    def recv_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            data += self.recv(size - len(data))
        return data

    def read_until(self, needle: bytes, timeout: float = DEADLINE) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while needle not in data:
            data += self.recv(65536)
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not seen in {data[-200:]!r}")
        return data


def close_of(ws: ClientConnection, timeout: float = DEADLINE) -> Tuple[int, str]:
    """Read until the server's close frame; its code and reason (AssertionError if it sent none)."""
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as closed:
        frame = closed.rcvd
        assert frame is not None, f"no close frame: {closed}"
        return frame.code, frame.reason


def banner_through(stream: WsStream) -> None:
    """The guest answers ENQ with its banner: proves the path works both ways."""
    stream.sendall(ENQ)
    stream.read_until(BANNER)


def echo_through(ws: ClientConnection, marker: bytes) -> None:
    """The lab guest echoes what a port receives; it loses bytes past its 16550's FIFO, so keep markers short."""
    assert len(marker) <= 8
    stream = WsStream(ws)
    banner_through(stream)
    stream.sendall(marker)
    stream.read_until(marker)
