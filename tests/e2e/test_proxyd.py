"""proxyd end to end: the real daemon (master + forked workers) between websocket clients and lab guests.

Everything is real: a private libvirtd with QEMU guests (SPICE TLS port,
VNC VeNCrypt x509 with client verification, a pty serial through
resolverd's bridge, a TLS chardev serial), consoles enabled with
resolveradm's own code, resolverd as a subprocess with mutual TLS, and
proxyd as a subprocess.  The tenant is the ``websockets`` library's client
with a small RFB/SPICE/serial speaker on top.
"""

import asyncio
import base64
import os
import re
import signal
import socket
import time
from contextlib import ExitStack
from typing import Awaitable, Callable, Dict, Iterator, List

import pytest
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from lab.consoles import console_spec, enable, tokens_of
from lab.polling import within
from lab.ports import free_port
from lab.proxyd import Proxyd
from lab.spice_link import CHANNEL_MAIN, LINK_OK, authenticate, link, link_message
from lab.vnc_vencrypt import RFB_VERSION, finish
from lab.wsstream import DEADLINE, WsStream, banner_through, close_of, echo_through
from resolverd.logs import token_ref


@pytest.fixture(scope="module")
def proxyd(lab_run_dir, lab_pki, resolver) -> Iterator[Proxyd]:
    server = Proxyd(lab_run_dir, lab_pki, resolver, "--ping-interval", "1").start()
    yield server
    server.stop()


# -- consoles -----------------------------------------------------------------------------------

def test_serial_echo_through_the_tls_chardev(proxyd, tokens):
    with proxyd.open(tokens["serial1"], subprotocols=["binary"]) as ws:
        assert ws.subprotocol == "binary"
        echo_through(ws, b"tls-echo")


def test_a_pasted_line_reaches_the_tls_chardev_whole(proxyd, tokens):
    """QEMU reads a chardev's TLS record only as far as the guest's FIFO has room: proxyd ends each write with a
    one-byte record.  Three pastes back to back also arrive while the FIFO is full."""
    with proxyd.open(tokens["serial1"]) as ws:
        stream = WsStream(ws)
        banner_through(stream)
        pasted = bytes(range(0x41, 0x5b)) * 18  # 468 bytes in one websocket message
        stream.sendall(pasted)
        stream.read_until(pasted)
        pastes = [bytes(range(0x61, 0x7b)) * n for n in (1, 7, 40)]
        for paste in pastes:
            stream.sendall(paste)
        stream.read_until(b"".join(pastes))


def test_serial_echo_through_the_pty_bridge(proxyd, tokens):
    with proxyd.open(tokens["serial0"]) as ws:
        echo_through(ws, b"pty-echo")


def test_serial_in_base64_text_messages(proxyd, tokens):
    with proxyd.open(tokens["serial1"], subprotocols=["base64"]) as ws:
        assert ws.subprotocol == "base64"
        ws.send(base64.b64encode(b"b64echo").decode())
        seen = b""
        while b"b64echo" not in seen:
            message = ws.recv(timeout=DEADLINE)
            assert isinstance(message, str)
            seen += base64.b64decode(message)


def test_vnc_through_vencrypt_reaches_the_framebuffer(proxyd, tokens):
    with proxyd.open(tokens["vnc"], subprotocols=["binary", "base64"]) as ws:
        stream = WsStream(ws)
        assert stream.recv(12) == RFB_VERSION
        stream.sendall(RFB_VERSION)
        assert stream.recv(2) == b"\x01\x01"  # one security type: None (the token authenticated us)
        stream.sendall(b"\x01")
        init = finish(stream)  # SecurityResult, ClientInit, ServerInit: from QEMU, through VeNCrypt
        assert (init.width, init.height) == (720, 400)
        pixels = framebuffer(stream, init.width, init.height)
    assert len(set(pixels[i:i + 4] for i in range(0, len(pixels), 4))) > 1  # the banner on blue: not blank


def framebuffer(stream: WsStream, width: int, height: int) -> bytes:
    """Ask for the whole screen in raw encoding (QEMU's default 32 bpp) and read it back."""
    stream.sendall(b"\x02\x00" + (1).to_bytes(2, "big") + (0).to_bytes(4, "big", signed=True))  # Raw only
    stream.sendall(b"\x03\x00" + b"\x00\x00\x00\x00" + width.to_bytes(2, "big") + height.to_bytes(2, "big"))
    pixels = bytearray()
    while len(pixels) < width * height * 4:
        kind = stream.recv_exactly(1)[0]
        assert kind == 0, f"unexpected server message {kind}"
        count = int.from_bytes(stream.recv_exactly(3)[1:], "big")
        for _ in range(count):
            head = stream.recv_exactly(12)
            w, h = int.from_bytes(head[4:6], "big"), int.from_bytes(head[6:8], "big")
            encoding = int.from_bytes(head[8:12], "big", signed=True)
            if encoding == -223:  # DesktopSize pseudo-rectangle: no pixels
                continue
            assert encoding == 0
            pixels += stream.recv_exactly(w * h * 4)
    return bytes(pixels)


def test_spice_link_over_websocket_gets_a_valid_reply(proxyd, tokens, guest):
    with proxyd.open(tokens["spice"], subprotocols=["binary"]) as ws:
        stream = WsStream(ws)
        reply = link(stream, CHANNEL_MAIN)
        assert (reply.major, reply.error, len(reply.pub_key)) == (2, LINK_OK, 162)
        assert authenticate(stream, reply, tokens["spice"]) == 0  # the proxy's SPICE MITM: QEMU's password stays


# -- refusals -----------------------------------------------------------------------------------

def test_missing_and_unknown_tokens_are_refused_then_braked(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=1).start()  # its own brake: other tests go on
    try:
        with proxy.open(None) as ws:
            assert close_of(ws) == (1008, "no token: add ?token=... to the URL or send a token cookie")
        guesses = [tokens["vnc"] + "x"] + ["guess-" + os.urandom(4).hex() for _ in range(4)]
        for guess in guesses:
            with proxy.open(guess) as ws:
                assert close_of(ws) == (1008, "unknown or expired token")
        with proxy.open(tokens["serial1"]) as ws:  # even a good token waits now
            code, reason = close_of(ws)
        assert code == 1008 and re.fullmatch(r"too many failed attempts; try again in \d+ s", reason)
        log = proxy.log_text()
        assert all(guess not in log for guess in guesses) and tokens["serial1"] not in log
        within(3, lambda: proxy.metric('proxyd_handshake_failures_total{reason="unknown_token"}') == 5)
        assert proxy.metric('proxyd_handshake_failures_total{reason="rate_limited"}') == 1
        assert proxy.metric('proxyd_handshake_failures_total{reason="no_token"}') == 1
    finally:
        proxy.stop()


def test_token_in_a_cookie(proxyd, tokens):
    with connect(proxyd.url(None), ssl=proxyd.tls, additional_headers={"Cookie": f"token={tokens['serial1']}"},
                 open_timeout=DEADLINE) as ws:
        echo_through(ws, b"cookie")


def raw_tls(proxyd: Proxyd, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=DEADLINE) as raw:
        with proxyd.tls.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(request)
            answer = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    return answer
                answer += chunk


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /websockify?token=x HTTP/1.1\r\nHost: localhost\r\n\r\n", b"426"),
    (b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n", b"404"),
    (b"POST /websockify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", b"400"),
    (b"GET /websockify HTTP/1.0\r\nHost: localhost\r\n\r\n", b"400"),
    (b"\x00\x01\x02\x03 not http\r\n\r\n", b"400"),
])
def test_plain_http_gets_a_clear_4xx(proxyd, request_bytes, status):
    assert raw_tls(proxyd, request_bytes).startswith(b"HTTP/1.1 " + status + b" ")


def test_clear_text_on_the_tls_port_is_told_to_use_tls(proxyd):
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=DEADLINE) as raw:
        raw.sendall(b"GET /websockify HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400 Bad Request")


def test_foreign_origin_is_forbidden_own_origin_allowed(proxyd, tokens):
    with pytest.raises(InvalidStatus) as refused:
        proxyd.open(tokens["serial1"], origin="https://evil.example")
    assert refused.value.response.status_code == 403
    with proxyd.open(tokens["serial1"], origin=f"https://localhost:{proxyd.port}") as ws:
        echo_through(ws, b"same-org")


def test_oversized_and_malformed_frames_close_the_session(proxyd, tokens):
    """Each bad frame gets its close code, even while the tenant is still sending (the proxy lingers).

    The tenant here is the websockets asyncio client: its one thread does every TLS read and write.
    The sync client reads in a thread of its own, and a write right after the handshake then races
    that reader on the same SSL object (seen as SSLZeroReturnError or SSLEOFError on the write).
    """
    async def close_code(send: Callable[[AsyncConnection], Awaitable[None]]) -> int:
        async with async_connect(proxyd.url(tokens["serial1"]), ssl=proxyd.tls, max_size=None,
                                 open_timeout=DEADLINE) as ws:
            await send(ws)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), DEADLINE)
        frame = closed.value.rcvd
        assert frame is not None, f"no close frame: {closed.value}"
        return frame.code

    async def unmasked(ws: AsyncConnection) -> None:
        ws.transport.write(b"\x82\x03abc")  # a client frame without a mask

    assert asyncio.run(close_code(lambda ws: ws.send(b"x" * (1024 * 1024 + 1)))) == 1009
    assert asyncio.run(close_code(lambda ws: ws.send("text without the base64 subprotocol"))) == 1003
    assert asyncio.run(close_code(unmasked)) == 1002


def test_a_handshake_that_never_completes_times_out(lab_run_dir, lab_pki, resolver):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, "--handshake-timeout", "1", workers=1).start()
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port)) as silent:
            silent.settimeout(5)
            assert silent.recv(1) == b""  # nothing sent, nothing said: closed
        with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
            with proxy.tls.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.settimeout(5)
                tls.sendall(b"GET /websockify?token=x HTTP/1.1\r\n")  # and never the rest
                assert tls.recv(4096).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 4
        within(3, lambda: proxy.metric('proxyd_handshake_failures_total{reason="timeout"}') == 2)
        assert re.findall(r"reason=timeout detail='handshake not done after 1 s, waiting for ([^']+)'",
                          proxy.log_text()) == ["the first bytes", "the upgrade request"]
    finally:
        proxy.stop()


def test_resolver_down_or_stalled_is_a_clear_refusal(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, "--resolver-read-timeout", "0.5",
                   "--resolver-connect-timeout", "0.5", workers=1).start()
    try:
        os.killpg(resolver.process.pid, signal.SIGSTOP)  # gunicorn and its worker: accepts TCP, never answers
        try:
            started = time.monotonic()
            with proxy.open(tokens["serial1"]) as ws:
                assert close_of(ws) == (1013, "the console directory is unavailable; try again later")
            assert time.monotonic() - started < 5
        finally:
            os.killpg(resolver.process.pid, signal.SIGCONT)
        with proxy.open(tokens["serial1"]) as ws:
            echo_through(ws, b"back")
    finally:
        proxy.stop()
    down = Proxyd(lab_run_dir, lab_pki, resolver, workers=1)
    down.set_flag("--resolver-uri", f"https://localhost:{free_port()}/consoleresolver")
    down.start()
    try:
        with down.open(tokens["serial1"]) as ws:
            assert close_of(ws) == (1013, "the console directory is unavailable; try again later")
    finally:
        down.stop()


def test_backend_certificate_from_a_foreign_ca(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=1, connect_ca=lab_pki.foreign_ca_cert).start()
    try:
        for console in ("serial1", "vnc", "spice"):
            with proxy.open(tokens[console]) as ws:
                if console == "spice":
                    ws.send(link_message(CHANNEL_MAIN))  # the SPICE MITM waits for the link, as QEMU does
                assert close_of(ws) == (1011, "the console's certificate is not trusted")
        assert "reason=backend_tls detail='certificate of 127.0.0.1 rejected" in proxy.log_text()
    finally:
        proxy.stop()


def test_backend_refusing_our_certificate(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=1, connect_pair=lab_pki.foreign_client).start()
    try:
        with proxy.open(tokens["serial1"]) as ws:  # QEMU finishes TLS, then checks our certificate and closes
            assert close_of(ws) == (1011, "the console refused the connection")
        with proxy.open(tokens["vnc"]) as ws:
            ws.recv(timeout=DEADLINE)  # the version comes from the proxy's side of the MITM
            assert close_of(ws) == (1011, "the console closed the connection")
    finally:
        proxy.stop()


# -- failures while sessions run ----------------------------------------------------------------

def test_qemu_killed_mid_session_closes_only_its_session(proxyd, tokens, guests, lab_libvirtd, resolver):
    victim = guests(consoles={"tls-serial"})
    victim_tokens = tokens_of(lab_libvirtd.connection(), victim)
    within(10, lambda: resolver.lookup(victim_tokens["serial0"]).status_code == 200)
    with proxyd.open(tokens["serial1"]) as bystander, proxyd.open(victim_tokens["serial0"]) as doomed:
        echo_through(doomed, b"pre-kill")
        echo_through(bystander, b"by-pre")
        os.kill(victim.qemu_pid(), signal.SIGKILL)
        code, reason = close_of(doomed)
        assert code in (1000, 1011) and "console" in reason
        echo_through(bystander, b"by-post")


def vnc_session(stack: ExitStack, proxy: Proxyd, token: str) -> WsStream:
    """A VNC session through the proxy, up to ServerInit (QEMU lets many viewers share the screen)."""
    stream = WsStream(stack.enter_context(proxy.open(token)))
    rfb_handshake(stream)
    return stream


def rfb_handshake(stream: WsStream) -> None:
    """The tenant's side of the RFB handshake through the proxy, up to ServerInit."""
    assert stream.recv(12) == RFB_VERSION
    stream.sendall(RFB_VERSION)
    assert stream.recv(2) == b"\x01\x01"
    stream.sendall(b"\x01")
    finish(stream)


def test_a_one_time_token_is_spent_by_the_first_session_its_console_accepted(lab_run_dir, lab_pki, resolver, guests,
                                                                             lab_libvirtd):
    """Not by an attempt the console never answered; of two tenants looked up together, the first through wins."""
    victim = guests(consoles={"vnc"})
    indexed = resolver.metric("resolverd_index_tokens")
    token, = enable(lab_libvirtd.connection(), victim, console_spec("vnc", once=True))
    within(10, lambda: resolver.metric("resolverd_index_tokens") > indexed)  # a plain look-up would claim it
    impatient = Proxyd(lab_run_dir, lab_pki, resolver, "--handshake-timeout", "2", workers=1).start()
    try:
        os.kill(victim.qemu_pid(), signal.SIGSTOP)
        try:
            with impatient.open(token) as ws:
                assert close_of(ws) == (1013, "timed out opening the console")
        finally:
            os.kill(victim.qemu_pid(), signal.SIGCONT)
    finally:
        impatient.stop()
    assert re.findall(r"refused client=\S+ reason=(\w+) detail='[^']*waiting for the console \S+ and the RFB",
                      impatient.log_text()) == ["timeout"]
    # The second tenant's handshake waits for the first's, so this proxy keeps the default time-out:
    # two seconds are not always enough for both on a loaded machine.
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=1).start()
    try:
        looked_up = f"lookup {token_ref(token)} from"
        before = resolver.log_text().count(looked_up)
        with ExitStack() as stack:
            first, second = (WsStream(stack.enter_context(proxy.open(token))) for _ in range(2))
            within(5, lambda: resolver.log_text().count(looked_up) == before + 2)  # both looked up, none claimed
            rfb_handshake(first)
            with pytest.raises(ConnectionClosed):
                rfb_handshake(second)
            assert close_of(second.ws) == (1008, "this one-time token was already used")
            vnc_alive(first)
        with proxy.open(token) as late:
            assert close_of(late) == (1008, "unknown or expired token")
        log = proxy.log_text()
        assert log.count("claimed one-time token") == 1 and token not in log
        assert re.findall(r"refused client=\S+ reason=(\w+)", log) == ["token_spent", "unknown_token"]
    finally:
        proxy.stop()


def vnc_alive(stream: WsStream) -> None:
    """A full update of the top-left pixel comes back."""
    stream.sendall(b"\x02\x00" + (1).to_bytes(2, "big") + (0).to_bytes(4, "big"))
    stream.sendall(b"\x03\x00" + b"\x00" * 4 + (1).to_bytes(2, "big") + (1).to_bytes(2, "big"))
    assert stream.recv_exactly(4)[0] == 0
    assert stream.recv_exactly(12 + 4)[8:12] == b"\x00\x00\x00\x00"


def test_worker_killed_is_replaced_and_other_sessions_carry_on(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=2).start()
    try:
        with ExitStack() as stack:
            by_worker: Dict[int, List[WsStream]] = {}
            opened = 0
            while len(by_worker) < 2:  # connections land on whichever worker accepts first
                assert opened < 40, "one worker took every connection"
                stream = vnc_session(stack, proxy, tokens["vnc"])
                opened += 1
                by_worker.setdefault(session_owner(proxy, stream.ws), []).append(stream)
            victim, survivor = list(by_worker)
            os.kill(victim, signal.SIGKILL)
            for stream in by_worker[victim]:
                with pytest.raises(ConnectionClosed):
                    stream.ws.recv(timeout=DEADLINE)
            for stream in by_worker[survivor]:
                vnc_alive(stream)
            within(5, lambda: len(proxy.worker_pids()) == 2 and victim not in proxy.worker_pids())
            within(5, lambda: proxy.metric("proxyd_worker_restarts_total") == 1)
            vnc_alive(vnc_session(stack, proxy, tokens["vnc"]))
    finally:
        proxy.stop()


def session_owner(proxy: Proxyd, ws: ClientConnection) -> int:
    """The pid of the worker whose log line opened the session of ``ws``."""
    port = ws.socket.getsockname()[1]
    found = re.search(rf"\[(\d+)\]: session open client=127\.0\.0\.1:{port} ", proxy.log_text())
    assert found, f"no session open line for port {port}"
    return int(found.group(1))


def test_sigterm_drains(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, "--drain-grace", "2", workers=1).start()
    with proxy.open(tokens["serial1"]) as ws:
        echo_through(ws, b"pre-drn")
        started = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        echo_through(ws, b"in-drain")  # the session goes on during the grace period
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        assert close_of(ws) == (1001, "the proxy is shutting down")
        assert 1.5 < time.monotonic() - started < 6
    assert proxy.stop(timeout=10) == 0


def test_idle_sessions_are_closed(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, "--idle-timeout", "1", workers=1).start()
    try:
        with proxy.open(tokens["serial1"]) as ws:
            echo_through(ws, b"silence")
            assert close_of(ws) == (1000, "idle for more than 1 s")
    finally:
        proxy.stop()


# -- observability ------------------------------------------------------------------------------

def test_metrics_and_log_lines(proxyd, tokens):
    with proxyd.open(tokens["serial1"]) as ws:
        echo_through(ws, b"counted")
        within(3, lambda: proxyd.metric('proxyd_sessions_open{type="serial"}') >= 1)
    within(3, lambda: proxyd.metric('proxyd_sessions_open{type="serial"}') == 0)
    assert proxyd.metric('proxyd_sessions_total{type="serial"}') >= 1
    assert proxyd.metric('proxyd_bytes_total{type="serial",direction="to_client"}') > 0
    assert proxyd.metric('proxyd_bytes_total{type="serial",direction="to_console"}') > 0
    assert proxyd.metric("proxyd_resolver_latency_seconds_count") >= 1
    assert proxyd.metric("proxyd_workers") == 2
    log = proxyd.log_text()
    opened = [line for line in log.splitlines() if "session open" in line]
    closed = [line for line in log.splitlines() if "session close" in line and "type=serial" in line]
    assert opened and closed
    assert re.search(r"session close client=127\.0\.0\.1:\d+ domain=px-main type=serial to_console=\d+ "
                     r"to_client=\d+ duration=[0-9.]+ reason=", closed[-1])
    for token in tokens.values():
        assert token not in log
