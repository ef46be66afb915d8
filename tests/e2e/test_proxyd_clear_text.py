"""Clear text only where the operator asks for it (issue 5): --listen-insecure and --connect-insecure."""

import contextlib
import socket
import ssl

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lab.bootsector import BANNER, ENQ
from lab.consoles import console_spec, enable
from lab.polling import within
from lab.proxyd import Proxyd
from lab.spice_link import CHANNEL_MAIN, LINK_OK, link, link_message
from lab.wsstream import DEADLINE, WsStream, close_of


def test_a_console_marked_insecure_is_reached_in_clear_text_only_with_connect_insecure(
        lab_run_dir, lab_pki, resolver, guests, lab_libvirtd):
    guest = guests(consoles={"spice"}, wait=False)
    (token,) = enable(lab_libvirtd.connection(), guest, console_spec("spice", insecure=True))
    within(10, lambda: resolver.lookup(token).status_code == 200)
    plain = f"127.0.0.1:{guest.spice_port}"
    assert resolver.lookup(token).json()["address"] == plain  # SPICE's clear-text port, not its tls-port

    strict = Proxyd(lab_run_dir, lab_pki, resolver, workers=1).start()
    try:
        with strict.open(token, subprotocols=["binary"]) as ws:
            with contextlib.suppress(ConnectionClosed):  # the refusal may come before the link, or after it
                ws.send(link_message(CHANNEL_MAIN))
            assert close_of(ws) == (1008, "this console is not available through TLS")
    finally:
        strict.stop()

    lenient = Proxyd(lab_run_dir, lab_pki, resolver, "--connect-insecure", workers=1).start()
    try:
        with lenient.open(token, subprotocols=["binary"]) as ws:  # QEMU's link reply, or the MITM's once it linked
            reply = link(WsStream(ws), CHANNEL_MAIN)
            assert (reply.major, reply.error) == (2, LINK_OK)
        assert "reason=backend" not in lenient.log_text()
    finally:
        lenient.stop()


def test_a_clear_text_listener_serves_websockets_and_no_tls(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, "--listen-insecure", workers=1)
    proxy.drop_flag("--tls-cert")
    proxy.drop_flag("--tls-key")
    proxy.start()
    try:
        assert f"proxyd listening on 127.0.0.1:{proxy.port} (clear text)" in proxy.log_text()
        with connect(f"ws://localhost:{proxy.port}/websockify?token={tokens['serial0']}",
                     open_timeout=DEADLINE) as ws:
            stream = WsStream(ws)
            stream.sendall(ENQ)
            stream.read_until(BANNER)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as raw:
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                proxy.tls.wrap_socket(raw, server_hostname="localhost")
    finally:
        proxy.stop()
