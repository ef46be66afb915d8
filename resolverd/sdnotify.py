"""Tell systemd how a ``Type=notify`` service is doing (sd_notify(3)), without libsystemd.

Each call sends one datagram of ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET`` and
returns whether it was sent.  Outside systemd (the variable is unset) every
call is a no-op that returns False; a failed send is logged and never stops
the daemon, because the service manager then only sees less than it could.

After a reload (``reloading()``), send ``ready()`` again once the new
configuration is in use.
"""

import logging
import os
import socket
import time
from typing import Optional, Tuple

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def notify(*assignments: str) -> bool:
    """Send ``KEY=VALUE`` assignments in one datagram; False when not sent."""
    if not assignments:
        raise ValueError("nothing to notify")
    for assignment in assignments:
        key, sep, _ = assignment.partition("=")
        if not sep or not key or "\n" in assignment:
            raise ValueError(f"not a single-line KEY=VALUE assignment: {assignment!r}")
    target = os.environ.get(NOTIFY_SOCKET_ENV)
    if not target:
        return False
    address = _socket_address(target)
    if address is None:
        log.warning("ignoring %s=%r: not an absolute path or an @abstract name", NOTIFY_SOCKET_ENV, target)
        return False
    message = "\n".join(assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
            sender.sendto(message, address)
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", target, exc)
        return False
    return True


def ready(status: Optional[str] = None) -> bool:
    """Start-up (or a reload) is complete: the service is serving."""
    return notify("READY=1", *_status(status))


def reloading(status: Optional[str] = None) -> bool:
    """A reload has begun; MONOTONIC_USEC lets ``Type=notify-reload`` match it to the request."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", *_status(status))


def stopping(status: Optional[str] = None) -> bool:
    """Shutdown has begun (draining connections, say)."""
    return notify("STOPPING=1", *_status(status))


def status(text: str) -> bool:
    """A one-line, human-readable state shown by ``systemctl status``."""
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    """Keep-alive ping for ``WatchdogSec=``."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> Optional[float]:
    """Seconds within which this process must call ``watchdog()``; None when no watchdog is armed for it."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid is not None and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000


def _status(text: Optional[str]) -> Tuple[str, ...]:
    return () if text is None else (f"STATUS={text}",)


def _socket_address(target: str) -> Optional[str]:
    if target.startswith("@"):
        return "\0" + target[1:]
    if target.startswith("/"):
        return target
    return None
