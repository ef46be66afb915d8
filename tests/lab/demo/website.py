"""The demo's HTTPS site: its VNC page, noVNC's library and the CA certificate.

npm's @novnc/novnc (installed by scripts/bootstrap under .venv/novnc) is the
library alone, without noVNC's own vnc.html application, so the demo serves
a small page of its own (vnc.html next to this file) that imports
``novnc/core/rfb.js`` and takes noVNC's query parameters: ``host``,
``port``, ``encrypt`` and ``path``.
"""

from __future__ import annotations

import functools
import http.server
import logging
import shutil
import ssl
import threading
from pathlib import Path
from typing import Optional

from resolverd.tls import server_context

from ..pki import CertPair
from .addresses import Listen

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("vnc.html")
CA_NAME = "ca-cert.pem"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Mostly a browser that closed the connection on seeing a certificate it does not trust yet.
        log.debug("web client %s: connection failed", client_address, exc_info=True)


class Website:
    """Serves ``root`` (filled by :meth:`start`) over HTTPS from a thread."""

    def __init__(self, root: Path, listen: Listen, pair: CertPair, ca_cert: Path, novnc: Path) -> None:
        self.root = root
        self.listen = listen
        self.pair = pair
        self.ca_cert = ca_cert
        self.novnc = novnc
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if not (self.novnc / "core" / "rfb.js").is_file():
            raise FileNotFoundError(f"noVNC is not installed at {self.novnc} (scripts/bootstrap installs it)")
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PAGE, self.root / PAGE.name)
        shutil.copyfile(self.ca_cert, self.root / CA_NAME)
        (self.root / "novnc").symlink_to(self.novnc)
        handler = functools.partial(_Handler, directory=str(self.root))
        server = _Server((self.listen.host, self.listen.port), handler)
        context: ssl.SSLContext = server_context(self.pair.cert, self.pair.key, None)
        # The handshake happens in the request's thread, so a stalled client blocks nobody.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="demo-website", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
