"""The demo proves its printed URLs work before it says "ready": each check is a tenant through proxyd.

- VNC: the websocket, RFB with security None, ServerInit, then the whole
  screen from FramebufferUpdates (more than one colour: the guest's banner
  on blue).
- serial: ENQ makes the guest print its banner line, then a marker comes
  back as the guest's echo.
- SPICE over the websocket: the link of QEMU's main channel with an empty
  password, as spice-html5 sends it (the URL's token is what counts; proxyd
  links QEMU with QEMU's own password, which tenants never see).
- SPICE natively (what remote-viewer speaks): TLS to the public port, a
  SPICE link, the token as the ticket.  A proxyd without native SPICE
  refuses it; the demo then says so rather than print a command that fails.
- the web page: vnc.html and noVNC's rfb.js over HTTPS.
"""

from __future__ import annotations

import secrets
import socket
import ssl
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

import requests
from websockets.sync.client import ClientConnection, connect

from resolverd.tls import client_context

from ..rfb_tenant import open_session, screen
from ..spice_link import CHANNEL_MAIN, LINK_OK, authenticate, link
from ..wsstream import DEADLINE, WsStream, echo_through
from .stack import TEXT_CONSOLES, Demo


class CheckFailed(Exception):
    """A URL the demo was about to print does not work."""


def _open(url: str, context: ssl.SSLContext) -> ClientConnection:
    return connect(url, ssl=context, max_size=None, open_timeout=DEADLINE, subprotocols=["binary"])


def vnc(url: str, context: ssl.SSLContext) -> str:
    """Open the VNC console and read one whole screen; its size, e.g. '720x400'."""
    with _open(url, context) as ws:
        stream = WsStream(ws)
        init = open_session(stream)
        pixels = screen(stream, init.width, init.height)
    if len({pixels[i:i + 4] for i in range(0, len(pixels), 4 * 97)}) < 2:
        raise CheckFailed("the VNC screen is blank")
    return f"{init.width}x{init.height}"


def serial(url: str, context: ssl.SSLContext) -> None:
    """The guest answers ENQ with its banner and echoes a short marker (its UART FIFO holds 16 bytes)."""
    with _open(url, context) as ws:
        echo_through(ws, b"echo" + secrets.token_hex(2).encode())


def spice_websocket(url: str, context: ssl.SSLContext) -> None:
    """QEMU's SPICE main channel links through the websocket, the tenant giving no password."""
    with _open(url, context) as ws:
        stream = WsStream(ws)
        reply = link(stream, CHANNEL_MAIN)
        if reply.error != LINK_OK:
            raise CheckFailed(f"SPICE link refused with error {reply.error}")
        result = authenticate(stream, reply, "")
        if result != LINK_OK:
            raise CheckFailed(f"SPICE ticket refused with error {result}")


def spice_native(host: str, port: int, context: ssl.SSLContext, token: str) -> Optional[str]:
    """None when remote-viewer's way in works (TLS, SPICE link, the token as password); else why not."""
    try:
        with socket.create_connection((host, port), timeout=DEADLINE) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                reply = link(tls, CHANNEL_MAIN)
                if reply.error != LINK_OK:
                    return f"link refused with error {reply.error}"
                result = authenticate(tls, reply, token)
                return None if result == LINK_OK else f"ticket refused with error {result}"
    except (OSError, EOFError, ValueError) as error:
        return f"{type(error).__name__}: {error}"


def website(base_url: str, ca_cert: str) -> None:
    """The VNC page and the noVNC module it imports are served (``base_url`` ends with a slash)."""
    with requests.Session() as session:
        session.trust_env = False
        for path in ("vnc.html", "novnc/core/rfb.js"):
            response = session.get(base_url + path, verify=ca_cert, timeout=DEADLINE)
            if response.status_code != 200:
                raise CheckFailed(f"{base_url}{path} answered HTTP {response.status_code}")


@dataclass(frozen=True)
class Verified:
    screen: str
    #: None when remote-viewer's native SPICE works through proxyd, else why it does not.
    native_spice_problem: Optional[str]


def verify(demo: Demo) -> Verified:
    """Every console through proxyd with the URLs the demo prints; raises what fails first."""
    context = client_context(demo.ca_cert)
    screen = vnc(demo.console("vnc").url, context)
    for console in demo.consoles:
        if console.type in TEXT_CONSOLES:
            serial(console.url, context)
    spice = demo.console("spice")
    spice_websocket(spice.url, context)
    proxy = urlsplit(demo.proxy_url)
    native = spice_native(proxy.hostname or "", proxy.port or 443, context, spice.token)
    website(demo.web_url, str(demo.ca_cert))
    return Verified(screen, native)
