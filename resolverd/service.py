"""The resolver behind the HTTP API: the index, one watcher per libvirt URI, and the console bridge.

``start()`` must run in the process that serves requests (libvirt's event loop
and connections do not survive a fork); it is idempotent so both the gunicorn
hook and the first request may call it.
"""

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

import libvirt

from resolverd import eventloop, tls, vvfile
from resolverd.bridge import ConsoleBridge
from resolverd.index import IndexedConsole, Lookup, Outcome, TokenIndex
from resolverd.logs import token_ref
from resolverd.metrics import CounterSet, Family
from resolverd.settings import Address, Settings
from resolverd.tickets import BridgeRoute, TicketBook
from resolverd.tls import SwappableContext
from resolverd.watcher import Watcher

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0

_FAILURE_LOG = {
    Outcome.UNKNOWN: "unknown token",
    Outcome.EXPIRED: "expired token",
    Outcome.CONSUMED: "one-time token already consumed",
    Outcome.NOT_RUNNING: "domain not running",
    Outcome.UNROUTABLE: "console not reachable",
    Outcome.AMBIGUOUS: "token shared by several consoles, refused",
    Outcome.UNAVAILABLE: "libvirt connection down, index being rebuilt",
}


@dataclass(frozen=True)
class Resolution:
    outcome: Outcome
    document: Optional[Dict[str, Any]] = None  # the JSON answer, for Outcome.OK only


class Resolver:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 context: Optional[SwappableContext] = None) -> None:
        """``context``: the console bridge's TLS context when already loaded (else read from the settings' files)."""
        self._settings = settings
        self._context = context
        self._clock = clock
        self._proxy = _proxy_identity(settings)
        self.index = TokenIndex()
        self.tickets = TicketBook()
        self.lookups = CounterSet("resolverd_lookups_total", "Token look-ups by outcome.", "outcome",
                                  [o.value for o in Outcome])
        self.claims = CounterSet("resolverd_claims_total", "Token claims by outcome.", "outcome",
                                 [o.value for o in Outcome])
        self._watchers: Dict[str, Watcher] = {}
        self._bridge: Optional[ConsoleBridge] = None
        self._start_lock = threading.Lock()
        self._started_in: Optional[int] = None
        self._ready = False

    def start(self) -> None:
        if self._started_in == os.getpid():
            return
        with self._start_lock:
            if self._started_in is not None:
                if self._started_in != os.getpid():
                    raise RuntimeError("resolverd was started before a fork; start it in the serving process")
                return
            eventloop.ensure_running()
            settings = self._settings
            bridge_address = None
            if settings.console_listen is not None:
                assert settings.tls_cert and settings.tls_key and settings.tls_ca
                context = self._context or SwappableContext(
                    tls.server_context(settings.tls_cert, settings.tls_key, settings.tls_ca))
                self._bridge = ConsoleBridge(settings.console_listen, context, self.tickets, self._connection_for,
                                             settings.console_advertise)
                self._bridge.start()
                bridge_address = self._bridge.address
            for uri in settings.connect:
                self._watchers[uri] = Watcher(uri, self.index, settings.resync_interval, bridge_address)
                self._watchers[uri].start()
            self._started_in = os.getpid()

    def reconfigure(self, settings: Settings) -> None:
        """A reload's settings, applied in place; the TLS context changes in the SwappableContext it was given."""
        self._proxy = _proxy_identity(settings)
        bridge_address = None
        if self._bridge is not None:
            self._bridge.advertise(settings.console_advertise)
            bridge_address = self._bridge.address
        for watcher in self._watchers.values():
            watcher.reconfigure(bridge_address, settings.resync_interval)
        self._settings = settings

    def stop(self) -> None:
        for watcher in self._watchers.values():
            watcher.stop()
        if self._bridge is not None:
            self._bridge.stop()

    def wait_ready(self, timeout: float) -> bool:
        """True once every connection was tried at least once (connected and indexed, or failed)."""
        if not self._ready:
            self._ready = all(w.first_attempt.wait(timeout) for w in self._watchers.values())
        return self._ready

    def resolve(self, token: str, client: str, claim: bool) -> Resolution:
        """The console of ``token``; a one-time token is claimed by this look-up if ``claim``, else left unclaimed."""
        self.wait_ready(READY_TIMEOUT)
        found = (self.index.lookup if claim else self.index.peek)(token, self._clock())
        self.lookups.inc(found.outcome.value)
        console = found.console
        if found.outcome is not Outcome.OK:
            _log_refusal("lookup", token, client, found)
            return Resolution(found.outcome)
        assert console is not None and console.target is not None
        if console.once and claim:
            self._watchers[console.uri].consume(console.secret_uuid)
        ticket = None
        if console.target.bridge_device is not None:
            ticket = self.tickets.issue(BridgeRoute(console.uri, console.domain_uuid, console.target.bridge_device))
        # Successful look-ups come from the proxy, which logs the tenant's session itself: at INFO they
        # would cost a third of the throughput (threads queue on the log handler's lock).
        once = ""
        if console.once:
            once = " (one-time, now consumed)" if claim else " (one-time, to be claimed)"
        log.log(logging.INFO if console.once else logging.DEBUG, "lookup %s from %s: %s %s %d on %s -> %s%s",
                token_ref(token), client, console.domain_name, console.console_type, console.index, console.uri,
                console.target.address, once)
        return Resolution(Outcome.OK, answer(console, ticket, claim))

    def claim(self, token: str, client: str) -> Outcome:
        """Claim ``token`` for one session: OK for exactly one caller of a one-time token (and any of others)."""
        self.wait_ready(READY_TIMEOUT)
        found = self.index.lookup(token, self._clock())
        self.claims.inc(found.outcome.value)
        console = found.console
        if found.outcome is not Outcome.OK:
            _log_refusal("claim of", token, client, found)
            return found.outcome
        assert console is not None
        if console.once:
            self._watchers[console.uri].consume(console.secret_uuid)
            log.info("claim of %s from %s: %s %s %d on %s, one-time token now consumed", token_ref(token), client,
                     console.domain_name, console.console_type, console.index, console.uri)
        return Outcome.OK

    @property
    def writes_viewer_files(self) -> bool:
        return self._proxy is not None

    def viewer_file(self, token: str, client: str, connect_proxy: bool) -> Tuple[Outcome, Optional[str]]:
        """(outcome, the remote-viewer file) for a SPICE token; a one-time token is not claimed by this."""
        assert self._proxy is not None
        self.wait_ready(READY_TIMEOUT)
        found = self.index.peek(token, self._clock())
        console = found.console
        if found.outcome is not Outcome.OK or console is None or console.console_type != "spice":
            outcome = Outcome.UNKNOWN if found.outcome is Outcome.OK else found.outcome
            reason = "not a SPICE console" if found.outcome is Outcome.OK else _FAILURE_LOG[found.outcome]
            log.info("remote-viewer file for %s from %s refused: %s", token_ref(token), client, reason)
            return outcome, None
        public, ca_pem, subject = self._proxy
        try:
            text = vvfile.render(console.domain_name, public, token, ca_pem, subject, connect_proxy)
        except ValueError as exc:
            log.info("remote-viewer file for %s from %s refused: %s", token_ref(token), client, exc)
            return Outcome.UNROUTABLE, None
        return Outcome.OK, text

    def health(self) -> Tuple[bool, Dict[str, Any]]:
        connections = {uri: _state(w) for uri, w in self._watchers.items()}
        healthy = bool(connections) and all(state == "indexed" for state in connections.values())
        return healthy, {"status": "ok" if healthy else "degraded", "connections": connections}

    def metric_families(self) -> List[Family]:
        counts = self.index.counts()
        return [
            self.lookups.family(),
            self.claims.family(),
            Family("resolverd_libvirt_connected", "gauge", "1 while the libvirt connection is up, per URI.",
                   [({"uri": uri}, float(w.connected)) for uri, w in self._watchers.items()]),
            Family("resolverd_resync_seconds", "gauge", "Duration of the last full resync, per URI.",
                   [({"uri": uri}, w.last_resync_seconds) for uri, w in self._watchers.items()]),
            Family("resolverd_index_tokens", "gauge", "Tokens in the index.", [({}, counts["tokens"])]),
            Family("resolverd_index_domains", "gauge", "Enabled domains in the index, by state.",
                   [({"state": "running"}, counts["domains_running"]),
                    ({"state": "stopped"}, counts["domains_stopped"])]),
            Family("resolverd_bridge_sessions", "gauge", "Open console bridge sessions.",
                   [({}, float(self._bridge.session_count() if self._bridge else 0))]),
        ]

    def _connection_for(self, uri: str) -> Optional[libvirt.virConnect]:
        watcher = self._watchers.get(uri)
        return watcher.connection() if watcher is not None else None


def _proxy_identity(settings: Settings) -> Optional[Tuple[Address, str, str]]:
    """proxyd's public address, CA (PEM) and certificate subject for remote-viewer files, when configured."""
    if settings.proxy_public is None:
        return None
    assert settings.proxy_ca is not None and settings.proxy_cert is not None
    return (settings.proxy_public, *vvfile.proxy_identity(settings.proxy_ca, settings.proxy_cert))


def _state(watcher: Watcher) -> str:
    if watcher.indexed:
        return "indexed"
    return "indexing" if watcher.connected else "disconnected"


def _log_refusal(what: str, token: str, client: str, found: Lookup) -> None:
    console = found.console
    where = ""
    if console is not None:
        where = f" ({console.domain_name} {console.console_type} {console.index} on {console.uri})"
        if found.outcome is Outcome.UNROUTABLE:
            where += f": {console.unroutable}"
    log.info("%s %s from %s refused: %s%s", what, token_ref(token), client, _FAILURE_LOG[found.outcome], where)


def answer(console: IndexedConsole, bridge_ticket: Optional[str], claimed: bool) -> Dict[str, Any]:
    """The anchor's JSON fields first, then ours; a one-time token's says whether this look-up claimed it."""
    target = console.target
    assert target is not None
    document: Dict[str, Any] = {
        "type": target.type, "address": target.address, "insecure": target.insecure, "tlsTunnel": target.tls_tunnel}
    if target.password is not None:
        document["password"] = target.password
    if bridge_ticket is not None:
        document["bridgeTicket"] = bridge_ticket
    document.update({
        "domainUuid": console.domain_uuid, "domainName": console.domain_name, "consoleType": console.console_type,
        "index": console.index, "expires": console.expires.isoformat() if console.expires else None,
        "once": console.once})
    if console.once:
        document["claimed"] = claimed
    return document
