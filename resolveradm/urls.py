"""What a tenant opens to reach a console through proxyd, given proxyd's public base URL (--proxy-url).

- Every console: the websocket URL ``wss://HOST[:PORT]/websockify?token=TOKEN``
  (noVNC, spice-html5, xterm.js and websockify clients; ``ws://`` when proxyd
  listens in clear text).  noVNC takes it as host, port, encrypt and
  ``path=websockify?token=TOKEN``.
- SPICE also: a remote-viewer command speaking SPICE over TLS straight to the
  public port, with the token as the SPICE password.  The password is visible
  in the process list of the machine that runs it: fine on a tenant's own
  desktop, not on a shared one (leave it out and type it at the prompt there).
"""

import argparse
import ipaddress
import shlex
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urlsplit

WEBSOCKET_PATH = "websockify"
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class ProxyUrl:
    secure: bool
    host: str
    port: int
    path: str  # without a trailing slash; "" for the root

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS["https" if self.secure else "http"]
        return host if self.port == default else f"{host}:{self.port}"


def parse_proxy_url(text: str) -> ProxyUrl:
    """proxyd's public base URL: https://HOST[:PORT][/PATH] (http:// for a clear-text listener)."""
    parts = urlsplit(text.strip())
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{text!r}: expected an https:// (or http://) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{text!r}: a user or password has no place in the proxy URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r}: a query or fragment has no place in the proxy URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r}: the port is not a number from 1 to 65535") from None
    host = parts.hostname
    if not host or not _valid_host(host):
        raise ValueError(f"{text!r}: no valid host name or address")
    if port == 0:
        raise ValueError(f"{text!r}: the port is not a number from 1 to 65535")
    return ProxyUrl(secure=parts.scheme == "https", host=host, port=port or _DEFAULT_PORTS[parts.scheme],
                    path=parts.path.rstrip("/"))


def proxy_url_argument(text: str) -> ProxyUrl:
    try:
        return parse_proxy_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def websocket_url(proxy: ProxyUrl, token: str) -> str:
    scheme = "wss" if proxy.secure else "ws"
    return f"{scheme}://{proxy.netloc}{proxy.path}/{WEBSOCKET_PATH}?token={quote(token, safe='')}"


def remote_viewer_command(console_type: str, proxy: ProxyUrl, token: str) -> Optional[str]:
    """The remote-viewer command line for a SPICE console, None for the others."""
    if console_type != "spice":
        return None
    host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
    port_key = "tls-port" if proxy.secure else "port"
    return "remote-viewer " + shlex.quote(f"spice://{host}?{port_key}={proxy.port}&password={quote(token, safe='')}")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.rstrip(".").split(".")
        return all(label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
                   and not label.startswith("-") and not label.endswith("-") for label in labels)
