"""Console legs over real loopback socket pairs, and waiting on the event loop, for the relay's tests."""

import asyncio
import socket
import time
from typing import Callable, Tuple, Type

from proxyd.relay import ConsoleLeg

READ_SIZE = 256 * 1024  # the most an asyncio socket transport reads at once


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the loop run until ``condition`` holds; AssertionError after ``timeout`` (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        await asyncio.sleep(0.005)


async def leg_pair(kind: Type[ConsoleLeg] = ConsoleLeg) -> Tuple[ConsoleLeg, socket.socket]:
    """A ConsoleLeg (or ``kind``) on one end of a socket pair, and the other end for the test to play the peer."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    _, leg = await asyncio.get_running_loop().connect_accepted_socket(kind, ours)
    return leg, theirs
