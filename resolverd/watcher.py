"""Keeps the index in step with one libvirtd: connect, full resync, then follow events; reconnect on loss.

One thread per URI owns the libvirt calls that read state.  Event callbacks run
on libvirt's event-loop thread and only queue work (a stopped domain is also
marked stopped in the index right there, without a libvirt call), so the loop
is never blocked.  A periodic full resync is the safety net for anything an
event did not say.  While the connection is down, its tokens answer
"unavailable"; after reconnecting the index of that URI is rebuilt from scratch.
"""

import logging
import queue
import secrets
import threading
import time
from typing import Optional, Set, Tuple

import libvirt

from resolverd import metadata
from resolverd.index import DomainRecord, TokenIndex
from resolverd.inventory import read_domain, secret_reader

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 3
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0
ROTATED_TOKEN_BYTES = 32

# Work items, each tagged with the generation of the connection that produced it.
_Item = Tuple[str, int, str]
_CLOSED, _DOMAIN, _SECRET, _ROTATE, _RESYNC, _STOP = "closed", "domain", "secret", "rotate", "resync", "stop"


class Watcher:
    def __init__(self, uri: str, index: TokenIndex, resync_interval: float,
                 bridge_address: Optional[str] = None) -> None:
        self.uri = uri
        self._index = index
        self._resync_interval = resync_interval
        self._bridge_address = bridge_address
        self._queue: "queue.Queue[_Item]" = queue.Queue()
        self._connection: Optional[libvirt.virConnect] = None
        self._generation = 0
        self._hostname = ""
        self._pending_rotations: Set[str] = set()
        self._pending_lock = threading.Lock()
        self._indexed = False
        self._thread = threading.Thread(target=self._run, name=f"watch {uri}", daemon=True)
        self.first_attempt = threading.Event()  # set once the first connect+resync succeeded or failed
        self.last_resync_seconds = 0.0

    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def indexed(self) -> bool:
        """Connected, and the index of this URI was rebuilt since the connection was made."""
        return self._connection is not None and self._indexed

    def connection(self) -> Optional[libvirt.virConnect]:
        return self._connection

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put((_STOP, self._generation, ""))
        self._thread.join(timeout=10)

    def reconfigure(self, bridge_address: Optional[str], resync_interval: float) -> None:
        """A reload's settings: a new bridge address is in the index after a full resync, done right away;
        the new interval counts from the next resync."""
        changed = bridge_address != self._bridge_address
        self._bridge_address, self._resync_interval = bridge_address, resync_interval
        if changed:
            self._queue.put((_RESYNC, self._generation, ""))

    def consume(self, secret_uuid: str) -> None:
        """Make a claimed one-time token dead for good: give its secret a fresh random value in libvirt.

        Done in the calling (request) thread so the claim is durable before it
        is answered; if libvirt is unreachable the rotation is retried before
        the next resync, and the index keeps the old value out meanwhile.
        """
        connection = self._connection
        try:
            if connection is None:
                raise libvirt.libvirtError("not connected")
            _rotate(connection, secret_uuid)
        except libvirt.libvirtError as exc:
            log.error("could not rotate the secret %s of a consumed one-time token on %s (%s); will retry",
                      secret_uuid, self.uri, exc)
            with self._pending_lock:
                self._pending_rotations.add(secret_uuid)
            self._queue.put((_ROTATE, self._generation, secret_uuid))

    def _run(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            try:
                self._connect()
            except libvirt.libvirtError as exc:
                log.warning("cannot connect to %s: %s; retrying in %.1f s", self.uri, exc, delay)
                self.first_attempt.set()
                if self._wait_for_stop(delay):
                    return
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_FIRST
            try:
                outcome = self._follow()
            except libvirt.libvirtError as exc:
                log.warning("lost the connection to %s while reading it: %s", self.uri, exc)
                outcome = _CLOSED
            except Exception:
                log.exception("watcher of %s failed; reconnecting", self.uri)
                outcome = _CLOSED
            finally:
                self._disconnect()
            if outcome == _STOP or (outcome == _CLOSED and self._wait_for_stop(BACKOFF_FIRST)):
                return

    def _wait_for_stop(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                kind, _, _ = self._queue.get(timeout=remaining)
            except queue.Empty:
                return False
            if kind == _STOP:
                return True

    def _connect(self) -> None:
        connection = libvirt.open(self.uri)
        self._generation += 1
        generation = self._generation
        try:
            connection.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError as exc:
            log.info("no keepalive on %s: %s", self.uri, exc.get_error_message())
        connection.registerCloseCallback(self._on_close, generation)
        for event, callback in (
                (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle),
                (libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, self._on_metadata_change),
                (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, self._on_device_change),
                (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._on_device_change)):
            connection.domainEventRegisterAny(None, event, callback, generation)
        connection.secretEventRegisterAny(None, libvirt.VIR_SECRET_EVENT_ID_LIFECYCLE, self._on_secret_lifecycle,
                                          generation)
        connection.secretEventRegisterAny(None, libvirt.VIR_SECRET_EVENT_ID_VALUE_CHANGED, self._on_secret_value,
                                          generation)
        self._hostname = connection.getHostname()
        self._connection = connection
        log.info("connected to %s (host %s)", self.uri, self._hostname)

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        self._indexed = False
        self._index.set_unavailable(self.uri)
        if connection is None:
            return
        try:
            connection.close()
        except libvirt.libvirtError:
            pass

    def _follow(self) -> str:
        """Resync, then apply queued work until the connection closes or stop() is called."""
        try:
            self._apply_pending_rotations()
            self._resync()
            self._indexed = True
        finally:
            self.first_attempt.set()
        next_resync = time.monotonic() + self._resync_interval
        while True:
            try:
                kind, generation, subject = self._queue.get(timeout=max(0.0, next_resync - time.monotonic()))
            except queue.Empty:
                kind, generation, subject = "", self._generation, ""
            if kind == _STOP:
                return _STOP
            if generation != self._generation:
                continue  # left over from an earlier connection
            try:
                if kind == _CLOSED:
                    return _CLOSED
                if kind == _DOMAIN:
                    self._refresh_domain(subject)
                elif kind == _SECRET:
                    for domain_uuid in self._index.domains_using_secret(self.uri, subject):
                        self._refresh_domain(domain_uuid)
                elif kind == _ROTATE:
                    self._apply_pending_rotations()
                elif kind == _RESYNC:
                    next_resync = time.monotonic()
                if time.monotonic() >= next_resync:
                    self._resync()
                    next_resync = time.monotonic() + self._resync_interval
            except libvirt.libvirtError as exc:
                if not self._alive():
                    log.warning("lost the connection to %s: %s", self.uri, exc)
                    return _CLOSED
                log.warning("libvirt call on %s failed: %s", self.uri, exc)

    def _alive(self) -> bool:
        try:
            return self._connection is not None and self._connection.isAlive() == 1
        except libvirt.libvirtError:
            return False

    def _resync(self) -> None:
        connection = self._require_connection()
        started = time.monotonic()
        known_secrets = {s.UUIDString(): s for s in connection.listAllSecrets()}
        reader = secret_reader(connection, known_secrets)
        records = []
        for domain in connection.listAllDomains(0):
            try:
                xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # undefined while we were listing
                raise
            record = read_domain(self.uri, xml, self._hostname, self._bridge_address, reader)
            if record is not None:
                records.append(record)
        self._index.replace_connection(self.uri, records)
        self.last_resync_seconds = time.monotonic() - started
        log.info("indexed %s: %d enabled domains, %d tokens in %.2f s", self.uri, len(records),
                 sum(len(r.consoles) for r in records), self.last_resync_seconds)

    def _refresh_domain(self, domain_uuid: str) -> None:
        connection = self._require_connection()
        try:
            xml = connection.lookupByUUIDString(domain_uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            self._index.remove_domain(self.uri, domain_uuid)
            return
        record: Optional[DomainRecord] = read_domain(self.uri, xml, self._hostname, self._bridge_address,
                                                     secret_reader(connection))
        if record is None:
            self._index.remove_domain(self.uri, domain_uuid)
        else:
            self._index.replace_domain(record)
        log.debug("refreshed domain %s on %s", domain_uuid, self.uri)

    def _apply_pending_rotations(self) -> None:
        with self._pending_lock:
            pending = sorted(self._pending_rotations)
        connection = self._require_connection()
        for secret_uuid in pending:
            try:
                _rotate(connection, secret_uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
                    raise
            with self._pending_lock:
                self._pending_rotations.discard(secret_uuid)
            log.info("rotated the secret %s of a consumed one-time token on %s", secret_uuid, self.uri)

    def _require_connection(self) -> libvirt.virConnect:
        if self._connection is None:
            raise libvirt.libvirtError("not connected")
        return self._connection

    # The callbacks below run on libvirt's event-loop thread: queue work, never call libvirt.

    def _on_close(self, _conn: libvirt.virConnect, reason: int, generation: int) -> None:
        log.warning("libvirt closed the connection to %s (reason %d)", self.uri, reason)
        self._queue.put((_CLOSED, generation, ""))

    def _on_lifecycle(self, _conn: libvirt.virConnect, domain: libvirt.virDomain, event: int, _detail: int,
                      generation: int) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self._index.mark_stopped(self.uri, domain.UUIDString())
        self._queue.put((_DOMAIN, generation, domain.UUIDString()))

    def _on_metadata_change(self, _conn: libvirt.virConnect, domain: libvirt.virDomain, _type: int,
                            namespace: Optional[str], generation: int) -> None:
        if namespace == metadata.NAMESPACE:
            self._queue.put((_DOMAIN, generation, domain.UUIDString()))

    def _on_device_change(self, _conn: libvirt.virConnect, domain: libvirt.virDomain, _alias: str,
                          generation: int) -> None:
        self._queue.put((_DOMAIN, generation, domain.UUIDString()))

    def _on_secret_lifecycle(self, _conn: libvirt.virConnect, secret: libvirt.virSecret, _event: int,
                             _detail: int, generation: int) -> None:
        self._queue.put((_SECRET, generation, secret.UUIDString()))

    def _on_secret_value(self, _conn: libvirt.virConnect, secret: libvirt.virSecret, generation: int) -> None:
        self._queue.put((_SECRET, generation, secret.UUIDString()))


def _rotate(connection: libvirt.virConnect, secret_uuid: str) -> None:
    connection.secretLookupByUUIDString(secret_uuid).setValue(
        secrets.token_urlsafe(ROTATED_TOKEN_BYTES).encode("ascii"))
