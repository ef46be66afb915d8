"""Failed token attempts per client address, so guessing tokens is slow.

A leaky bucket per address: each failure adds one, the level drains at
``burst / window`` per second, and reaching ``burst`` bars the address for
``penalty`` seconds (its attempts are then refused without asking resolverd).
IPv6 clients are grouped by /64, the block one subscriber usually holds.
Each worker keeps its own table; a client spread over N workers gets at most
N times the burst.
"""

import ipaddress
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Bucket:
    level: float
    updated: float
    barred_until: float


class FailedAttempts:
    def __init__(self, burst: int = 5, window: float = 60.0, penalty: float = 30.0, max_addresses: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = burst
        self._drain_rate = burst / window
        self._penalty = penalty
        self._max_addresses = max_addresses
        self._clock = clock
        self._buckets: "OrderedDict[str, _Bucket]" = OrderedDict()

    def barred_for(self, address: str) -> float:
        """Seconds the address must still wait; 0 when it may try."""
        bucket = self._buckets.get(_key(address))
        if bucket is None:
            return 0.0
        return max(0.0, bucket.barred_until - self._clock())

    def failed(self, address: str) -> None:
        key = _key(address)
        now = self._clock()
        bucket = self._buckets.pop(key, None) or _Bucket(0.0, now, 0.0)
        bucket.level = max(0.0, bucket.level - (now - bucket.updated) * self._drain_rate) + 1.0
        bucket.updated = now
        if bucket.level >= self._burst:
            bucket.barred_until = now + self._penalty
            bucket.level = 0.0
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_addresses:
            self._buckets.popitem(last=False)


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
