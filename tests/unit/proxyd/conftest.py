"""Helpers for the protocol machines' tests."""

from __future__ import annotations

from typing import Callable, Iterator, List

import pytest

from proxyd.protocol.spice_link import TicketKey


def _chunkings(data: bytes) -> Iterator[List[bytes]]:
    """``data`` whole, split in two at every byte boundary, and one byte at a time."""
    yield [data]
    for cut in range(len(data) + 1):
        yield [data[:cut], data[cut:]]
    yield [data[i:i + 1] for i in range(len(data))]


@pytest.fixture
def chunkings() -> Callable[[bytes], Iterator[List[bytes]]]:
    return _chunkings


@pytest.fixture(scope="session")
def proxy_key() -> TicketKey:
    return TicketKey.generate()


@pytest.fixture(scope="session")
def qemu_key() -> TicketKey:
    return TicketKey.generate()
