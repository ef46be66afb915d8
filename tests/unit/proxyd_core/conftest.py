"""Fixtures shared by the tests of proxyd's runtime modules."""

import socket
from typing import Iterator, Tuple

import pytest

from proxyd import channel


@pytest.fixture
def ends() -> Iterator[Tuple[socket.socket, socket.socket]]:
    """A master <-> worker channel: (master end, worker end)."""
    master_end, worker_end = channel.pair()
    yield master_end, worker_end
    master_end.close()
    worker_end.close()
