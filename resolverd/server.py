"""gunicorn configured in code for resolverd.

One worker, because the index lives in that process; threads (gthread) for
concurrency and HTTP keep-alive for the proxy's repeated look-ups.  The app is
loaded in the worker (no preload) and its watchers start in the worker's
``post_worker_init`` hook, so the master never holds libvirt threads or
connections and every fork happens before any thread exists.

The TLS context (the API's and the console bridge's: the same files) is
loaded in the master and inherited by the worker.  SIGHUP reloads: the
master reads the command line, the config file and the TLS files again and
gunicorn replaces its worker; when the new configuration is unusable the
error is logged and the new worker gets the running one.
"""

import logging
import ssl
from typing import Any, Callable, Dict, Optional, Sequence

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config
from gunicorn.glogging import Logger

from resolverd import sdnotify, settings as settings_module, tls
from resolverd.app import EXTENSION, TokenPathRedactor, create_app
from resolverd.config import ConfigError
from resolverd.settings import Settings
from resolverd.targets import join_host_port

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 75


class RedactingLogger(Logger):
    """gunicorn's logger, with tokens in request lines (debug and access logs) replaced by their token_ref."""

    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            logger.addFilter(TokenPathRedactor())


class ResolverApplication(BaseApplication):
    def __init__(self, settings: Settings, argv: Optional[Sequence[str]] = None) -> None:
        """``argv``: the command line ``settings`` came from, read again (with the config file) on SIGHUP."""
        self._settings = settings
        self._argv = argv
        self._context = server_context(settings)
        super().__init__(prog="resolverd")

    def load_config(self) -> None:
        assert self.cfg is not None
        for key, value in gunicorn_settings(self._settings, self._context).items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app(self._settings, self._context)

    def reload(self) -> None:
        """SIGHUP, in the master: new settings and TLS context for the worker gunicorn starts next."""
        sdnotify.reloading("re-reading the configuration and certificates")
        if self._argv is not None:
            try:
                fresh = settings_module.from_args(self._argv, exit_on_error=False)
                context = server_context(fresh)
            except ConfigError as exc:
                log.error("reload failed; the running configuration and certificates stay in use: %s", exc)
            else:
                self._settings, self._context = fresh, context
                log.info("reloaded the configuration and certificates")
        super().reload()
        sdnotify.ready("serving")


def server_context(settings: Settings) -> Optional[ssl.SSLContext]:
    """The context of the API and of the console bridge (TLS >= 1.2, client certificate required)."""
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert and settings.tls_key and settings.tls_ca
    return tls.server_context(settings.tls_cert, settings.tls_key, settings.tls_ca)


def gunicorn_settings(settings: Settings, context: Optional[ssl.SSLContext]) -> Dict[str, Any]:
    """``context``: what server_context(settings) loaded, handed to every connection of the worker."""
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
        "post_worker_init": _start_watchers,
        "worker_exit": _stop_watchers,
    }
    if settings.tls_enabled:
        assert context is not None
        options.update({
            "certfile": str(settings.tls_cert), "keyfile": str(settings.tls_key), "ca_certs": str(settings.tls_ca),
            "cert_reqs": ssl.CERT_REQUIRED, "ssl_context": _context_hook(context),
        })
    return options


def _context_hook(context: ssl.SSLContext) -> Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    """gunicorn asks for a context per connection: always ours, loaded once."""
    def ssl_context(_config: Config, _default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context
    return ssl_context


def _start_watchers(worker: Any) -> None:
    worker.wsgi.extensions[EXTENSION].start()


def _stop_watchers(_arbiter: Any, worker: Any) -> None:
    if worker.wsgi is not None:
        worker.wsgi.extensions[EXTENSION].stop()
