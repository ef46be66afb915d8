"""The master process: listening sockets, a fixed pool of forked workers, metrics, admin endpoint.

Workers are forked with os.fork() from the master's event loop, which runs
no threads (asyncio only starts executor threads for getaddrinfo and
run_in_executor, neither of which the master uses), so a fork never copies
a lock held by another thread.  The child resets signal handling, closes
what belongs to the master and runs its own loop (asyncio's running-loop
record is per process, so the master's loop is never touched again), then
leaves with os._exit.

A worker that dies is replaced (after a short pause if it died young);
its sessions are lost, the other workers' are not.  SIGTERM or SIGINT
drains: the master stops listening, tells every worker to drain, waits for
them (grace period plus a margin, then SIGKILL) and exits.

SIGHUP reloads (proxyd.reload): the master re-reads the config file and
the TLS files; when they are usable it keeps them for the workers it forks
from then on and sends each running worker SIGHUP, upon which the worker
re-reads them too and builds its contexts anew: new connections use the
new certificates, open sessions go on untouched.  When they are not, it
logs why and everything keeps running as it was.

Each worker has a channel (proxyd.channel) to the master.  It carries
metrics snapshots, and the requests and answers of the SPICE session table
(proxyd.spice_sessions), which lives here because the channels of one
session may land on different workers.
"""

import asyncio
import logging
import os
import resource
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

from proxyd import admin, brake, channel, reload, spice_sessions
from proxyd.metrics import Aggregate, valid_snapshot
from proxyd.ratelimit import FailedAttempts
from proxyd.settings import Contexts, Settings
from proxyd.worker import Worker
from resolverd import logs, sdnotify
from resolverd.config import ConfigError
from resolverd.settings import Address

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
YOUNG_DEATH = 1.0  # a worker that dies sooner than this is restarted after RESTART_PAUSE
RESTART_PAUSE = 1.0
KILL_MARGIN = 10.0  # beyond the drain grace, before stragglers get SIGKILL


@dataclass
class _WorkerSlot:
    index: int
    pid: int = 0
    link: Optional[socket.socket] = None
    started: float = 0.0


def bind(where: Address) -> socket.socket:
    host, port = where
    if host in ("", "::") and socket.has_dualstack_ipv6():
        sock = socket.create_server(("::", port), family=socket.AF_INET6, backlog=LISTEN_BACKLOG,
                                    dualstack_ipv6=True)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host or "0.0.0.0", port), family=family, backlog=LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def raise_file_limit() -> None:
    """Each console session holds two descriptors: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Master:
    def __init__(self, argv: Sequence[str], settings: Settings, contexts: Contexts, listeners: List[socket.socket],
                 admin_socket: socket.socket) -> None:
        """``argv``: the command line ``settings`` came from, read again (with the config file) on SIGHUP."""
        self._argv = list(argv)
        self._settings = settings
        self._contexts = contexts
        self._listeners = listeners
        self._admin_socket = admin_socket
        self._slots = [_WorkerSlot(index) for index in range(settings.workers)]
        self._metrics = Aggregate()
        self._spice_sessions = spice_sessions.SessionTable()
        self._brake = brake.MasterBrake(FailedAttempts(), self._links)
        self._draining = False
        self._done: "Optional[asyncio.Future[None]]" = None

    def run(self) -> int:
        asyncio.run(self._main())
        return 0

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._drain)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        server = await admin.serve(admin.AdminServer(self._render_metrics, self._health), self._admin_socket)
        for slot in self._slots:
            self._spawn(slot)
        where = ", ".join(_name(sock) for sock in self._listeners)
        log.info("proxyd listening on %s (%s) with %d workers; admin on http://%s", where,
                 "clear text" if self._contexts.public is None else "TLS", len(self._slots),
                 _name(self._admin_socket))
        sdnotify.ready(f"{len(self._slots)} workers")
        try:
            await self._done
        finally:
            server.close()

    # -- workers

    def _spawn(self, slot: _WorkerSlot) -> None:
        if self._draining:
            return
        if threading.active_count() != 1:
            raise RuntimeError("refusing to fork: the master runs threads")
        master_end, worker_end = channel.pair()
        # A reload's SIGHUP must wait until the new worker handles it (Worker unblocks it then).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        pid = os.fork()
        if pid == 0:
            master_end.close()
            self._become_worker(worker_end)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        worker_end.close()
        slot.pid, slot.link, slot.started = pid, master_end, time.monotonic()
        asyncio.get_running_loop().add_reader(master_end.fileno(), self._from_worker, slot)
        log.info("worker %d started (pid %d)", slot.index, pid)

    def _become_worker(self, link: socket.socket) -> None:
        """The child's side of the fork; never returns."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            self._admin_socket.close()
            for other in self._slots:
                if other.link is not None:
                    other.link.close()
            code = Worker(self._argv, self._settings, self._contexts, self._listeners, link).run()
        except BaseException:
            log.exception("worker failed")
        finally:
            logging.shutdown()
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = next((s for s in self._slots if s.pid == pid), None)
            if slot is None:
                continue
            self._forget(slot, status)
        if self._draining and not any(slot.pid for slot in self._slots):
            assert self._done is not None
            if not self._done.done():
                self._done.set_result(None)

    def _forget(self, slot: _WorkerSlot, status: int) -> None:
        loop = asyncio.get_running_loop()
        if slot.link is not None:
            try:
                self._drain_link(slot)  # its last snapshot, if it managed to send one
            except channel.ChannelClosed:
                pass
            loop.remove_reader(slot.link.fileno())
            slot.link.close()
        self._metrics.retire(slot.pid)
        self._spice_ended(self._spice_sessions.forget_worker(slot.index))
        lived = time.monotonic() - slot.started
        how = _exit_description(status)
        slot.pid, slot.link = 0, None
        if self._draining:
            log.info("worker %d %s", slot.index, how)
            return
        log.warning("worker %d %s after %.1f s; replacing it", slot.index, how, lived)
        self._metrics.worker_restarts += 1
        if lived < YOUNG_DEATH:
            loop.call_later(RESTART_PAUSE, self._spawn, slot)
        else:
            self._spawn(slot)

    def _from_worker(self, slot: _WorkerSlot) -> None:
        try:
            self._drain_link(slot)
        except channel.ChannelClosed:
            # The process is on its way out; SIGCHLD does the rest.
            asyncio.get_running_loop().remove_reader(slot.link.fileno())  # type: ignore[union-attr]

    def _drain_link(self, slot: _WorkerSlot) -> None:
        assert slot.link is not None
        while True:
            message = channel.receive(slot.link)
            if message is None:
                return
            if message["kind"] == "metrics" and valid_snapshot(message.get("snapshot")):
                self._metrics.update(slot.pid, message["snapshot"])
            elif message["kind"] == brake.FAILED:
                self._brake.on_message(message)
            elif message["kind"] in spice_sessions.REQUESTS:
                answer, ended = self._spice_sessions.handle(slot.index, message)
                if answer is not None and not channel.send(slot.link, answer):
                    log.warning("worker %d did not take a session table answer", slot.index)
                self._spice_ended(ended)
            else:
                log.warning("worker %d sent an unexpected %r message", slot.index, message["kind"])

    def _links(self) -> List[socket.socket]:
        return [slot.link for slot in self._slots if slot.link is not None]

    def _spice_ended(self, sessions: List[int]) -> None:
        """Every worker closes the channels of these SPICE sessions."""
        for session in sessions:
            for slot in self._slots:
                if slot.link is not None:
                    channel.send(slot.link, spice_sessions.ended(session))

    # -- reloading

    def _reload(self) -> None:
        if self._draining:
            return
        sdnotify.reloading("re-reading the configuration and certificates")
        try:
            reloaded = reload.reread(self._argv, self._settings)
        except ConfigError as exc:
            log.error("reload failed; the running configuration and certificates stay in use: %s", exc)
            sdnotify.ready(f"{self._alive()} workers; the last reload failed: {exc}")
            return
        for name in reloaded.kept:
            log.warning("reload: %s changed, which takes a restart; keeping the running value", name)
        self._settings, self._contexts = reloaded.settings, reloaded.contexts
        logs.set_level(reloaded.settings.log_level)
        for slot in self._slots:
            if slot.pid:
                _signal(slot.pid, signal.SIGHUP)
        log.info("reloaded: new connections get the re-read configuration and certificates; open sessions go on")
        sdnotify.ready(f"{self._alive()} workers")

    # -- draining

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        sdnotify.stopping("draining")
        for listener in self._listeners:
            listener.close()
        alive = [slot.pid for slot in self._slots if slot.pid]
        log.info("draining: %d workers get %g s to finish their sessions", len(alive), self._settings.drain_grace)
        for pid in alive:
            _signal(pid, signal.SIGTERM)
        asyncio.get_running_loop().call_later(self._settings.drain_grace + KILL_MARGIN, self._kill_stragglers)
        self._reap()

    def _kill_stragglers(self) -> None:
        for slot in self._slots:
            if slot.pid:
                log.warning("worker %d (pid %d) still running after the drain; killing it", slot.index, slot.pid)
                _signal(slot.pid, signal.SIGKILL)

    # -- admin

    def _alive(self) -> int:
        return sum(1 for slot in self._slots if slot.pid)

    def _render_metrics(self) -> str:
        return self._metrics.render(self._alive())

    def _health(self) -> "tuple[bool, str]":
        alive = self._alive()
        if self._draining:
            return False, f"draining, {alive} workers left"
        return alive > 0, f"ok {alive}/{len(self._slots)} workers" if alive else "no worker running"


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _name(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
