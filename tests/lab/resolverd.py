"""A resolverd subprocess on free ports, with the lab's PKI, and an mTLS client for its API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import requests

from .pki import Pki
from .ports import free_port
from .processes import end_with_this_process

REPO = Path(__file__).resolve().parents[2]


class Resolverd:
    """A resolverd subprocess and an mTLS client for its API."""

    def __init__(self, run_dir: Path, pki: Pki, uris: List[str], log_level: str = "debug",
                 extra_args: Sequence[str] = ()) -> None:
        self.pki = pki
        self.uris = uris
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.bridge_port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.log_path = run_dir / f"resolverd-{self.port}.log"
        self.process: Optional[subprocess.Popen] = None
        self.session = self.client()

    def command(self) -> List[str]:
        pair = self.pki.resolverd_server
        argv = [sys.executable, "-m", "resolverd", "--listen", f"127.0.0.1:{self.port}",
                "--tls-cert", str(pair.cert), "--tls-key", str(pair.key), "--tls-ca", str(self.pki.ca_cert),
                "--console-listen", f"127.0.0.1:{self.bridge_port}", "--resync-interval", "30",
                "--log-level", self.log_level]
        for uri in self.uris:
            argv += ["--connect", uri]
        return argv + self.extra_args

    def start(self, timeout: float = 60, argv: Optional[List[str]] = None,
              environment: Optional[Dict[str, str]] = None) -> None:
        """``environment``: the whole environment of the process (default: this one's)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv or self.command(), cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=end_with_this_process, env=environment)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"resolverd exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.session.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"resolverd not healthy within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def client(self, cert: Optional[tuple] = None) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = str(self.pki.ca_cert)
        session.cert = cert or self.pki.proxyd_resolverd_client.as_tuple
        return session

    def lookup(self, token: str) -> requests.Response:
        return self.session.get(f"{self.base}/consoleresolver/token/{token}", timeout=10)

    def status(self, token: str) -> int:
        return self.lookup(token).status_code

    def metric(self, name: str) -> float:
        """The sum of every sample of ``name`` in /metrics."""
        text = self.session.get(self.base + "/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
