"""Native SPICE through proxyd: spice-glib (remote-viewer's library), remote-viewer itself and a raw link probe.

The tenant's token is the SPICE password (or the HTTP CONNECT proxy's);
proxyd links QEMU with the console's real password over mutual TLS.  Every
channel of a session goes through the one public port.  remote-viewer runs
under Xvfb (Debian: virt-viewer, xvfb, x11-apps) and is skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator, List

import libvirt_qemu
import pytest

from lab import spice_client, teardown
from lab.consoles import console_spec, enable
from lab.domain_xml import SPICE_PORT_NAME
from lab.netio import ByteStream, recv_exactly
from lab.polling import within
from lab.proxyd import Proxyd
from lab.resolverd import REPO, Resolverd
from lab.wsstream import WsStream
from lab.wsstream import close_of
from lab.xscreen import Screen, VirtualDisplay
from resolverd.logs import token_ref
from lab.spice_link import (
    CHANNEL_DISPLAY,
    CHANNEL_MAIN,
    HEADER,
    LINK_OK,
    LINK_PERMISSION_DENIED,
    authenticate,
    link,
    link_message,
    read_link_reply,
)

GUEST_SCREEN = (720, 400)
LINK_ERROR = 1
LINK_INVALID_DATA = 3
LINK_VERSION_MISMATCH = 4
LINK_BAD_CONNECTION_ID = 8
MINI_HEADER = struct.Struct("<HI")  # a message's type and size, on channels that linked with the mini header
MSGC_DISPLAY_INIT = 101
DISPLAY_INIT = struct.Struct("<BqBi")  # pixmap cache id and size, glz dictionary id and window size
MSG_SET_ACK = 3
EXPIRE_NOW = '{"execute": "expire_password", "arguments": {"protocol": "spice", "time": "now"}}'


@pytest.fixture(scope="module")
def proxyd(lab_run_dir, lab_pki, resolver) -> Iterator[Proxyd]:
    """Shared by the tests that make no failed attempt (the brake would bar 127.0.0.1 from the others)."""
    server = Proxyd(lab_run_dir, lab_pki, resolver).start()
    yield server
    server.stop()


@pytest.fixture
def own_proxyd(lab_run_dir, lab_pki, resolver) -> Iterator[Proxyd]:
    """A proxyd of the test's own, for tests that make failed attempts on purpose."""
    server = Proxyd(lab_run_dir, lab_pki, resolver, workers=1).start()
    yield server
    server.stop()


def remote_viewer(server: Proxyd, password: str, **options) -> spice_client.Outcome:
    return spice_client.connect("localhost", server.port, password, server.pki.ca_cert, **options)


def test_spice_glib_opens_every_channel_and_the_guests_screen(proxyd, tokens, guest):
    outcome = remote_viewer(proxyd, tokens["spice"])
    assert outcome.errors == []
    assert {"main:0", "display:0", "inputs:0", "cursor:0"} <= set(outcome.opened)
    assert outcome.primary == GUEST_SCREEN
    log = proxyd.log_text()
    assert tokens["spice"] not in log and guest.spice_password not in log
    assert "spice_channel=display:0" in log


def test_a_wrong_token_is_an_auth_error(own_proxyd, tokens):
    proxyd = own_proxyd
    outcome = remote_viewer(proxyd, tokens["spice"][:-1] + "x")
    assert outcome.errors == [("main:0", "error-auth")]
    assert outcome.opened == []


def test_spice_glib_through_http_connect_with_the_token_as_proxy_credentials(proxyd, tokens):
    token = tokens["spice"]
    outcome = remote_viewer(proxyd, token, proxy=f"http://tenant:{token}@127.0.0.1:{proxyd.port}")
    assert outcome.errors == []
    assert {"main:0", "display:0", "inputs:0", "cursor:0"} <= set(outcome.opened)
    assert outcome.primary == GUEST_SCREEN


SESSION_CHANNELS = {"main:0", "display:0", "inputs:0", "cursor:0"}
DEVICE_CHANNELS = {"playback:0", "record:0", "usbredir:0", "port:0"}


def test_spice_glib_opens_audio_usb_redirection_and_port_channels_and_hears_about_the_agent(
        proxyd, guests, lab_libvirtd, resolver):
    """A guest with SPICE audio, a USB redirection device, the vdagent port and a spiceport.

    No vdagent runs in the lab's boot sector, so nothing opens the agent's
    virtio port and QEMU tells the main channel the agent is not connected:
    clipboard data needs a real guest agent, which the lab does not have.
    """
    guest = guests(name="px-devices", consoles={"spice", "serial"}, spice_devices=True)
    token, = enable(lab_libvirtd.connection(), guest, console_spec("spice"))
    within(10, lambda: resolver.status(token) == 200)
    outcome = remote_viewer(proxyd, token, until_opened=("main", "display", "inputs", "cursor", "playback", "record",
                                                         "usbredir", "port"), linger=2.0, usb=True)
    assert outcome.errors == [], outcome.events
    assert DEVICE_CHANNELS <= set(outcome.announced), outcome.announced
    assert SESSION_CHANNELS | DEVICE_CHANNELS <= set(outcome.opened), outcome.events
    assert [nick for _, nick in outcome.live_events if nick != "opened"] == []  # none closed while the session ran
    assert outcome.usb_free_channels == 1  # the usbredir channel is up and ready for a device
    assert outcome.primary == GUEST_SCREEN
    assert outcome.port_names == [SPICE_PORT_NAME]
    assert outcome.agent_connected is False
    agent_port = ET.fromstring(guest.xml()).find("./devices/channel/target[@name='com.redhat.spice.0']")
    assert agent_port is not None and agent_port.get("state") == "disconnected"  # libvirt agrees: no vdagent
    log = proxyd.log_text()
    for channel in DEVICE_CHANNELS:
        assert f"spice_channel={channel}" in log
    assert token not in log and guest.spice_password not in log


def connect_request(proxy: Proxyd, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_connect_tunnel_carries_spice_with_the_token_as_host(proxyd, tokens):
    token = tokens["spice"]
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as raw:
        raw.sendall(f"CONNECT {token}:5901 HTTP/1.0\r\nHost: {token}:5901\r\n\r\n".encode())
        assert recv_exactly(raw, 39) == b"HTTP/1.1 200 Connection established\r\n\r\n"
        with proxyd.tls.wrap_socket(raw, server_hostname="localhost") as sock:
            assert main_session(sock, token) != 0
    assert connect_request(proxyd, b"CONNECT nohost HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert connect_request(proxyd, b"CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Bearer x\r\n\r\n").startswith(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n")


def test_spice_glib_through_http_connect_with_a_wrong_token_is_an_auth_error(own_proxyd, tokens):
    proxyd = own_proxyd
    wrong = tokens["spice"][:-1] + "x"
    outcome = remote_viewer(proxyd, wrong, proxy=f"http://tenant:{wrong}@127.0.0.1:{proxyd.port}")
    assert outcome.errors == [("main:0", "error-auth")]


# -- the link, byte by byte -----------------------------------------------------------------------

@contextmanager
def tls_to(proxy: Proxyd) -> Iterator[ssl.SSLSocket]:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
        with proxy.tls.wrap_socket(raw, server_hostname="localhost") as tls:
            yield tls


def main_session(sock: ByteStream, token: str) -> int:
    """Link a main channel with ``token`` and read MAIN_INIT's session id (mini header)."""
    reply = link(sock, CHANNEL_MAIN)
    assert reply.error == LINK_OK
    assert authenticate(sock, reply, token) == LINK_OK
    msg_type, size = MINI_HEADER.unpack(recv_exactly(sock, MINI_HEADER.size))
    assert msg_type == 103 and size >= 32
    return struct.unpack_from("<I", recv_exactly(sock, size))[0]


def linked(sock: ByteStream, token: str, channel_type: int, connection_id: int, channel_id: int = 0) -> int:
    """Link a channel of a session; QEMU's and the proxy's verdict (0 is OK)."""
    reply = link(sock, channel_type, channel_id, connection_id)
    if reply.error != LINK_OK:
        return reply.error
    return authenticate(sock, reply, token)


def display_opened(sock: ByteStream, token: str, session: int) -> bool:
    """Link a display channel of ``session``, then wait until QEMU's display thread answers DISPLAY_INIT.

    QEMU 7.2's spice-server creates a display channel's client in its display
    thread after the link, and crashes when the channel goes away before that
    is done ('Failed to create channel client: ... got disconnected while
    connecting channel type 2', then the guest is gone).  query-spice lists
    the channel before that, so only the thread's first message shows it is
    done.
    """
    if linked(sock, token, CHANNEL_DISPLAY, session) != LINK_OK:
        return False
    sock.sendall(MINI_HEADER.pack(MSGC_DISPLAY_INIT, DISPLAY_INIT.size) + DISPLAY_INIT.pack(1, 1024, 1, 65536))
    msg_type, _ = MINI_HEADER.unpack(recv_exactly(sock, MINI_HEADER.size))
    assert msg_type == MSG_SET_ACK
    return True


def closed(sock: ssl.SSLSocket, timeout: float = 10) -> bool:
    """True once the proxy closed ``sock`` (whatever QEMU sent before)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionError, ssl.SSLError):
        pass
    return True


@pytest.fixture(scope="module")
def once_guest(guests, lab_libvirtd, resolver, tokens):
    """A guest whose SPICE token works for one session only."""
    guest = guests(name="px-once", consoles={"spice", "serial"})
    indexed = resolver.metric("resolverd_index_tokens")
    token, = enable(lab_libvirtd.connection(), guest, console_spec("spice", once=True))
    within(10, lambda: resolver.metric("resolverd_index_tokens") > indexed)  # a look-up would claim it
    return guest, token


def test_one_time_token_one_session_whose_channels_open_late(own_proxyd, once_guest):
    proxyd = own_proxyd
    guest, token = once_guest
    with tls_to(proxyd) as main:
        session = main_session(main, token)
        with tls_to(proxyd) as again:
            assert linked(again, token, CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
        time.sleep(1)
        with tls_to(proxyd) as display:
            assert display_opened(display, token, session)
            with tls_to(proxyd) as intruder:
                assert linked(intruder, token + "x", CHANNEL_DISPLAY, session) == LINK_PERMISSION_DENIED
            main.close()
            assert closed(display)  # closing main ended the session's other channels
    with tls_to(proxyd) as late:
        assert linked(late, token, CHANNEL_DISPLAY, session) == LINK_BAD_CONNECTION_ID


def test_one_time_token_over_websockets_one_session_whose_channels_open_late(own_proxyd, guests, lab_libvirtd, resolver,
                                                                              tokens):
    """spice-html5's way: one websocket per channel, the token in the URL, an empty password."""
    proxyd = own_proxyd
    guest = guests(consoles={"spice", "serial"})
    indexed = resolver.metric("resolverd_index_tokens")
    token, = enable(lab_libvirtd.connection(), guest, console_spec("spice", once=True))
    within(10, lambda: resolver.metric("resolverd_index_tokens") > indexed)
    with proxyd.open(token, subprotocols=["binary"]) as main:
        session = main_session(WsStream(main), "")
        with proxyd.open(token) as again:
            assert linked(WsStream(again), "", CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
        time.sleep(1)
        with proxyd.open(token) as display:  # (QEMU ends the session when its display closes before main)
            assert display_opened(WsStream(display), "", session)
            with proxyd.open(tokens["spice"]) as other:  # a live token, but not the one that opened the session
                assert linked(WsStream(other), "", CHANNEL_DISPLAY, session) == LINK_PERMISSION_DENIED


def set_spice_password(guest, password: str) -> None:
    """QEMU's SPICE password, behind libvirt's back (the resolver keeps handing out the domain's)."""
    command = {"execute": "set_password", "arguments": {"protocol": "spice", "password": password}}
    libvirt_qemu.qemuMonitorCommand(guest.domain, json.dumps(command), 0)


def test_one_time_token_outlives_main_links_qemu_refused_and_then_opens_one_session(own_proxyd, guests,
                                                                                     lab_libvirtd, resolver):
    proxyd = own_proxyd
    guest = guests(consoles={"spice", "serial"})
    indexed = resolver.metric("resolverd_index_tokens")
    token, = enable(lab_libvirtd.connection(), guest, console_spec("spice", once=True))
    within(10, lambda: resolver.metric("resolverd_index_tokens") > indexed)  # a plain look-up would claim it
    set_spice_password(guest, "not-" + guest.spice_password)  # the password the resolver reports is now wrong
    with tls_to(proxyd) as sock:
        assert linked(sock, token, CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
    with proxyd.open(token) as ws:
        assert linked(WsStream(ws), "", CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
    set_spice_password(guest, guest.spice_password)
    looked_up = f"lookup {token_ref(token)} from"
    before = resolver.log_text().count(looked_up)
    with proxyd.open(token) as early:
        within(5, lambda: resolver.log_text().count(looked_up) == before + 1)  # looked up, not claimed
        with tls_to(proxyd) as main:
            session = main_session(main, token)
            assert linked(WsStream(early), "", CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
            assert close_of(early) == (1008, "this one-time token was already used")
            with tls_to(proxyd) as again:
                assert linked(again, token, CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
            with tls_to(proxyd) as display:  # QEMU never saw the refused main links: the session is whole
                assert display_opened(display, token, session)
    within(5, lambda: len(refusals(proxyd)) == 4)
    assert refusals(proxyd) == ["backend_protocol", "backend_protocol", "token_spent", "unknown_token"]
    log = proxyd.log_text()
    assert log.count("claimed one-time token") == 1 and token not in log and guest.spice_password not in log


def test_expiring_token_opens_no_session_after_its_deadline_but_its_session_keeps_opening_channels(
        own_proxyd, guests, lab_libvirtd, resolver):
    proxyd = own_proxyd
    guest = guests(consoles={"spice", "serial"})
    deadline = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=4)
    token, = enable(lab_libvirtd.connection(), guest, console_spec("spice", expires=deadline))
    within(10, lambda: resolver.status(token) == 200)
    with tls_to(proxyd) as main:
        session = main_session(main, token)
        time.sleep(max(0.0, (deadline - datetime.now(timezone.utc)).total_seconds()) + 0.5)
        with tls_to(proxyd) as display:
            assert display_opened(display, token, session)
        with tls_to(proxyd) as again:
            assert linked(again, token, CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED


def test_a_dead_workers_sessions_are_forgotten(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=1).start()
    try:
        with tls_to(proxy) as main:
            session = main_session(main, tokens["spice"])
            victim, = proxy.worker_pids()
            os.kill(victim, signal.SIGKILL)
            assert closed(main)
        within(10, lambda: len(proxy.worker_pids()) == 1 and victim not in proxy.worker_pids())
        within(10, lambda: proxy.healthy())
        with tls_to(proxy) as display:
            assert linked(display, tokens["spice"], CHANNEL_DISPLAY, session) == LINK_BAD_CONNECTION_ID
        within(5, lambda: refusals(proxy) == ["unknown_session"])  # the master's answer, not QEMU's
    finally:
        proxy.stop()


# -- bad input ------------------------------------------------------------------------------------

def error_reply(proxy: Proxyd, data: bytes) -> int:
    """Send ``data`` as a link's first bytes; the error of the whole SpiceLinkReply that comes back."""
    with tls_to(proxy) as sock:
        sock.sendall(data)
        reply = read_link_reply(sock)
        assert (reply.pub_key, reply.common_caps) == (bytes(162), [])
        assert closed(sock)
        return reply.error


def ticket_result(proxy: Proxyd, ticket: bytes) -> int:
    """Link main and send ``ticket`` as the 128 encrypted bytes; the u32 result."""
    with tls_to(proxy) as sock:
        assert link(sock, CHANNEL_MAIN).error == LINK_OK
        sock.sendall(struct.pack("<I", 1) + ticket)
        return struct.unpack("<I", recv_exactly(sock, 4))[0]


def refusals(proxy: Proxyd) -> List[str]:
    return re.findall(r"refused client=\S+ reason=(\w+)", proxy.log_text())


def test_bad_links_get_their_error_one_log_line_each_and_other_sessions_go_on(lab_run_dir, lab_pki, resolver, tokens,
                                                                              guests, lab_libvirtd):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, "--handshake-timeout", "2", workers=1).start()
    hung = guests(consoles={"spice", "serial"})
    hung_token, = enable(lab_libvirtd.connection(), hung, console_spec("spice"))
    within(10, lambda: resolver.status(hung_token) == 200)
    try:
        with tls_to(proxy) as bystander:
            session = main_session(bystander, tokens["spice"])
            mess = link_message(CHANNEL_MAIN)
            body = mess[HEADER.size:]
            assert error_reply(proxy, HEADER.pack(b"REDQ", 3, 2, len(body)) + body) == LINK_VERSION_MISMATCH
            assert error_reply(proxy, HEADER.pack(b"REDQ", 2, 2, 5000)) == LINK_INVALID_DATA
            caps_past = struct.pack("<IBBIII", 0, 1, 0, 5, 0, 18)
            assert error_reply(proxy, HEADER.pack(b"REDQ", 2, 2, len(caps_past)) + caps_past) == LINK_INVALID_DATA
            assert error_reply(proxy, mess[:20]) == LINK_ERROR  # truncated: nothing more before the time-out
            assert error_reply(proxy, link_message(CHANNEL_DISPLAY, connection_id=0x0BAD)) == LINK_BAD_CONNECTION_ID
            with tls_to(proxy) as sock:  # QEMU just closes on a display it does not have
                sock.sendall(link_message(CHANNEL_DISPLAY, channel_id=7, connection_id=session))
                assert read_link_reply(sock).error == LINK_ERROR
            assert ticket_result(proxy, os.urandom(128)) == LINK_PERMISSION_DENIED  # does not decrypt
            with tls_to(proxy) as sock:
                assert linked(sock, tokens["spice"] + "x", CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
            libvirt_qemu.qemuMonitorCommand(hung.domain, EXPIRE_NOW, 0)  # QEMU now refuses the real password
            with tls_to(proxy) as sock:
                assert linked(sock, hung_token, CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
            os.kill(hung.qemu_pid(), signal.SIGSTOP)
            try:
                with tls_to(proxy) as sock:
                    assert linked(sock, hung_token, CHANNEL_MAIN, 0) == LINK_ERROR
            finally:
                os.kill(hung.qemu_pid(), signal.SIGCONT)
            with tls_to(proxy) as display:  # the session opened first still opens channels
                assert display_opened(display, tokens["spice"], session)
                within(3, lambda: [proxy.metric(f'proxyd_{family}_open{{type="spice"}}')
                                   for family in ("sessions", "channels")] == [1, 2])
        expected = ["client_protocol", "client_protocol", "client_protocol", "timeout", "unknown_session",
                    "backend_protocol", "client_protocol", "unknown_token", "backend_protocol", "timeout"]
        within(5, lambda: len(refusals(proxy)) == len(expected))  # the client may hear before the line is written
        assert refusals(proxy) == expected
        log = proxy.log_text()
        assert re.findall(r"reason=timeout detail='[^']*, waiting for ([^']+)'", log) == \
            ["the SPICE link, from the tenant or the console"] * 2
        assert re.search(r"SPICE server 127\.0\.0\.1:\d+: backend refused the link after the ticket: PERMISSION_DENIED",
                         log)
        assert "Traceback" not in log and tokens["spice"] not in log and hung_token not in log
        # Two failed tickets and an unknown session so far: the fifth failure bars the address.
        for guess in ("guess-1", "guess-2"):
            with tls_to(proxy) as sock:
                assert linked(sock, guess, CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
        with tls_to(proxy) as sock:
            assert linked(sock, tokens["spice"], CHANNEL_MAIN, 0) == LINK_PERMISSION_DENIED
        within(5, lambda: refusals(proxy)[-1:] == ["rate_limited"])
        assert "reason=rate_limited detail='too many failed attempts; try again in 30 s'" in proxy.log_text()
    finally:
        proxy.stop()


def test_a_console_whose_qemu_is_down_gets_a_link_error_one_log_line_and_other_sessions_go_on(
        own_proxyd, guests, lab_libvirtd, resolver, tokens):
    """The console's metadata sends the proxy to 127.0.0.2, where nothing listens (QEMU listens on 127.0.0.1)."""
    proxyd = own_proxyd
    guest = guests(consoles={"spice"})
    token, = enable(lab_libvirtd.connection(), guest, console_spec("spice", host="127.0.0.2"))
    within(10, lambda: resolver.status(token) == 200)
    address = f"127.0.0.2:{guest.spice_tls_port}"
    assert resolver.lookup(token).json()["address"] == address  # what the resolver hands the proxy
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", guest.spice_tls_port), timeout=5).close()
    with tls_to(proxyd) as bystander:
        session = main_session(bystander, tokens["spice"])
        # Front (a), token in the ticket: the link reply went out before the token was known, so the
        # error is the u32 after the ticket.
        with tls_to(proxyd) as sock:
            assert linked(sock, token, CHANNEL_MAIN, 0) == LINK_ERROR
            assert closed(sock)
        # Front (b), token in the CONNECT host: known before the link, so the whole SpiceLinkReply carries it.
        with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as raw:
            raw.sendall(f"CONNECT {token}:5901 HTTP/1.0\r\n\r\n".encode())
            assert recv_exactly(raw, 39) == b"HTTP/1.1 200 Connection established\r\n\r\n"
            with proxyd.tls.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(link_message(CHANNEL_MAIN))
                reply = read_link_reply(sock)
                assert (reply.error, reply.pub_key, reply.common_caps) == (LINK_ERROR, bytes(162), [])
                assert closed(sock)
        # What spice-glib makes of them: an error after the ticket is all "auth" to it, a link reply's is "link".
        assert remote_viewer(proxyd, token).errors == [("main:0", "error-auth")]
        outcome = remote_viewer(proxyd, token, proxy=f"http://tenant:{token}@127.0.0.1:{proxyd.port}")
        assert outcome.errors == [("main:0", "error-link")] and outcome.opened == []
        with tls_to(proxyd) as display:  # the session opened before still opens channels
            assert display_opened(display, tokens["spice"], session)
    assert proxyd.healthy()
    within(5, lambda: len(refusals(proxyd)) == 4)
    assert refusals(proxyd) == ["backend_unreachable"] * 4
    log = proxyd.log_text()
    lines = [line for line in log.splitlines() if "127.0.0.2" in line]
    assert len(lines) == 4, lines
    for line in lines:
        assert "reason=backend_unreachable" in line and f"cannot connect to {address}: Connection refused" in line
    assert "Traceback" not in log and token not in log and tokens["spice"] not in log
    assert guest.spice_password not in log


# -- remote-viewer files --------------------------------------------------------------------------

@pytest.mark.parametrize("connect_proxy", [False, True], ids=["direct", "connect-proxy"])
def test_resolveradm_vv_file_opens_the_console(proxyd, tokens, guest, lab_libvirtd, lab_run_dir, connect_proxy):
    vv_file = lab_run_dir / f"{guest.name}-{connect_proxy}.vv"
    command = [sys.executable, "-m", "resolveradm", "--config", os.devnull, "-c", lab_libvirtd.uri, "vv",
               guest.name, "--proxy", f"127.0.0.1:{proxyd.port}", "--ca", str(proxyd.pki.ca_cert),
               "--proxy-cert", str(proxyd.pki.proxyd_server.cert), "-o", str(vv_file)]
    if connect_proxy:
        command.append("--connect-proxy")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == done.stderr == "", done.stderr
    assert vv_file.stat().st_mode & 0o777 == 0o600
    text = vv_file.read_text()
    assert f"password={tokens['spice']}\n" in text and "delete-this-file=1\n" in text
    assert ("proxy=http://" in text) == connect_proxy
    outcome = spice_client.connect_vv(vv_file, lab_run_dir)
    assert outcome.errors == []
    assert {"main:0", "display:0", "inputs:0", "cursor:0"} <= set(outcome.opened)
    assert outcome.primary == GUEST_SCREEN


VGA_BLUE = 0x0000A8  # the lab guest's screen: white text on blue, in QEMU's VGA palette


@pytest.mark.skipif(shutil.which("remote-viewer") is None or shutil.which("Xvfb") is None
                    or shutil.which("xwd") is None, reason="needs virt-viewer, xvfb and x11-apps")
def test_remote_viewer_under_xvfb_shows_the_guests_screen(proxyd, tokens, guest, lab_libvirtd, lab_run_dir):
    vv_file = lab_run_dir / f"{guest.name}-remote-viewer.vv"
    done = subprocess.run([sys.executable, "-m", "resolveradm", "--config", os.devnull, "-c", lab_libvirtd.uri, "vv",
                           guest.name, "--proxy", f"127.0.0.1:{proxyd.port}", "--ca", str(proxyd.pki.ca_cert),
                           "--proxy-cert", str(proxyd.pki.proxyd_server.cert), "-o", str(vv_file)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with VirtualDisplay() as display:
        viewer = subprocess.Popen(["remote-viewer", str(vv_file)], env=display.env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        with teardown.started(lambda: None, lambda: stop(viewer)):
            last: List[Screen] = []

            def guest_on_screen() -> bool:
                assert viewer.poll() is None, f"remote-viewer exited: {stop(viewer)}"
                last[:] = [display.screenshot()]
                guest_area = last[0].colours_around(VGA_BLUE)  # the blue screen, and the banner's text on it
                return guest_area[VGA_BLUE] >= GUEST_SCREEN[0] * GUEST_SCREEN[1] // 2 and len(guest_area) > 1

            try:
                within(30, guest_on_screen)
            except AssertionError:
                colours = [(f"{rgb:06x}", n) for rgb, n in last[0].colours().most_common(6)] if last else []
                raise AssertionError(f"screen colours {colours}; remote-viewer said: {stop(viewer)}") from None
            assert not vv_file.exists()  # delete-this-file=1


def stop(process: subprocess.Popen) -> str:
    """End a process group started with start_new_session; the end of what it printed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        output = process.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate(timeout=10)[0]
    return output.decode(errors="replace")[-2000:]


def test_resolverd_hands_management_apps_a_vv_file_without_claiming_a_one_time_token(
        proxyd, guests, lab_libvirtd, lab_run_dir, lab_pki, tokens):
    server = Resolverd(lab_run_dir, lab_pki, [lab_libvirtd.uri], log_level="info", extra_args=[
        "--proxy-public", f"127.0.0.1:{proxyd.port}", "--proxy-ca", str(lab_pki.ca_cert),
        "--proxy-cert", str(lab_pki.proxyd_server.cert)])
    with teardown.started(server.start, server.stop):
        guest = guests(consoles={"spice", "serial"})
        token, = enable(lab_libvirtd.connection(), guest, console_spec("spice", once=True))
        url = f"{server.base}/consoleresolver/token/{token}"
        within(10, lambda: server.session.get(url, params={"format": "vv"}, timeout=10).status_code == 200)
        answer = server.session.get(url, params={"format": "vv", "connect-proxy": "1"}, timeout=10)
        assert answer.headers["Content-Type"].startswith("application/x-virt-viewer")
        assert f"\ntitle={guest.name}\n" in answer.text and f"proxy=http://console:{token}@" in answer.text
        vv_file = lab_run_dir / f"{guest.name}-api.vv"
        vv_file.write_text(server.session.get(url, params={"format": "vv"}, timeout=10).text)
        outcome = spice_client.connect_vv(vv_file, lab_run_dir)  # the token's first use: proxyd claims it
        assert outcome.errors == [] and outcome.primary == GUEST_SCREEN
        assert server.session.get(url, params={"format": "vv"}, timeout=10).status_code == 404
        vnc = server.session.get(f"{server.base}/consoleresolver/token/{tokens['vnc']}", params={"format": "vv"},
                                 timeout=10)
        assert vnc.status_code == 404
        log = server.log_text()
        assert "remote-viewer file for tok-" in log and token not in log and tokens["vnc"] not in log
