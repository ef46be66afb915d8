"""What SIGHUP re-reads in a running proxyd: the config file (and flags) and every TLS file.

The master checks the new configuration first and keeps the running one
when anything is wrong (a bad key, a certificate that does not load or
does not match its key).  Settings bound to sockets or processes (listen
addresses, admin address, worker count) need a restart: a reload keeps
their running values and names them, so the caller can say so.
"""

from dataclasses import dataclass
from typing import Sequence, Tuple

from proxyd.settings import Contexts, Settings, from_args
from resolverd.config import ConfigError, keep_running

RESTART_ONLY = ("listen", "admin_listen", "workers")


@dataclass(frozen=True)
class Reloaded:
    settings: Settings
    contexts: Contexts
    kept: Tuple[str, ...]  # settings that changed but take a restart: their running values stay


def reread(argv: Sequence[str], running: Settings) -> Reloaded:
    """The configuration as the files now say; ConfigError (the running one stays) when it is unusable."""
    settings, contexts = from_args(argv, exit_on_error=False)
    if settings.listen_insecure != running.listen_insecure:
        raise ConfigError("switching the public port between TLS and clear text takes a restart")
    settings, kept = keep_running(settings, running, RESTART_ONLY)
    return Reloaded(settings, contexts, kept)
