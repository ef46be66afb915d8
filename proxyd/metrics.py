"""proxyd's metrics: counted in each worker, summed by the master, rendered for Prometheus.

A worker's event-loop thread is the only writer of its counters, so they
need no lock.  Workers send a JSON snapshot to the master when something
changed (proxyd.channel); the master keeps the last snapshot of each live
worker and folds a dead worker's counters into a retired total, so counters
never go backwards when a worker is replaced.
"""

import enum
import math
from bisect import bisect_left
from collections import Counter
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from resolverd.metrics import Family, render

CONSOLE_TYPES = ("vnc", "spice", "serial")
TO_CONSOLE, TO_CLIENT = "to_console", "to_client"
RESOLVER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Snapshot = Dict[str, Any]


class Failure(str, enum.Enum):
    """Why a connection never became a console session (the ``reason`` label)."""

    TLS = "tls"
    TIMEOUT = "timeout"
    CLIENT_GONE = "client_gone"
    NOT_WEBSOCKET = "not_websocket"
    CLIENT_PROTOCOL = "client_protocol"
    BAD_PATH = "bad_path"
    ORIGIN = "origin"
    NO_TOKEN = "no_token"
    UNKNOWN_TOKEN = "unknown_token"
    TOKEN_SPENT = "token_spent"
    UNKNOWN_SESSION = "unknown_session"
    RATE_LIMITED = "rate_limited"
    RESOLVER_UNAVAILABLE = "resolver_unavailable"
    RESOLVER_ANSWER = "resolver_answer"
    SESSION_TABLE = "session_table"
    POLICY = "policy"
    BACKEND_UNREACHABLE = "backend_unreachable"
    BACKEND_TLS = "backend_tls"
    BACKEND_PROTOCOL = "backend_protocol"
    DRAINING = "draining"


class WorkerMetrics:
    def __init__(self) -> None:
        self.sessions_open: Counter = Counter()
        self.sessions_total: Counter = Counter()
        self.channels_open: Counter = Counter()  # relayed connections: a SPICE session has one per channel
        self.channels_total: Counter = Counter()
        self.bytes: Counter = Counter()  # (console type, direction) -> bytes
        self.failures: Counter = Counter()  # Failure value -> count
        self.resolver_buckets = [0] * (len(RESOLVER_BUCKETS) + 1)
        self.resolver_sum = 0.0
        self.resolver_count = 0

    def relay_started(self, kind: str, secondary: bool) -> None:
        """``secondary``: a SPICE channel other than main, a channel of the session its main channel counted."""
        self.channels_open[kind] += 1
        self.channels_total[kind] += 1
        if not secondary:
            self.sessions_open[kind] += 1
            self.sessions_total[kind] += 1

    def relay_moved(self, kind: str, to_console: int, to_client: int) -> None:
        self.bytes[(kind, TO_CONSOLE)] += to_console
        self.bytes[(kind, TO_CLIENT)] += to_client

    def relay_ended(self, kind: str, secondary: bool) -> None:
        self.channels_open[kind] -= 1
        if not secondary:
            self.sessions_open[kind] -= 1

    def failed(self, reason: Failure) -> None:
        self.failures[reason.value] += 1

    def resolver_latency(self, seconds: float) -> None:
        self.resolver_buckets[bisect_left(RESOLVER_BUCKETS, seconds)] += 1
        self.resolver_sum += seconds
        self.resolver_count += 1

    def snapshot(self) -> Snapshot:
        """Counters as JSON."""
        return {
            "open": dict(self.sessions_open),
            "sessions": dict(self.sessions_total),
            "channels_open": dict(self.channels_open),
            "channels": dict(self.channels_total),
            "bytes": [[kind, direction, n] for (kind, direction), n in self.bytes.items()],
            "failures": dict(self.failures),
            "resolver": {"buckets": list(self.resolver_buckets), "sum": self.resolver_sum,
                         "count": self.resolver_count},
        }


def _empty() -> Snapshot:
    return WorkerMetrics().snapshot()


def _add_counters(total: Snapshot, part: Snapshot) -> None:
    """Add the counters (not the gauges) of ``part`` into ``total``."""
    for key in ("sessions", "channels", "failures"):
        for label, n in part[key].items():
            total[key][label] = total[key].get(label, 0) + n
    byte_totals = {(kind, direction): n for kind, direction, n in total["bytes"]}
    for kind, direction, n in part["bytes"]:
        byte_totals[(kind, direction)] = byte_totals.get((kind, direction), 0) + n
    total["bytes"] = [[kind, direction, n] for (kind, direction), n in byte_totals.items()]
    resolver, more = total["resolver"], part["resolver"]
    resolver["buckets"] = [a + b for a, b in zip(resolver["buckets"], more["buckets"])]
    resolver["sum"] += more["sum"]
    resolver["count"] += more["count"]


def valid_snapshot(snapshot: Any) -> bool:
    """The shape a worker sends; anything else is dropped by the master."""
    try:
        return (all(isinstance(snapshot[key], dict) for key in ("open", "sessions", "channels_open", "channels",
                                                                "failures"))
                and all(len(row) == 3 for row in snapshot["bytes"])
                and len(snapshot["resolver"]["buckets"]) == len(RESOLVER_BUCKETS) + 1
                and isinstance(snapshot["resolver"]["count"], int))
    except (KeyError, TypeError):
        return False


class Aggregate:
    """The master's view: the last snapshot of every live worker plus what dead workers counted."""

    def __init__(self) -> None:
        self._live: Dict[int, Snapshot] = {}
        self._retired = _empty()
        self.worker_restarts = 0

    def update(self, pid: int, snapshot: Snapshot) -> None:
        self._live[pid] = snapshot

    def retire(self, pid: int) -> None:
        snapshot = self._live.pop(pid, None)
        if snapshot is not None:
            _add_counters(self._retired, snapshot)

    def total(self) -> Snapshot:
        total = _empty()
        _add_counters(total, self._retired)
        for snapshot in self._live.values():
            _add_counters(total, snapshot)
            for gauge in ("open", "channels_open"):
                for kind, n in snapshot[gauge].items():
                    total[gauge][kind] = total[gauge].get(kind, 0) + n
        return total

    def render(self, workers_alive: int) -> str:
        total = self.total()
        families = [
            Family("proxyd_sessions_open", "gauge",
                   "Console sessions open now, by console type (a SPICE session counts once, by its main channel).",
                   _by_type(total["open"])),
            Family("proxyd_sessions_total", "counter", "Console sessions opened, by console type.",
                   _by_type(total["sessions"])),
            Family("proxyd_channels_open", "gauge",
                   "Connections relayed now, by console type: one per session, one per channel of a SPICE session.",
                   _by_type(total["channels_open"])),
            Family("proxyd_channels_total", "counter", "Connections relayed, by console type.",
                   _by_type(total["channels"])),
            Family("proxyd_bytes_total", "counter",
                   "Console bytes relayed, by console type and direction (to_console: tenant to QEMU).",
                   [({"type": kind, "direction": direction}, float(n))
                    for kind, direction, n in sorted(total["bytes"])]),
            Family("proxyd_handshake_failures_total", "counter",
                   "Connections that never became a console session, by reason.",
                   [({"reason": reason.value}, float(total["failures"].get(reason.value, 0))) for reason in Failure]),
            Family("proxyd_workers", "gauge", "Worker processes running.", [({}, float(workers_alive))]),
            Family("proxyd_worker_restarts_total", "counter", "Workers replaced after they died.",
                   [({}, float(self.worker_restarts))]),
        ]
        resolver = total["resolver"]
        return render(families) + render_histogram(
            "proxyd_resolver_latency_seconds", "Time resolverd took to answer a token look-up.",
            RESOLVER_BUCKETS, resolver["buckets"], resolver["sum"], resolver["count"])


def _by_type(counts: Dict[str, int]) -> List[Tuple[Dict[str, str], float]]:
    kinds: Iterable[str] = sorted(set(CONSOLE_TYPES) | set(counts))
    return [({"type": kind}, float(counts.get(kind, 0))) for kind in kinds]


def render_histogram(name: str, help_text: str, bounds: Sequence[float], counts: Sequence[int],
                     total: float, count: int) -> str:
    """A histogram family; ``counts`` has one entry per bound plus the overflow, not cumulated."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    cumulative = 0
    for bound, n in zip(list(bounds) + [math.inf], counts):
        cumulative += n
        le = "+Inf" if math.isinf(bound) else repr(float(bound))
        lines.append(f'{name}_bucket{{le="{le}"}} {cumulative}')
    lines.append(f"{name}_sum {repr(float(total))}")
    lines.append(f"{name}_count {count}")
    return "\n".join(lines) + "\n"
