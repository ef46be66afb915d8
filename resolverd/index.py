"""The in-memory index from token values to console targets, shared by the watchers and the API.

Entries are keyed by the SHA-256 digest of the token, so a look-up is a hash
probe on a digest and never a character-by-character comparison of the secret;
the hit is then confirmed with ``hmac.compare_digest``.  The watchers replace a
domain's entries as a whole whenever libvirt says something changed, so the
index always mirrors the last state read from libvirt.
"""

import enum
import hashlib
import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

from resolverd.targets import Target

DomainKey = Tuple[str, str]  # (connection URI, domain UUID)


class Outcome(enum.Enum):
    """What a look-up found; every value but OK is answered like an unknown token."""

    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    CONSUMED = "consumed"
    NOT_RUNNING = "not_running"
    UNROUTABLE = "unroutable"
    AMBIGUOUS = "ambiguous"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class IndexedConsole:
    """One console of one domain, with the token value read from its libvirt secret."""

    token: bytes
    uri: str
    domain_uuid: str
    domain_name: str
    console_type: str
    index: int
    secret_uuid: str
    once: bool
    expires: Optional[datetime]
    running: bool
    target: Optional[Target]
    unroutable: Optional[str] = None  # why a running domain's console has no target


@dataclass(frozen=True)
class DomainRecord:
    """Everything the index holds about one domain that carries console metadata."""

    uri: str
    domain_uuid: str
    domain_name: str
    running: bool
    secret_uuids: FrozenSet[str]  # every secret the metadata names, read or not
    consoles: Tuple[IndexedConsole, ...]

    @property
    def key(self) -> DomainKey:
        return (self.uri, self.domain_uuid)


@dataclass(frozen=True)
class Lookup:
    outcome: Outcome
    console: Optional[IndexedConsole] = None


def token_digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class TokenIndex:
    """The watchers write, the request threads read and claim one-time tokens.

    Writers hold a lock and publish a new digest table (copy on write), so a
    look-up reads a consistent snapshot without taking the lock: a full
    resync never shows readers a half-rebuilt table, and request threads do
    not queue behind each other.  Only claiming a one-time token takes the lock.
    """

    def __init__(self, consumed_memory: int = 65536) -> None:
        self._lock = threading.Lock()
        self._domains: Dict[DomainKey, DomainRecord] = {}
        self._by_digest: Dict[bytes, Tuple[IndexedConsole, ...]] = {}
        self._unavailable: FrozenSet[str] = frozenset()
        # Digests of claimed one-time tokens: keeps them out of the index even
        # if a read that raced with the claim still saw the old secret value,
        # and lets a second attempt be logged as "consumed".
        self._consumed: "OrderedDict[bytes, None]" = OrderedDict()
        self._consumed_memory = consumed_memory

    def replace_domain(self, record: DomainRecord) -> None:
        with self._lock:
            table = dict(self._by_digest)
            self._drop(table, record.key)
            self._add(table, record)
            self._by_digest = table

    def remove_domain(self, uri: str, domain_uuid: str) -> None:
        with self._lock:
            table = dict(self._by_digest)
            self._drop(table, (uri, domain_uuid))
            self._by_digest = table

    def mark_stopped(self, uri: str, domain_uuid: str) -> None:
        """Stop resolving a domain's tokens at once, before libvirt is asked for the details."""
        with self._lock:
            record = self._domains.get((uri, domain_uuid))
            if record is None or not record.running:
                return
            table = dict(self._by_digest)
            self._drop(table, record.key)
            self._add(table, replace(record, running=False, consoles=tuple(
                replace(c, running=False, target=None, unroutable=None) for c in record.consoles)))
            self._by_digest = table

    def replace_connection(self, uri: str, records: Iterable[DomainRecord]) -> None:
        """Swap every domain of ``uri`` for ``records`` (a full resync) and mark it available."""
        with self._lock:
            table = dict(self._by_digest)
            for key in [k for k in self._domains if k[0] == uri]:
                self._drop(table, key)
            for record in records:
                self._add(table, record)
            self._by_digest = table
            self._unavailable = self._unavailable - {uri}

    def set_unavailable(self, uri: str) -> None:
        """The connection is down: its tokens answer "unavailable" until the next full resync."""
        with self._lock:
            self._unavailable = self._unavailable | {uri}

    def domains_using_secret(self, uri: str, secret_uuid: str) -> List[str]:
        with self._lock:
            return [r.domain_uuid for r in self._domains.values()
                    if r.uri == uri and secret_uuid in r.secret_uuids]

    def counts(self) -> Mapping[str, int]:
        with self._lock:
            running = sum(1 for r in self._domains.values() if r.running)
            return {"tokens": len(self._by_digest), "domains_running": running,
                    "domains_stopped": len(self._domains) - running}

    def peek(self, token: str, now: datetime) -> Lookup:
        """Find ``token`` without claiming it, one-time or not (for writing a remote-viewer file, say)."""
        presented = token.encode("utf-8", "surrogateescape")
        return self._evaluate(token_digest(presented), presented, now)

    def lookup(self, token: str, now: datetime) -> Lookup:
        """Find ``token``; a one-time token is claimed here, so only one caller ever gets OK for it."""
        presented = token.encode("utf-8", "surrogateescape")
        digest = token_digest(presented)
        found = self._evaluate(digest, presented, now)
        if found.outcome is not Outcome.OK or found.console is None or not found.console.once:
            return found
        with self._lock:
            found = self._evaluate(digest, presented, now)  # again, now that no claim can run alongside
            if found.outcome is Outcome.OK:
                self._consume(digest)
            return found

    def _evaluate(self, digest: bytes, presented: bytes, now: datetime) -> Lookup:
        candidates = self._by_digest.get(digest)
        if not candidates or not hmac.compare_digest(candidates[0].token, presented):
            return Lookup(Outcome.CONSUMED if digest in self._consumed else Outcome.UNKNOWN)
        console = candidates[0]
        if len(candidates) > 1:
            return Lookup(Outcome.AMBIGUOUS, console)
        if console.uri in self._unavailable:
            return Lookup(Outcome.UNAVAILABLE, console)
        if not console.running:
            return Lookup(Outcome.NOT_RUNNING, console)
        if console.expires is not None and now >= console.expires:
            return Lookup(Outcome.EXPIRED, console)
        if console.target is None:
            return Lookup(Outcome.UNROUTABLE, console)
        return Lookup(Outcome.OK, console)

    def _consume(self, digest: bytes) -> None:
        table = dict(self._by_digest)
        for console in table.pop(digest):
            record = self._domains[(console.uri, console.domain_uuid)]
            self._domains[record.key] = replace(
                record, consoles=tuple(c for c in record.consoles if c is not console))
        self._by_digest = table
        self._consumed[digest] = None
        while len(self._consumed) > self._consumed_memory:
            self._consumed.popitem(last=False)

    def _add(self, table: Dict[bytes, Tuple[IndexedConsole, ...]], record: DomainRecord) -> None:
        kept = tuple(c for c in record.consoles if token_digest(c.token) not in self._consumed)
        self._domains[record.key] = replace(record, consoles=kept)
        for console in kept:
            digest = token_digest(console.token)
            table[digest] = table.get(digest, ()) + (console,)

    def _drop(self, table: Dict[bytes, Tuple[IndexedConsole, ...]], key: DomainKey) -> None:
        record = self._domains.pop(key, None)
        if record is None:
            return
        for console in record.consoles:
            digest = token_digest(console.token)
            remaining = tuple(c for c in table.get(digest, ()) if c is not console)
            if remaining:
                table[digest] = remaining
            else:
                table.pop(digest, None)
