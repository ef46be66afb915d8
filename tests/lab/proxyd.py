"""A proxyd subprocess (master + forked workers) on free ports, pointed at a lab resolverd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import requests
from websockets.sync.client import ClientConnection, connect

from resolverd.tls import client_context

from . import teardown
from .pki import CertPair, Pki
from .ports import free_port
from .processes import end_with_this_process
from .resolverd import REPO, Resolverd
from .wsstream import DEADLINE


class Proxyd:
    """A proxyd subprocess on free ports, with helpers to reach its public port and admin endpoint."""

    def __init__(self, run_dir: Path, pki: Pki, resolver: Resolverd, *extra: str, workers: int = 2,
                 connect_pair: Optional[CertPair] = None, connect_ca: Optional[Path] = None) -> None:
        self.pki = pki
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = run_dir / f"proxyd-{self.port}.log"
        qemu_client = connect_pair or pki.proxyd_qemu_client
        resolver_client = pki.proxyd_resolverd_client
        self.argv = [
            sys.executable, "-m", "proxyd", "--listen", f"127.0.0.1:{self.port}",
            "--tls-cert", str(pki.proxyd_server.cert), "--tls-key", str(pki.proxyd_server.key),
            "--resolver-uri", f"https://localhost:{resolver.port}/consoleresolver",
            "--resolver-cert", str(resolver_client.cert), "--resolver-key", str(resolver_client.key),
            "--resolver-ca", str(pki.ca_cert),
            "--connect-cert", str(qemu_client.cert), "--connect-key", str(qemu_client.key),
            "--connect-ca", str(connect_ca or pki.ca_cert),
            "--workers", str(workers), "--admin-listen", f"127.0.0.1:{self.admin_port}", "--log-level", "debug",
            "--drain-grace", "3", *extra]
        self.process: Optional[subprocess.Popen] = None
        self._key: Optional[int] = None
        self.tls = client_context(pki.ca_cert)

    def set_flag(self, flag: str, value: str) -> None:
        """Give ``flag`` (already on the command line) another value, before start()."""
        self.argv[self.argv.index(flag) + 1] = value

    def drop_flag(self, flag: str) -> None:
        """Take ``flag`` and its value off the command line, before start()."""
        at = self.argv.index(flag)
        del self.argv[at:at + 2]

    def start(self, environment: Optional[Dict[str, str]] = None) -> "Proxyd":
        """``environment``: variables added to this process's (NOTIFY_SOCKET, say)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=end_with_this_process,
                                            env=dict(os.environ, **(environment or {})))
        self._key = teardown.register(self.kill)
        deadline = time.monotonic() + 20
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxyd did not start:\n{self.log_text()[-4000:]}")
            time.sleep(0.05)
        return self

    def healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.admin_port}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        if self._key is not None:
            teardown.unregister(self._key)

    def url(self, token: Optional[str], path: str = "/websockify") -> str:
        return f"wss://localhost:{self.port}{path}" + (f"?token={token}" if token is not None else "")

    def open(self, token: Optional[str], **options) -> ClientConnection:
        options.setdefault("open_timeout", DEADLINE)
        return connect(self.url(token), ssl=self.tls, max_size=None, **options)

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).text

    def metric(self, sample: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(sample)

    def worker_pids(self) -> List[int]:
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
