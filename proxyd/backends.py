"""The console leg: a connection to QEMU (SPICE TLS port, TLS chardev, VNC) or to resolverd's console bridge.

TLS towards QEMU uses the proxy's client certificate and verifies QEMU's
certificate against --connect-ca, checking the console's host name or IP
(or --connect-server-name when set).  TLS towards the bridge uses the
resolver's certificate and CA: the bridge is part of resolverd.  Clear
text only for consoles the resolver marks insecure, and only with
--connect-insecure.
"""

import asyncio
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Optional, Type

from websockets.frames import CloseCode

from proxyd.metrics import Failure
from proxyd.refusal import Refusal
from proxyd.relay import ConsoleLeg, TlsChardevLeg
from proxyd.resolver import Console
from proxyd.vnc import vnc_handshake
from proxyd.websocket import WebSocketLeg

# resolverd.bridge's wire format, proxy side: hello line, then "OK" or "ERR <reason>".
BRIDGE_HELLO = b"LCPBRIDGE1 "
BRIDGE_MAX_LINE = 256


@dataclass(frozen=True)
class Outbound:
    """How the proxy may reach consoles."""

    connect: Optional[ssl.SSLContext]  # QEMU; None: no connect certificate configured
    bridge: Optional[ssl.SSLContext]  # resolverd's console bridge (the resolver's context)
    server_name: Optional[str]  # fixed name to check on QEMU's certificates
    allow_insecure: bool


async def open_console(console: Console, outbound: Outbound, tenant: WebSocketLeg) -> ConsoleLeg:
    """A console leg ready for the relay (for VNC: after the RFB handshake on both legs)."""
    if console.bridge_ticket is not None:
        return await _open_bridge(console, outbound)
    leg = await connect_console(console, outbound)
    if console.type == "vnc":
        vencrypt = None if console.tls_tunnel else outbound.connect
        name = outbound.server_name or console.host
        upgrade = None if vencrypt is None else (lambda: start_tls(leg, vencrypt, name))
        await vnc_handshake(tenant, leg, console, upgrade)
    return leg


async def connect_console(console: Console, outbound: Outbound) -> ConsoleLeg:
    """A connection to QEMU's port, in TLS unless the console is insecure or VNC negotiates TLS itself."""
    context = _context_for(console, outbound)
    tls_chardev = context is not None and console.type == "serial"
    leg = await _connect(console, TlsChardevLeg if tls_chardev else ConsoleLeg)
    if context is not None and (console.type != "vnc" or console.tls_tunnel):
        await start_tls(leg, context, outbound.server_name or console.host)
    return leg


def _context_for(console: Console, outbound: Outbound) -> Optional[ssl.SSLContext]:
    if console.insecure:
        if not outbound.allow_insecure:
            raise Refusal(Failure.POLICY, CloseCode.POLICY_VIOLATION, "this console is not available through TLS",
                          f"console {console.address} is marked insecure and proxyd runs without "
                          "--connect-insecure")
        return None
    if outbound.connect is None:
        raise Refusal(Failure.POLICY, CloseCode.INTERNAL_ERROR, "the proxy cannot reach TLS consoles",
                      "no --connect-cert/--connect-key/--connect-ca configured for a TLS console")
    return outbound.connect


async def _connect(console: Console, kind: Type[ConsoleLeg] = ConsoleLeg) -> ConsoleLeg:
    loop = asyncio.get_running_loop()
    try:
        _, leg = await loop.create_connection(kind, console.host, console.port)
    except OSError as exc:
        raise Refusal(Failure.BACKEND_UNREACHABLE, CloseCode.INTERNAL_ERROR, "the console is unreachable",
                      f"cannot connect to {console.address}: {_connect_error(exc)}") from None
    return leg


def _connect_error(exc: OSError) -> str:
    """Why a connection failed: asyncio's "Connect call failed ('h', p)" hides what its errno says."""
    if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


async def start_tls(leg: ConsoleLeg, context: ssl.SSLContext, server_name: str) -> None:
    """Wrap the leg's connection in TLS; the leg keeps receiving, now decrypted."""
    assert leg.transport is not None
    loop = asyncio.get_running_loop()
    try:
        transport = await loop.start_tls(leg.transport, leg, context, server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        leg.abort()
        raise Refusal(Failure.BACKEND_TLS, CloseCode.INTERNAL_ERROR, "the console's certificate is not trusted",
                      f"certificate of {server_name} rejected: {exc.verify_message}") from None
    except (ssl.SSLError, OSError) as exc:
        leg.abort()
        raise Refusal(Failure.BACKEND_TLS, CloseCode.INTERNAL_ERROR, "TLS with the console failed",
                      f"TLS with {server_name} failed: {_describe(exc)}") from None
    if transport is None:
        raise Refusal(Failure.BACKEND_TLS, CloseCode.INTERNAL_ERROR, "TLS with the console failed",
                      f"TLS with {server_name}: connection closed during the handshake")
    leg.connection_made(transport)


async def _open_bridge(console: Console, outbound: Outbound) -> ConsoleLeg:
    ticket = console.bridge_ticket or ""
    if not ticket.isascii() or not ticket.isprintable() or " " in ticket or \
            len(ticket) + len(BRIDGE_HELLO) >= BRIDGE_MAX_LINE:
        raise Refusal(Failure.RESOLVER_ANSWER, CloseCode.INTERNAL_ERROR, "the console directory gave a bad answer",
                      "malformed bridge ticket from the resolver")
    if outbound.bridge is None:
        raise Refusal(Failure.POLICY, CloseCode.INTERNAL_ERROR, "the proxy cannot reach this console",
                      "a pty console needs resolverd's bridge over TLS, and the resolver runs without TLS")
    leg = await _connect(console)
    await start_tls(leg, outbound.bridge, console.host)
    leg.send(BRIDGE_HELLO + ticket.encode("ascii") + b"\n")
    try:
        answer = await leg.read_line(BRIDGE_MAX_LINE)
    except (ValueError, ConnectionError) as exc:
        leg.abort()
        raise Refusal(Failure.BACKEND_PROTOCOL, CloseCode.INTERNAL_ERROR, "the console bridge failed",
                      f"bridge {console.address}: {exc}") from None
    if answer != b"OK":
        leg.abort()
        reason = answer[4:].decode("ascii", "replace") if answer.startswith(b"ERR ") else repr(answer[:40])
        raise Refusal(Failure.BACKEND_PROTOCOL, CloseCode.INTERNAL_ERROR, f"the console bridge refused: {reason}",
                      f"bridge {console.address} refused: {reason}")
    return leg


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc) or type(exc).__name__
