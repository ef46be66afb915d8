"""What SIGHUP re-reads in a running resolverd: the command line, the config file and the TLS files.

gunicorn's master checks the new configuration first (and keeps it for any
worker it starts later); its worker then reads it again and applies it in
place, so the index, the libvirt connections and open console-bridge sessions
stay.  Settings bound to sockets, threads or connections (the API and bridge
addresses, the libvirt URIs, the request threads) take a restart: a reload
keeps their running values and names them, so the caller can say so.
"""

import ssl
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from resolverd import settings as settings_module, tls
from resolverd.config import ConfigError, keep_running
from resolverd.settings import Settings

RESTART_ONLY = ("connect", "listen", "console_listen", "threads")


@dataclass(frozen=True)
class Reloaded:
    settings: Settings
    context: Optional[ssl.SSLContext]  # the API's and the console bridge's, None without TLS
    kept: Tuple[str, ...]  # settings that changed but take a restart: their running values stay


def reread(argv: Sequence[str], running: Settings) -> Reloaded:
    """The configuration as the files now say; ConfigError (the running one stays) when it is unusable."""
    fresh = settings_module.from_args(argv, exit_on_error=False)
    if fresh.tls_enabled != running.tls_enabled:
        raise ConfigError("switching the API between TLS and clear text takes a restart")
    fresh, kept = keep_running(fresh, running, RESTART_ONLY)
    return Reloaded(fresh, server_context(fresh), kept)


def server_context(settings: Settings) -> Optional[ssl.SSLContext]:
    """The context of the API and of the console bridge (TLS >= 1.2, client certificate required)."""
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert and settings.tls_key and settings.tls_ca
    return tls.server_context(settings.tls_cert, settings.tls_key, settings.tls_ca)
