"""A worker process: one asyncio event loop over every connection it accepts.

The listening sockets come from the master (inherited through fork); all
workers accept from them.  Once a second the worker sweeps its sessions
(idle timeout, websocket ping and missing pong) and sends the master a
metrics snapshot when something changed.  SIGTERM drains: stop accepting,
let sessions go on for the grace period, then close the rest with 1001.
The end of the master's channel means the master is gone: drain too.
SIGHUP (sent by the master once it checked the new configuration) re-reads
the configuration and TLS files: connections accepted from then on use
them; those already open keep what they started with.
"""

import asyncio
import logging
import signal
import socket
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Set

import uvloop
from websockets.frames import CloseCode

from proxyd import brake, channel
from proxyd.backends import Outbound
from proxyd.connection import Shared, handler
from proxyd.metrics import WorkerMetrics
from proxyd.protocol.spice_link import TicketKey
from proxyd.reload import reread
from proxyd.resolver import ResolverClient
from proxyd.session import Session
from proxyd.settings import Contexts, Settings
from proxyd.spice_directory import SessionDirectory
from proxyd.sweep import sweep
from resolverd import logs
from resolverd.config import ConfigError

log = logging.getLogger(__name__)

TICK = 1.0
ACCEPT_BATCH = 64
MAX_HANDSHAKES = 2048  # connections of one worker between accept and open session
ACCEPT_PAUSE = 1.0  # after running out of file descriptors


class Worker:
    def __init__(self, argv: Sequence[str], settings: Settings, contexts: Contexts, listeners: List[socket.socket],
                 link: socket.socket) -> None:
        self._argv = argv
        self._settings = settings
        self._contexts = contexts
        self._listeners = listeners
        self._link = link
        self._metrics = WorkerMetrics()
        self._sessions: Set[Session] = set()
        self._handshakes: "Set[asyncio.Task[None]]" = set()
        self._draining = False
        self._drain_deadline = 0.0
        self._last_snapshot: Optional[dict] = None
        self._stopped: "Optional[asyncio.Future[None]]" = None
        self._directory = SessionDirectory(link)

    def run(self) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides; Ctrl-C reaches the whole group
        # libuv's transports and TLS cost about 60% of asyncio's CPU per relayed message (bench/run.py), and
        # leave an idle channel's 256 KiB TLS read buffer unallocated until bytes come.
        uvloop.run(self._main())
        return 0

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self.drain)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # blocked since the fork (see Master._spawn)
        self._brake = brake.WorkerBrake(self._link)
        self._shared = Shared(
            **self._configured(), failed_attempts=self._brake, metrics=self._metrics,
            sessions=self._sessions, ticket_key=TicketKey.generate(), directory=self._directory)
        self._start = handler(self._shared)
        for listener in self._listeners:
            listener.setblocking(False)
            loop.add_reader(listener.fileno(), self._accept, listener)
        loop.add_reader(self._link.fileno(), self._from_master)
        ticker = loop.call_later(TICK, self._tick)
        try:
            await self._stopped
        finally:
            ticker.cancel()
            self._send_snapshot()
            self._shared.resolver.close()

    def _configured(self) -> Dict[str, Any]:
        """The parts of Shared that come from the settings and TLS files (what a reload renews)."""
        settings, contexts = self._settings, self._contexts
        return dict(
            public_context=contexts.public, allowed_origins=settings.allowed_origins,
            handshake_timeout=settings.handshake_timeout,
            resolver_timeout=2 * settings.resolver_connect_timeout + 2 * settings.resolver_read_timeout,
            outbound=Outbound(connect=contexts.connect, bridge=contexts.resolver,
                              server_name=settings.connect_server_name, allow_insecure=settings.connect_insecure),
            resolver=ResolverClient(settings.resolver_uri, contexts.resolver, settings.resolver_connect_timeout,
                                    settings.resolver_read_timeout))

    def reload(self) -> None:
        """Re-read the configuration and TLS files for the connections accepted from now on."""
        if self._draining:
            return
        try:
            reloaded = reread(self._argv, self._settings)
        except ConfigError as exc:
            log.error("reload failed in this worker; it keeps its configuration and certificates: %s", exc)
            return
        self._settings, self._contexts = reloaded.settings, reloaded.contexts
        logs.set_level(reloaded.settings.log_level)
        # Connections under way keep the Shared they started with; the old resolver client is closed
        # once their look-ups are over.
        previous = self._shared
        self._shared = replace(previous, **self._configured())
        self._start = handler(self._shared)
        asyncio.get_running_loop().call_later(previous.resolver_timeout, previous.resolver.close)
        log.info("reloaded the configuration and certificates")

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s; pausing accepts for %g s", exc, ACCEPT_PAUSE)
                self._pause_accepting(listener)
                return
            if len(self._handshakes) >= MAX_HANDSHAKES:
                log.warning("dropping a connection from %s: %d handshakes already in progress", peer[0],
                            MAX_HANDSHAKES)
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._start(sock, peer)
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _pause_accepting(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(listener.fileno())

        def resume() -> None:
            if not self._draining:
                loop.add_reader(listener.fileno(), self._accept, listener)
        loop.call_later(ACCEPT_PAUSE, resume)

    def _from_master(self) -> None:
        try:
            while True:
                message = channel.receive(self._link)
                if message is None:
                    break
                if message["kind"] in brake.KINDS:
                    self._brake.on_message(message)
                else:
                    self._directory.on_message(message)
        except channel.ChannelClosed:
            asyncio.get_running_loop().remove_reader(self._link.fileno())
            log.warning("the master is gone; draining")
            self.drain()

    def drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        self._drain_deadline = time.monotonic() + self._settings.drain_grace
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
            listener.close()
        log.info("draining %d sessions and %d handshakes, for at most %g s", len(self._sessions),
                 len(self._handshakes), self._settings.drain_grace)
        self._check_drained()

    def _check_drained(self) -> None:
        assert self._stopped is not None
        if self._stopped.done():
            return
        if not self._sessions and not self._handshakes:
            self._stopped.set_result(None)
        elif time.monotonic() >= self._drain_deadline:
            # The next tick stops the loop: time for the close frames to leave.
            for session in list(self._sessions):
                session.end(CloseCode.GOING_AWAY, "the proxy is shutting down")
            for task in list(self._handshakes):
                task.cancel()

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self._settings
        sweep(list(self._sessions), time.monotonic(), settings.idle_timeout, settings.ping_interval,
              self._send_snapshot)
        if self._draining:
            self._check_drained()
        assert self._stopped is not None
        if not self._stopped.done():
            loop.call_later(TICK, self._tick)

    def _send_snapshot(self) -> None:
        snapshot = self._metrics.snapshot()
        if snapshot != self._last_snapshot and channel.send(self._link, {"kind": "metrics", "snapshot": snapshot}):
            self._last_snapshot = snapshot
