"""What the demo prints once its consoles are verified: URLs, commands, tokens, the CA to trust."""

from __future__ import annotations

import shlex
from typing import Optional
from urllib.parse import quote, urlencode, urlsplit

from ..resolverd import REPO
from .stack import TEXT_CONSOLES, Demo

DEMO_COMMAND = REPO / "scripts" / "demo"
_TEXT_CONSOLE_NAMES = {
    "serial 0": "Serial port 0, a pty reached through resolverd's console bridge",
    "serial 1": "Serial port 1, a TLS chardev reached straight from QEMU",
    "console 0": "Console 0, the domain's <console>: serial port 0's pty again",
}


def novnc_url(demo: Demo, token: str) -> str:
    """The demo's noVNC page, told (noVNC's own query parameters) to open this token's websocket."""
    proxy = urlsplit(demo.proxy_url)
    query = urlencode({"host": proxy.hostname, "port": proxy.port, "encrypt": 1,
                       "path": f"websockify?token={token}"}, quote_via=quote)
    return f"{demo.web_url}vnc.html?{query}"


def serial_command(demo: Demo, url: str) -> str:
    return shlex.join([str(DEMO_COMMAND), "serial", "--ca", str(demo.ca_cert), url])


def render(demo: Demo, up_seconds: float, native_spice_problem: Optional[str], screen: str) -> str:
    vnc, spice = demo.console("vnc"), demo.console("spice")
    serials = [console for console in demo.consoles if console.type in TEXT_CONSOLES]
    lines = [
        f"virt-console-proxy demo: up in {up_seconds:.0f} s, every console below checked through proxyd.",
        "",
        f"Guest '{demo.guest.name}' on a private libvirtd: {demo.guest.libvirtd.uri}",
        f"Enabled with: {demo.enable_command}",
        f"proxyd: {demo.proxy_url} (listening on {demo.settings.proxy_listen})",
        "",
        "Tokens:",
        *(f"  {console.label:9} {console.token}" for console in demo.consoles),
        "",
        f"VNC in a browser (noVNC; {screen} screen checked):",
        f"  {novnc_url(demo, vnc.token)}",
        f"  websocket: {vnc.url}",
        "",
    ]
    for console in serials:
        lines += [f"{_TEXT_CONSOLE_NAMES.get(console.label, console.label)} (the guest echoes what you type):",
                  f"  websocket: {console.url}",
                  f"  terminal:  {serial_command(demo, console.url)}",
                  "             (Ctrl-] leaves)",
                  ""]
    lines += ["SPICE over the websocket (spice-html5 and the like, no password needed; link checked):",
              f"  websocket: {spice.url}"]
    if native_spice_problem is None:
        lines += ["SPICE in remote-viewer (checked):", f"  {spice.remote_viewer}"]
    else:
        lines += ["remote-viewer: not yet; this proxyd does not speak native SPICE on its public port",
                  f"  ({native_spice_problem}). Once it does: {spice.remote_viewer}"]
    lines += [
        "",
        f"The CA that signed every certificate: {demo.ca_cert}",
        f"  (also at {demo.web_url}ca-cert.pem). Import it in the browser as an authority trusted",
        "  for websites, or open both of these once and accept the certificate warning:",
        f"  {demo.proxy_url}/   {demo.web_url}",
        f"Logs and files: {demo.run_dir} (removed when the demo stops)",
    ]
    return "\n".join(lines)

