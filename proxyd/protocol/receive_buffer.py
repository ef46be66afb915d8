"""The bytes a machine has received but not consumed yet."""

from __future__ import annotations

from typing import Optional

from .errors import Oversized


class ReceiveBuffer:
    """A byte queue that answers None while a read cannot be satisfied yet.

    ``limit`` bounds what may wait here while the handshake is incomplete;
    machines call ``check_limit`` after consuming what they could, so one
    large read that completes a handshake is never refused.
    """

    def __init__(self, limit: int) -> None:
        self._data = bytearray()
        self.limit = limit

    def __len__(self) -> int:
        return len(self._data)

    def feed(self, data: bytes) -> None:
        self._data += data

    def peek(self, size: int) -> Optional[bytes]:
        if len(self._data) < size:
            return None
        return bytes(self._data[:size])

    def take(self, size: int) -> Optional[bytes]:
        chunk = self.peek(size)
        if chunk is not None:
            del self._data[:size]
        return chunk

    def take_all(self) -> bytes:
        chunk = bytes(self._data)
        self._data.clear()
        return chunk

    def find(self, needle: bytes, start: int = 0) -> int:
        return self._data.find(needle, start)

    def check_limit(self) -> None:
        if len(self._data) > self.limit:
            raise Oversized(f"{len(self._data)} bytes pending, over the bound of {self.limit}")
