"""Drives the VNC MITM (proxyd.protocol.rfb) over a session's two legs.

The tenant sees an RFB server offering only None (the token authenticated
it); QEMU sees an RFB client that picks VeNCrypt X509None/X509Vnc, VNC
authentication or None as the console allows, and switches the QEMU leg to
TLS when the machine says so.  The tenant's security offer is held back
until QEMU accepted us, so a refusal reaches the tenant in its own RFB
version.  Afterwards both legs hold the bytes that followed their
handshakes, ready for the relay.
"""

import asyncio
from typing import Awaitable, Callable, List, Optional, Union

from websockets.frames import CloseCode

from proxyd.metrics import Failure
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.rfb import (
    AuthenticationFailed,
    BackendAuthenticated,
    RfbBackendHandshake,
    RfbTenantHandshake,
    StartTLS,
    TenantAuthenticated,
    UnsupportedSecurityType,
)
from proxyd.refusal import Refusal
from proxyd.relay import ConsoleLeg
from proxyd.resolver import Console
from proxyd.websocket import WebSocketLeg

Upgrade = Callable[[], Awaitable[None]]


class _Mitm:
    def __init__(self, tenant_leg: WebSocketLeg, console_leg: ConsoleLeg, console: Console,
                 upgrade: Optional[Upgrade]) -> None:
        self.tenant_leg = tenant_leg
        self.console_leg = console_leg
        self.console = console
        self.upgrade = upgrade
        self.tenant = RfbTenantHandshake()
        self.backend = RfbBackendHandshake(password=console.password,
                                           allow_none=console.insecure or console.tls_tunnel)
        self.tenant_done: Optional[TenantAuthenticated] = None
        self.backend_done: Optional[BackendAuthenticated] = None
        self.tls_wanted = False
        self.failure: Optional[Refusal] = None
        self._wake: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    async def run(self) -> None:
        self.tenant_leg.send(self.tenant.data_to_send())
        self.tenant_leg.on_lost(lambda exc: self._fail(Refusal(
            Failure.CLIENT_GONE, CloseCode.NORMAL_CLOSURE, "tenant left", "tenant left during the VNC handshake")))
        self.console_leg.on_lost(lambda exc: self._fail(Refusal(
            Failure.BACKEND_PROTOCOL, CloseCode.INTERNAL_ERROR, "the console closed the connection",
            f"VNC server {self.console.address} closed during the handshake")))
        self.tenant_leg.deliver_to(self._from_tenant)
        self.console_leg.deliver_to(self._from_console)
        while self.failure is None and (self.tenant_done is None or self.backend_done is None):
            if self.tls_wanted:
                await self._upgrade()
                continue
            await self._wake
            self._wake = asyncio.get_running_loop().create_future()
        if self.failure is not None:
            self._refuse_tenant(self.failure.reason)
            raise self.failure

    async def _upgrade(self) -> None:
        self.tls_wanted = False
        if self.upgrade is None:
            self._fail(Refusal(Failure.POLICY, CloseCode.INTERNAL_ERROR, "the proxy cannot reach TLS consoles",
                               "the VNC server asks for VeNCrypt and no --connect-cert is configured"))
            return
        await self.upgrade()
        if self.console_leg.held_bytes:
            self._fail(Refusal(Failure.BACKEND_PROTOCOL, CloseCode.INTERNAL_ERROR,
                               "VNC handshake with the console failed",
                               f"VNC server {self.console.address} sent data before the TLS handshake"))
            return
        self.console_leg.deliver_to(self._from_console)
        self._backend_events(self.backend.tls_established)

    def _from_tenant(self, data: bytes) -> None:
        if self.failure is not None or self.tenant_done is not None:
            return
        try:
            events = self.tenant.receive_data(data)
        except ProtocolError as exc:
            self.tenant_leg.send(self.tenant.data_to_send())
            self._fail(Refusal(Failure.CLIENT_PROTOCOL, CloseCode.PROTOCOL_ERROR, f"RFB handshake failed: {exc}"))
            return
        self._tenant_events(events)

    def _from_console(self, data: bytes) -> None:
        if self.failure is not None:
            return
        self._backend_events(lambda: self.backend.receive_data(data))

    def _backend_events(self, step: Callable[[], List[Union[StartTLS, BackendAuthenticated]]]) -> None:
        try:
            events = step()
        except ProtocolError as exc:
            self._fail(_backend_refusal(exc, self.console))
            return
        out = self.backend.data_to_send()
        if out:
            self.console_leg.send(out)
        for event in events:
            if isinstance(event, StartTLS):
                self.tls_wanted = True
                self.console_leg.hold()
            else:
                self.backend_done = event
                self.console_leg.hold(event.remaining)
                self._tenant_events(self.tenant.accept())
        self._poke()

    def _tenant_events(self, events: List[TenantAuthenticated]) -> None:
        out = self.tenant.data_to_send()
        if out:
            self.tenant_leg.send(out)
        for event in events:
            self.tenant_done = event
            self.tenant_leg.hold(event.remaining)
        self._poke()

    def _fail(self, refusal: Refusal) -> None:
        if self.failure is None:
            self.failure = refusal
        self._poke()

    def _poke(self) -> None:
        if not self._wake.done():
            self._wake.set_result(None)

    def _refuse_tenant(self, reason: str) -> None:
        if self.tenant_done is None:
            self.tenant.refuse(reason)
            out = self.tenant.data_to_send()
            if out:
                self.tenant_leg.send(out)


def _backend_refusal(exc: ProtocolError, console: Console) -> Refusal:
    detail = f"VNC server {console.address}: {exc} ({exc.reason})"
    if isinstance(exc, UnsupportedSecurityType):
        return Refusal(Failure.BACKEND_PROTOCOL, CloseCode.INTERNAL_ERROR, f"console: {exc}", detail)
    if isinstance(exc, AuthenticationFailed):
        return Refusal(Failure.BACKEND_PROTOCOL, CloseCode.INTERNAL_ERROR,
                       "the console refused the proxy's authentication", detail)
    return Refusal(Failure.BACKEND_PROTOCOL, CloseCode.INTERNAL_ERROR, "VNC handshake with the console failed", detail)


async def vnc_handshake(tenant_leg: WebSocketLeg, console_leg: ConsoleLeg, console: Console,
                        upgrade: Optional[Upgrade]) -> None:
    """Run both RFB handshakes; on return both legs hold exactly the bytes that follow them."""
    await _Mitm(tenant_leg, console_leg, console, upgrade).run()
