"""gunicorn configured in code for resolverd.

One worker, because the index lives in that process; threads (gthread) for
concurrency and HTTP keep-alive for the proxy's repeated look-ups.  The app is
loaded in the worker (no preload) and its watchers start in the worker's
``post_worker_init`` hook, so the master never holds libvirt threads or
connections and every fork happens before any thread exists.

The TLS context (the API's and the console bridge's: the same files) is
loaded in the master and inherited by the worker, in a SwappableContext that
gunicorn asks for each new connection.  SIGHUP reloads without replacing the
worker (resolverd.reload): the master reads the command line, the config file
and the TLS files again and, when they are usable, keeps them for any worker
it starts later and forwards SIGHUP to its worker, which reads them again
and swaps them in; open connections and console-bridge sessions go on.
"""

import logging
import signal
import ssl
import sys
import threading
from types import FrameType
from typing import Any, Callable, Dict, Optional, Sequence

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.config import Config
from gunicorn.glogging import Logger

from resolverd import logs, reload, sdnotify
from resolverd.app import EXTENSION, TokenPathRedactor, create_app
from resolverd.config import ConfigError
from resolverd.reload import server_context
from resolverd.settings import Settings
from resolverd.targets import join_host_port
from resolverd.tls import SwappableContext

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 75
RELOADED_IN_PLACE = "reloaded the configuration and certificates in place; open sessions go on"

_worker_reload = threading.Lock()  # one reload at a time in the worker


class RedactingLogger(Logger):
    """gunicorn's logger, with tokens in request lines (debug and access logs) replaced by their token_ref."""

    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            logger.addFilter(TokenPathRedactor())


class ResolverApplication(BaseApplication):
    def __init__(self, settings: Settings, argv: Sequence[str]) -> None:
        """``argv``: the command line ``settings`` came from, read again (with the config file) on SIGHUP."""
        self._settings = settings
        self._argv = argv
        context = server_context(settings)
        self._context = SwappableContext(context) if context is not None else None
        super().__init__(prog="resolverd")

    def load_config(self) -> None:
        assert self.cfg is not None
        for key, value in gunicorn_settings(self._settings, self._context).items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app(self._settings, self._context)

    def run(self) -> None:
        try:
            ResolverArbiter(self).run()
        except RuntimeError as exc:
            log.critical("%s", exc)
            sys.exit(1)

    def reread(self) -> reload.Reloaded:
        """The configuration and certificates read again and made this process's running ones (new
        connections get the new TLS context); ConfigError, and the running ones stay, when unusable."""
        reloaded = reload.reread(self._argv, self._settings)
        self._settings = reloaded.settings
        if self._context is not None:
            assert reloaded.context is not None
            self._context.replace(reloaded.context)
        return reloaded


class ResolverArbiter(Arbiter):
    """gunicorn's master, except that SIGHUP reloads its worker in place instead of replacing it."""

    def handle_hup(self) -> None:
        application = self.app
        assert isinstance(application, ResolverApplication)
        self.log.info("Hang up: %s", self.master_name)
        sdnotify.reloading("re-reading the configuration and certificates")
        try:
            reloaded = application.reread()
        except ConfigError as exc:
            log.error("reload failed; the running configuration and certificates stay in use: %s", exc)
            sdnotify.ready(f"serving; the last reload failed: {exc}")
            return
        for name in reloaded.kept:
            log.warning("reload: %s changed, which takes a restart; keeping the running value",
                        name.replace("_", "-"))
        _set_log_level(self.log, reloaded.settings.log_level)
        self.kill_workers(signal.SIGHUP)
        log.info("reloaded the configuration and certificates; the worker applies them in place")
        sdnotify.ready("serving")

    def spawn_worker(self) -> int:
        """gunicorn's, with SIGHUP blocked across the fork: the new worker takes it once it can reload in
        place (see _worker_started), instead of dying of it or losing it while it boots."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            return super().spawn_worker()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def gunicorn_settings(settings: Settings, context: Optional[SwappableContext]) -> Dict[str, Any]:
    """``context``: what server_context(settings) loaded, handed to every new connection of the worker."""
    options: Dict[str, Any] = {
        "bind": [join_host_port(*settings.listen)],
        "workers": 1,
        "worker_class": "gthread",
        "threads": settings.threads,
        "keepalive": KEEPALIVE_SECONDS,
        "preload_app": False,
        "proc_name": "resolverd",
        "loglevel": settings.log_level,
        "logger_class": RedactingLogger,
        # gunicorn's runtime control socket could add workers, which would split the index.
        "control_socket_disable": True,
        "post_worker_init": _worker_started,
        "worker_exit": _stop_watchers,
    }
    if settings.tls_enabled:
        assert context is not None
        options.update({
            "certfile": str(settings.tls_cert), "keyfile": str(settings.tls_key), "ca_certs": str(settings.tls_ca),
            "cert_reqs": ssl.CERT_REQUIRED, "ssl_context": _context_hook(context),
        })
    return options


def _context_hook(context: SwappableContext) -> Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    """gunicorn asks for a context per connection: always ours, as the last reload left it."""
    def ssl_context(_config: Config, _default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context.current
    return ssl_context


def _worker_started(worker: Any) -> None:
    """post_worker_init: the watchers and the console bridge start, and the master's SIGHUP reloads in place."""
    worker.wsgi.extensions[EXTENSION].start()

    def on_hup(_signum: int, _frame: Optional[FrameType]) -> None:
        threading.Thread(target=_reload_worker, args=(worker,), name="reload", daemon=True).start()
    signal.signal(signal.SIGHUP, on_hup)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # blocked since the fork (spawn_worker)


def _reload_worker(worker: Any) -> None:
    """The configuration and certificates the master checked, read again and applied by the running worker."""
    application: ResolverApplication = worker.app
    with _worker_reload:
        try:
            reloaded = application.reread()
        except ConfigError as exc:
            log.error("reload failed in the worker; it keeps its configuration and certificates: %s", exc)
            return
        worker.wsgi.extensions[EXTENSION].reconfigure(reloaded.settings)
        _set_log_level(worker.log, reloaded.settings.log_level)
    log.info(RELOADED_IN_PLACE)


def _set_log_level(gunicorn_log: Logger, level: str) -> None:
    logs.set_level(level)
    gunicorn_log.error_log.setLevel(level.upper())


def _stop_watchers(_arbiter: Any, worker: Any) -> None:
    if worker.wsgi is not None:
        worker.wsgi.extensions[EXTENSION].stop()
