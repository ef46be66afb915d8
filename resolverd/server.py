"""gunicorn configured in code for resolverd.

One worker, because the index lives in that process; threads (gthread) for
concurrency and HTTP keep-alive for the proxy's repeated look-ups.  The app is
loaded in the worker (no preload) and its watchers start in the worker's
``post_worker_init`` hook, so the master never holds libvirt threads or
connections and every fork happens before any thread exists.
"""

import logging
import ssl
from typing import Any, Callable, Dict, Optional

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config
from gunicorn.glogging import Logger

from resolverd import tls
from resolverd.app import EXTENSION, TokenPathRedactor, create_app
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
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        super().__init__(prog="resolverd")

    def load_config(self) -> None:
        assert self.cfg is not None
        for key, value in gunicorn_settings(self._settings).items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app(self._settings)


def gunicorn_settings(settings: Settings) -> Dict[str, Any]:
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
        options.update({
            "certfile": str(settings.tls_cert), "keyfile": str(settings.tls_key), "ca_certs": str(settings.tls_ca),
            "cert_reqs": ssl.CERT_REQUIRED, "ssl_context": _context_hook(settings),
        })
    return options


def _context_hook(settings: Settings) -> Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    """gunicorn asks for a context per connection: build ours (TLS >= 1.2, client cert required) once."""
    built: Optional[ssl.SSLContext] = None

    def ssl_context(_config: Config, _default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        nonlocal built
        if built is None:
            assert settings.tls_cert and settings.tls_key and settings.tls_ca
            built = tls.server_context(settings.tls_cert, settings.tls_key, settings.tls_ca)
        return built
    return ssl_context


def _start_watchers(worker: Any) -> None:
    worker.wsgi.extensions[EXTENSION].start()


def _stop_watchers(_arbiter: Any, worker: Any) -> None:
    if worker.wsgi is not None:
        worker.wsgi.extensions[EXTENSION].stop()
