"""Logging set-up shared by the three programs, and the one safe way to name a token in a log."""

import hashlib
import logging
import os
import sys

# sd-daemon(3) priority prefixes, read by journald from a service's stderr.
_JOURNAL_PRIORITY = {
    logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, the prefix on every line so multi-line records keep their priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_JOURNAL_PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def setup(level: str) -> None:
    """Log to stderr: journald's priority prefixes under systemd, timestamps elsewhere."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def set_level(level: str) -> None:
    """The least severe level logged from now on (a reload may change it)."""
    logging.getLogger().setLevel(level.upper())


def token_ref(token: str) -> str:
    """A short, stable, non-reversible name for a token: what logs say instead of the token."""
    return "tok-" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:12]
