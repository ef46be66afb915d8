"""A stand-in for systemd's notify socket: where a daemon's sd_notify datagrams arrive ($NOTIFY_SOCKET)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import List


class NotifySocket:
    """Binds ``path``; ``received`` is every ``KEY=VALUE`` line that arrived so far, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        path.chmod(0o777)  # the daemon may run as another user
        self.received: List[str] = []

    def wait_for(self, assignment: str, timeout: float, after: int = 0) -> List[str]:
        """The lines received until ``assignment`` (e.g. READY=1) arrives past the first ``after``; TimeoutError."""
        deadline = time.monotonic() + timeout
        while assignment not in self.received[after:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {assignment} within {timeout} s; received {self.received}")
            self._socket.settimeout(remaining)
            try:
                self.received += self._socket.recv(4096).decode().split("\n")
            except socket.timeout:
                continue
        return self.received

    def close(self) -> None:
        self._socket.close()
