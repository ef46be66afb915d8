"""Free TCP ports for listeners the lab has to name up front.

SPICE and VNC use libvirt's autoport (it allocates from 5900 up and checks
each port is bindable).  A TCP chardev needs its port in the XML, so the lab
asks the kernel for an ephemeral port (32768 and up: away from libvirt's
display range), remembers what it handed out in this process so two guests
never get the same one, and the guest factory retries with a new port if
QEMU still loses a race to another program.
"""

from __future__ import annotations

import socket
import threading

_lock = threading.Lock()
_handed_out: set[int] = set()


def bindable(host: str, port: int) -> bool:
    """Whether nobody listens on ``host``:``port`` (connections in TIME_WAIT do not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at ``host`` and that this run has not used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _lock:
        for _ in range(100):
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
            if port not in _handed_out and bindable(host, port):
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no free TCP port found on {host}")
