"""What proxyd says about sessions and how it keeps them alive: pings, log lines, metrics (issue 5).

A tenant that never answers pings is the websockets library's sans-I/O
client over a plain TLS socket, whose pongs are simply never sent.
"""

import re
import socket
import time
from typing import Iterator, List, Tuple

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from lab.polling import within
from lab.proxyd import Proxyd
from lab.wsstream import DEADLINE, WsStream, banner_through

PING_INTERVAL = 1.0


@pytest.fixture(scope="module")
def proxyd(lab_run_dir, lab_pki, resolver) -> Iterator[Proxyd]:
    server = Proxyd(lab_run_dir, lab_pki, resolver, "--ping-interval", str(PING_INTERVAL)).start()
    yield server
    server.stop()


def silent_tenant(proxy: Proxyd, token: str) -> Tuple[int, str, int, float]:
    """Open a session and never answer a ping: (close code, reason, pings seen, seconds until the close)."""
    protocol = ClientProtocol(parse_uri(proxy.url(token)), max_size=None)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as raw:
        with proxy.tls.wrap_socket(raw, server_hostname="localhost") as tls:
            protocol.send_request(protocol.connect())
            for data in protocol.data_to_send():  # the upgrade request; the pongs queued later never leave
                tls.sendall(data)
            opened, pings = time.monotonic(), 0
            while protocol.close_rcvd is None:
                data = tls.recv(65536)
                if not data:
                    raise AssertionError(f"closed without a close frame after {pings} pings")
                protocol.receive_data(data)
                pings += sum(1 for event in protocol.events_received()
                             if isinstance(event, Frame) and event.opcode is Opcode.PING)
            return protocol.close_rcvd.code, protocol.close_rcvd.reason, pings, time.monotonic() - opened


def test_a_tenant_that_never_answers_a_ping_is_closed(proxyd, tokens):
    code, reason, pings, lasted = silent_tenant(proxyd, tokens["serial0"])
    assert (code, reason) == (1001, "no answer to ping")
    assert pings >= 1 and lasted < 10 * PING_INTERVAL


def test_a_tenant_that_answers_pings_stays_while_idle(proxyd, tokens):
    with proxyd.open(tokens["serial0"]) as ws:  # the sync client answers every ping by itself
        stream = WsStream(ws)
        banner_through(stream)
        time.sleep(4 * PING_INTERVAL)  # idle: only pings and pongs cross
        banner_through(stream)


def lines_of(log: str, port: int) -> List[str]:
    return [line for line in log.splitlines() if f" client=127.0.0.1:{port} " in line]


def test_one_log_line_opens_and_one_closes_each_session_without_the_token(proxyd, tokens):
    with proxyd.open(tokens["serial0"]) as ws:
        port = ws.socket.getsockname()[1]
        banner_through(WsStream(ws))
    within(DEADLINE, lambda: any("session close" in line for line in lines_of(proxyd.log_text(), port)))
    lines = lines_of(proxyd.log_text(), port)
    opening = [line for line in lines if "session open" in line]
    closing = [line for line in lines if "session close" in line]
    assert len(opening) == 1 and len(closing) == 1 and len(lines) == 2
    assert re.search(rf"session open client=127\.0\.0\.1:{port} domain=px-main type=serial "
                     r"console=\S+ token=tok-[0-9a-f]{12}$", opening[0])
    assert re.search(rf"session close client=127\.0\.0\.1:{port} domain=px-main type=serial "
                     r"to_console=[1-9]\d* to_client=[1-9]\d* duration=[0-9.]+ reason='.+'$", closing[0])
    log = proxyd.log_text()
    assert all(token not in log for token in tokens.values())


def test_metrics_families_are_on_the_admin_listener_only(proxyd, tokens):
    with proxyd.open(tokens["serial0"]) as ws:
        banner_through(WsStream(ws))
    within(3 * PING_INTERVAL, lambda: 'proxyd_bytes_total{type="serial",direction="to_console"} ' in proxyd.metrics())
    text = proxyd.metrics()
    for family, kind in (("proxyd_sessions_open", "gauge"), ("proxyd_sessions_total", "counter"),
                         ("proxyd_bytes_total", "counter"), ("proxyd_handshake_failures_total", "counter"),
                         ("proxyd_resolver_latency_seconds", "histogram"), ("proxyd_workers", "gauge")):
        assert f"# TYPE {family} {kind}\n" in text
    for console in ("vnc", "spice", "serial"):
        assert f'proxyd_sessions_open{{type="{console}"}} ' in text
    assert 'proxyd_bytes_total{type="serial",direction="to_client"} ' in text
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=DEADLINE) as raw:
        with proxyd.tls.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 404 ")
