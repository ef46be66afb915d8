"""proxyd end to end: the real daemon (master + forked workers) between websocket clients and lab guests.

Everything is real: a private libvirtd with QEMU guests (SPICE TLS port,
VNC VeNCrypt x509 with client verification, a pty serial through
resolverd's bridge, a TLS chardev serial), consoles enabled with
resolveradm's own code, resolverd as a subprocess with mutual TLS, and
proxyd as a subprocess.  The tenant is the ``websockets`` library's client
with a small RFB/SPICE/serial speaker on top.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from lab import teardown
from lab.bootsector import BANNER, ENQ
from lab.guests import Guest, GuestFactory
from lab.pki import Pki
from lab.ports import free_port
from lab.spice_link import CHANNEL_MAIN, LINK_OK, authenticate, link
from lab.tls import client_context
from lab.vnc_vencrypt import RFB_VERSION, finish
from resolveradm import access
from test_resolverd import Resolverd

REPO = Path(__file__).resolve().parents[2]
ENTER_DEADLINE = 10.0


class Proxyd:
    """A proxyd subprocess on free ports, with helpers to reach its public port and admin endpoint."""

    def __init__(self, run_dir: Path, pki: Pki, resolver: Resolverd, *extra: str, workers: int = 2,
                 connect_pair=None, connect_ca: Optional[Path] = None) -> None:
        self.pki = pki
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = run_dir / f"proxyd-{self.port}.log"
        qemu_client = connect_pair or pki.proxyd_qemu_client
        resolver_client = pki.proxyd_resolverd_client
        self.argv = [
            sys.executable, "-m", "proxyd", "--listen", f"127.0.0.1:{self.port}",
            "--tls-cert", str(pki.proxyd_server.cert), "--tls-key", str(pki.proxyd_server.key),
            "--resolver-uri", f"https://localhost:{resolver.port}/consoleresolver",
            "--resolver-cert", str(resolver_client.cert), "--resolver-key", str(resolver_client.key),
            "--resolver-ca", str(pki.ca_cert),
            "--connect-cert", str(qemu_client.cert), "--connect-key", str(qemu_client.key),
            "--connect-ca", str(connect_ca or pki.ca_cert),
            "--workers", str(workers), "--admin-listen", f"127.0.0.1:{self.admin_port}", "--log-level", "debug",
            "--drain-grace", "3", *extra]
        self.process: Optional[subprocess.Popen] = None
        self.tls = client_context(pki.ca_cert)

    def start(self) -> "Proxyd":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._key = teardown.register(self.kill)
        deadline = time.monotonic() + 20
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxyd did not start:\n{self.log_text()[-4000:]}")
            time.sleep(0.05)
        return self

    def healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.admin_port}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        teardown.unregister(self._key)

    def url(self, token: Optional[str], path: str = "/websockify") -> str:
        return f"wss://localhost:{self.port}{path}" + (f"?token={token}" if token is not None else "")

    def open(self, token: Optional[str], **options) -> ClientConnection:
        options.setdefault("open_timeout", ENTER_DEADLINE)
        return connect(self.url(token), ssl=self.tls, max_size=None, **options)

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).text

    def metric(self, sample: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(sample)

    def worker_pids(self) -> List[int]:
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class WsStream:
    """A websocket seen as a byte stream (recv/sendall), for the lab's socket-based protocol probes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending = b""

    def recv(self, size: int) -> bytes:
        if not self.pending:
            message = self.ws.recv(timeout=ENTER_DEADLINE)
            self.pending = message if isinstance(message, bytes) else message.encode()
        chunk, self.pending = self.pending[:size], self.pending[size:]
        return chunk

    def sendall(self, data: bytes) -> None:
        self.ws.send(data)

    def read_until(self, needle: bytes, timeout: float = ENTER_DEADLINE) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while needle not in data:
            data += self.recv(65536)
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not seen in {data[-200:]!r}")
        return data


def within(seconds: float, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds} s")
        time.sleep(0.05)


def close_of(ws: ClientConnection) -> "tuple[int, str]":
    """Wait for the server's close frame; its code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=ENTER_DEADLINE)
    frame = closed.value.rcvd
    assert frame is not None, f"no close frame: {closed.value}"
    return frame.code, frame.reason


def tokens_of(conn, guest: Guest) -> Dict[str, str]:
    """Enable every console of ``guest`` with resolveradm's code: tokens by 'spice', 'vnc', 'serial0', ..."""
    outcome = access.enable(conn, guest.domain, access.Grant())
    named = {}
    for console in outcome.consoles:
        kind = console.console.type
        named[kind if kind in ("spice", "vnc") else f"{kind}{console.console.index}"] = console.token
    return named


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resolver(lab_run_dir, lab_pki, lab_libvirtd) -> Iterator[Resolverd]:
    server = Resolverd(lab_run_dir, lab_pki, [lab_libvirtd.uri], log_level="info")
    key = teardown.register(server.stop)
    try:
        server.start()
        yield server
    finally:
        teardown.unregister(key)
        server.stop()


@pytest.fixture(scope="module")
def guests(lab_libvirtd, lab_image, lab_pki, lab_run_dir, lab_domain_type) -> Iterator[GuestFactory]:
    factory = GuestFactory(lab_libvirtd, lab_image, lab_pki, lab_run_dir / "disks-proxyd", lab_domain_type)
    key = teardown.register(factory.cleanup)
    yield factory
    teardown.unregister(key)
    factory.cleanup()


@pytest.fixture(scope="module")
def guest(guests) -> Guest:
    return guests(name="px-main")


@pytest.fixture(scope="module")
def tokens(lab_libvirtd, guest, resolver) -> Dict[str, str]:
    named = tokens_of(lab_libvirtd.connection(), guest)
    within(10, lambda: resolver.lookup(named["vnc"]).status_code == 200)
    return named


@pytest.fixture(scope="module")
def proxyd(lab_run_dir, lab_pki, resolver) -> Iterator[Proxyd]:
    server = Proxyd(lab_run_dir, lab_pki, resolver, "--ping-interval", "1").start()
    yield server
    server.stop()


# -- consoles -----------------------------------------------------------------------------------

def echo_through(ws: ClientConnection, marker: bytes) -> None:
    """The lab guest echoes what a port receives; it loses bytes past its 16550's FIFO, so keep markers short."""
    assert len(marker) <= 8
    stream = WsStream(ws)
    stream.sendall(ENQ)  # the guest answers ENQ with its banner: proves the path works both ways
    stream.read_until(BANNER)
    stream.sendall(marker)
    stream.read_until(marker)


def test_serial_echo_through_the_tls_chardev(proxyd, tokens):
    with proxyd.open(tokens["serial1"], subprotocols=["binary"]) as ws:
        assert ws.subprotocol == "binary"
        echo_through(ws, b"tls-echo")


def test_serial_echo_through_the_pty_bridge(proxyd, tokens):
    with proxyd.open(tokens["serial0"]) as ws:
        echo_through(ws, b"pty-echo")


def test_serial_in_base64_text_messages(proxyd, tokens):
    import base64
    with proxyd.open(tokens["serial1"], subprotocols=["base64"]) as ws:
        assert ws.subprotocol == "base64"
        ws.send(base64.b64encode(b"b64echo").decode())
        seen = b""
        while b"b64echo" not in seen:
            message = ws.recv(timeout=ENTER_DEADLINE)
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
        kind = recv_exactly(stream, 1)[0]
        assert kind == 0, f"unexpected server message {kind}"
        count = int.from_bytes(recv_exactly(stream, 3)[1:], "big")
        for _ in range(count):
            head = recv_exactly(stream, 12)
            w, h = int.from_bytes(head[4:6], "big"), int.from_bytes(head[6:8], "big")
            encoding = int.from_bytes(head[8:12], "big", signed=True)
            if encoding == -223:  # DesktopSize pseudo-rectangle: no pixels
                continue
            assert encoding == 0
            pixels += recv_exactly(stream, w * h * 4)
    return bytes(pixels)


def recv_exactly(stream: WsStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += stream.recv(size - len(data))
    return data


def test_spice_link_over_websocket_gets_a_valid_reply(proxyd, tokens, guest):
    with proxyd.open(tokens["spice"], subprotocols=["binary"]) as ws:
        stream = WsStream(ws)
        reply = link(stream, CHANNEL_MAIN)
        assert (reply.major, reply.error, len(reply.pub_key)) == (2, LINK_OK, 162)
        assert authenticate(stream, reply, guest.spice_password) == 0


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
                 open_timeout=ENTER_DEADLINE) as ws:
        echo_through(ws, b"cookie")


def raw_tls(proxyd: Proxyd, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=ENTER_DEADLINE) as raw:
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
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=ENTER_DEADLINE) as raw:
        raw.sendall(b"GET /websockify HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400 Bad Request")


def test_foreign_origin_is_forbidden_own_origin_allowed(proxyd, tokens):
    with pytest.raises(InvalidStatus) as refused:
        proxyd.open(tokens["serial1"], origin="https://evil.example")
    assert refused.value.response.status_code == 403
    with proxyd.open(tokens["serial1"], origin=f"https://localhost:{proxyd.port}") as ws:
        echo_through(ws, b"same-org")


def test_oversized_and_malformed_frames_close_the_session(proxyd, tokens):
    with proxyd.open(tokens["serial1"]) as ws:
        ws.send(b"x" * (1024 * 1024 + 1))
        assert close_of(ws)[0] == 1009
    with proxyd.open(tokens["serial1"]) as ws:
        ws.send("text without the base64 subprotocol")
        assert close_of(ws)[0] == 1003
    with proxyd.open(tokens["serial1"]) as ws:
        ws.socket.sendall(b"\x82\x03abc")  # a client frame without a mask
        assert close_of(ws)[0] == 1002


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
    down.argv[down.argv.index("--resolver-uri") + 1] = f"https://localhost:{free_port()}/consoleresolver"
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
            ws.recv(timeout=ENTER_DEADLINE)  # the version comes from the proxy's side of the MITM
            assert close_of(ws) == (1011, "the console closed the connection")
    finally:
        proxy.stop()


# -- failures while sessions run ----------------------------------------------------------------

def qemu_pid(guest: Guest) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and b"qemu" in cmdline[0] and f"guest={guest.name},".encode() in b" ".join(cmdline):
                return int(entry.name)
    raise LookupError(f"no QEMU process for {guest.name}")


def test_qemu_killed_mid_session_closes_only_its_session(proxyd, tokens, guests, lab_libvirtd, resolver):
    victim = guests(consoles={"tls-serial"})
    victim_tokens = tokens_of(lab_libvirtd.connection(), victim)
    within(10, lambda: resolver.lookup(victim_tokens["serial0"]).status_code == 200)
    with proxyd.open(tokens["serial1"]) as bystander, proxyd.open(victim_tokens["serial0"]) as doomed:
        echo_through(doomed, b"pre-kill")
        echo_through(bystander, b"by-pre")
        os.kill(qemu_pid(victim), signal.SIGKILL)
        code, reason = close_of(doomed)
        assert code in (1000, 1011) and "console" in reason
        echo_through(bystander, b"by-post")


def vnc_session(stack: ExitStack, proxy: Proxyd, token: str) -> WsStream:
    """A VNC session through the proxy, up to ServerInit (QEMU lets many viewers share the screen)."""
    stream = WsStream(stack.enter_context(proxy.open(token)))
    assert stream.recv(12) == RFB_VERSION
    stream.sendall(RFB_VERSION)
    assert stream.recv(2) == b"\x01\x01"
    stream.sendall(b"\x01")
    finish(stream)
    return stream


def vnc_alive(stream: WsStream) -> None:
    """A full update of the top-left pixel comes back."""
    stream.sendall(b"\x02\x00" + (1).to_bytes(2, "big") + (0).to_bytes(4, "big"))
    stream.sendall(b"\x03\x00" + b"\x00" * 4 + (1).to_bytes(2, "big") + (1).to_bytes(2, "big"))
    assert recv_exactly(stream, 4)[0] == 0
    assert recv_exactly(stream, 12 + 4)[8:12] == b"\x00\x00\x00\x00"


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
                    stream.ws.recv(timeout=ENTER_DEADLINE)
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
