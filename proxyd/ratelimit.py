"""Failed token attempts per client address, so guessing tokens is slow.

``burst`` failures within ``window`` seconds bar the address for ``penalty``
seconds: its attempts are then refused without asking resolverd (and count
as failures themselves, so hammering keeps the bar up).  IPv6 clients are
grouped by /64, the block one subscriber usually holds.  Every worker and
the master keep such a table; proxyd.brake makes the bar hold across workers.
"""

import ipaddress
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Deque


@dataclass
class _Record:
    failures: Deque[float] = field(default_factory=deque)
    barred_until: float = 0.0


class FailedAttempts:
    def __init__(self, burst: int = 5, window: float = 60.0, penalty: float = 30.0, max_addresses: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = burst
        self._window = window
        self._penalty = penalty
        self._max_addresses = max_addresses
        self._clock = clock
        self._records: "OrderedDict[str, _Record]" = OrderedDict()

    def barred_for(self, address: str) -> float:
        """Seconds the address must still wait; 0 when it may try."""
        record = self._records.get(_key(address))
        if record is None:
            return 0.0
        return max(0.0, record.barred_until - self._clock())

    def bar(self, address: str, seconds: float) -> None:
        """Refuse the address for ``seconds`` from now (or longer, if it is barred longer already)."""
        key = _key(address)
        record = self._records.pop(key, None) or _Record()
        record.barred_until = max(record.barred_until, self._clock() + seconds)
        self._store(key, record)

    def failed(self, address: str) -> None:
        key = _key(address)
        now = self._clock()
        record = self._records.pop(key, None) or _Record()
        failures = record.failures
        failures.append(now)
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if len(failures) >= self._burst:
            record.barred_until = now + self._penalty
            failures.clear()
        self._store(key, record)

    def _store(self, key: str, record: _Record) -> None:
        """(Re)insert as the most recent record; the least recent ones go beyond max_addresses."""
        self._records[key] = record
        while len(self._records) > self._max_addresses:
            self._records.popitem(last=False)


def _key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
