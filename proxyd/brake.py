"""The failed-token brake across workers: every failure counts, whichever worker saw it.

Each worker counts its own failures in a FailedAttempts table, as a lone
worker would, and reports each one to the master (kind ``brake-failed``).
The master counts them all in its own table; when an address becomes (or
stays) barred there, it tells every worker (kind ``brake-barred``, with
the seconds left), and each worker bars the address in its table too.  So
a client spread over N workers is stopped after the same burst as one that
hits a single worker, give or take the attempts already under way when
the master's word arrives.
"""

import logging
import socket
from typing import Callable, Iterable

from proxyd import channel
from proxyd.channel import Message
from proxyd.ratelimit import FailedAttempts

log = logging.getLogger(__name__)

FAILED = "brake-failed"
BARRED = "brake-barred"
KINDS = frozenset({FAILED, BARRED})


class WorkerBrake(FailedAttempts):
    """A worker's table, whose failures also go to the master and which takes the master's bars."""

    def __init__(self, link: socket.socket) -> None:
        super().__init__()
        self._link = link

    def failed(self, address: str) -> None:
        super().failed(address)
        if not channel.send(self._link, {"kind": FAILED, "address": address}):
            log.warning("the master did not take a failed attempt of %s; only this worker counts it", address)

    def on_message(self, message: Message) -> None:
        """A ``brake-barred`` message from the master."""
        address, seconds = message.get("address"), message.get("seconds")
        if isinstance(address, str) and isinstance(seconds, (int, float)) and seconds > 0:
            self.bar(address, float(seconds))
        else:
            log.warning("malformed %s message from the master: %r", BARRED, message)


class MasterBrake:
    """The master's table of every worker's failures."""

    def __init__(self, attempts: FailedAttempts, links: Callable[[], Iterable[socket.socket]]) -> None:
        """``links``: the channels of the workers alive when a bar is to be announced."""
        self._attempts = attempts
        self._links = links

    def on_message(self, message: Message) -> None:
        """A ``brake-failed`` message from a worker."""
        address = message.get("address")
        if not isinstance(address, str):
            log.warning("malformed %s message from a worker: %r", FAILED, message)
            return
        before = self._attempts.barred_for(address)
        self._attempts.failed(address)
        seconds = self._attempts.barred_for(address)
        if seconds > before:
            log.info("too many failed token attempts from %s: its attempts are refused for %.0f s", address,
                     seconds)
            for link in self._links():
                channel.send(link, {"kind": BARRED, "address": address, "seconds": seconds})
