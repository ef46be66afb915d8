"""Native SPICE through proxyd: spice-glib (remote-viewer's library) and a raw link probe against lab guests.

The tenant's token is the SPICE password; proxyd links QEMU with the
console's real password over mutual TLS.  Every channel of a session goes
through the one public port.
"""

from __future__ import annotations

import socket
import ssl
import struct
from contextlib import contextmanager
from typing import Iterator

import pytest

from lab import spice_client
from lab.netio import recv_exactly
from lab.proxyd import Proxyd
from lab.spice_link import CHANNEL_DISPLAY, CHANNEL_MAIN, LINK_OK, LINK_PERMISSION_DENIED, authenticate, link

GUEST_SCREEN = (720, 400)


@pytest.fixture(scope="module")
def proxyd(lab_run_dir, lab_pki, resolver) -> Iterator[Proxyd]:
    server = Proxyd(lab_run_dir, lab_pki, resolver).start()
    yield server
    server.stop()


def remote_viewer(proxy: Proxyd, password: str, **options) -> spice_client.Outcome:
    return spice_client.connect("localhost", proxy.port, password, proxy.pki.ca_cert, **options)


def test_spice_glib_opens_every_channel_and_the_guests_screen(proxyd, tokens, guest):
    outcome = remote_viewer(proxyd, tokens["spice"])
    assert outcome.errors == []
    assert {"main:0", "display:0", "inputs:0", "cursor:0"} <= set(outcome.opened)
    assert outcome.primary == GUEST_SCREEN
    log = proxyd.log_text()
    assert tokens["spice"] not in log and guest.spice_password not in log
    assert "spice_channel=display:0" in log


def test_a_wrong_token_is_an_auth_error(proxyd, tokens):
    outcome = remote_viewer(proxyd, tokens["spice"][:-1] + "x")
    assert outcome.errors == [("main:0", "error-auth")]
    assert outcome.opened == []


# -- the link, byte by byte -----------------------------------------------------------------------

@contextmanager
def tls_to(proxy: Proxyd) -> Iterator[ssl.SSLSocket]:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
        with proxy.tls.wrap_socket(raw, server_hostname="localhost") as tls:
            yield tls


def main_session(sock: ssl.SSLSocket, token: str) -> int:
    """Link a main channel with ``token`` and read MAIN_INIT's session id (mini header)."""
    reply = link(sock, CHANNEL_MAIN)
    assert reply.error == LINK_OK
    assert authenticate(sock, reply, token) == LINK_OK
    msg_type, size = struct.unpack("<HI", recv_exactly(sock, 6))
    assert msg_type == 103 and size >= 32
    return struct.unpack_from("<I", recv_exactly(sock, size))[0]
