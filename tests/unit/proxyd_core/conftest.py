"""Fixtures shared by the tests of proxyd's runtime modules."""

import asyncio
import socket
from typing import Iterator, Tuple

import pytest
import uvloop

from proxyd import channel


@pytest.fixture
def ends() -> Iterator[Tuple[socket.socket, socket.socket]]:
    """A master <-> worker channel: (master end, worker end)."""
    master_end, worker_end = channel.pair()
    yield master_end, worker_end
    master_end.close()
    worker_end.close()


@pytest.fixture(autouse=True)
def worker_event_loop() -> Iterator[None]:
    """asyncio.run() in these tests runs uvloop's event loop, as proxyd's workers do."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    yield
    asyncio.set_event_loop_policy(None)
