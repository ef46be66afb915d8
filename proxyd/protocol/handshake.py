"""What every handshake machine holds: the peer's bytes not parsed yet, and its own not sent yet."""

from __future__ import annotations

from .receive_buffer import ReceiveBuffer


class Handshake:
    def __init__(self, max_pending: int, first_words: bytes = b"") -> None:
        self._buffer = ReceiveBuffer(max_pending)
        self._out = bytearray(first_words)

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
