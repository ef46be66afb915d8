"""Short-lived, single-use tickets that let the proxy open one console bridge session.

A ticket is handed out with a successful token look-up of a pty console and
names the console it opens; the bridge redeems it once.  Tickets are random
(256 bits), kept by digest, and compared in constant time like tokens.
"""

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

TICKET_BYTES = 32
MAX_TICKET_LENGTH = 128


@dataclass(frozen=True)
class BridgeRoute:
    """The console a ticket opens."""

    uri: str
    domain_uuid: str
    device: str


class TicketBook:
    def __init__(self, lifetime: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._tickets: Dict[bytes, Tuple[str, float, BridgeRoute]] = {}

    def issue(self, route: BridgeRoute) -> str:
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        now = self._clock()
        with self._lock:
            for digest in [d for d, (_, deadline, _) in self._tickets.items() if deadline <= now]:
                del self._tickets[digest]
            self._tickets[_digest(ticket)] = (ticket, now + self._lifetime, route)
        return ticket

    def redeem(self, ticket: str) -> Optional[BridgeRoute]:
        """The route of a valid ticket, which is spent by this call; None for anything else."""
        if not ticket or len(ticket) > MAX_TICKET_LENGTH:
            return None
        with self._lock:
            entry = self._tickets.pop(_digest(ticket), None)
        if entry is None:
            return None
        known, deadline, route = entry
        presented = ticket.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(known.encode(), presented) or self._clock() >= deadline:
            return None
        return route

    def __len__(self) -> int:
        with self._lock:
            return len(self._tickets)


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf-8", "surrogateescape")).digest()
