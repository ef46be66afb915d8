"""The resolver client against small in-test HTTPS servers that misbehave on purpose.

resolverd itself never sends garbage or stalls, so these peers stand in for
a broken or overloaded resolver; the end-to-end tests use the real one.
"""

import http.server
import json
import socket
import threading
import time
from typing import Callable, Iterator, Tuple

import pytest

from lab.pki import Pki
from proxyd.resolver import Console, ResolverClient, ResolverUnavailable, TokenRefused, TokenSpent, parse_answer
from resolverd import tls

GOOD = {"type": "vnc", "address": "127.0.0.1:5901", "insecure": False, "tlsTunnel": False}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_anchor_shape():
    assert parse_answer(GOOD) == Console(type="vnc", host="127.0.0.1", port=5901, insecure=False,
                                         tls_tunnel=False)


def test_resolverd_extra_fields_and_console_alias():
    console = parse_answer({"type": "console", "address": "[::1]:7000", "insecure": False, "tlsTunnel": True,
                            "bridgeTicket": "t1", "domainName": "demo", "domainUuid": "u", "once": True,
                            "index": 0, "expires": None})
    assert (console.type, console.host, console.port, console.bridge_ticket, console.domain) == (
        "serial", "::1", 7000, "t1", "demo")
    assert console.address == "[::1]:7000"


@pytest.mark.parametrize("fields, claim", [
    ({}, False),  # the anchor's shape: nothing to claim
    ({"once": False}, False),
    ({"once": True, "claimed": True}, False),  # a resolver that claimed it with the look-up
    ({"once": True}, False),  # an older resolverd that claimed it with the look-up and did not say so
    ({"once": True, "claimed": False}, True),
])
def test_a_one_time_token_is_claimed_by_the_proxy_only_when_the_look_up_left_it_unclaimed(fields, claim):
    assert parse_answer({**GOOD, **fields}).claim is claim


def test_missing_flags_default_to_false_and_password_is_kept():
    console = parse_answer({"type": "spice", "address": "h:1", "password": "pw"})
    assert not console.insecure and not console.tls_tunnel and console.password == "pw"


@pytest.mark.parametrize("document, message", [
    ([], "not a JSON object"),
    ({"type": "rdp", "address": "h:1"}, "unknown console type"),
    ({"type": "vnc"}, "no address"),
    ({"type": "vnc", "address": "h"}, "bad address"),
    ({"type": "vnc", "address": "h:0"}, "bad address"),
    ({"type": "vnc", "address": ":5900"}, "bad address"),
    ({"type": "vnc", "address": "::1:5900"}, "bad address"),
    ({"type": "vnc", "address": "h:1", "insecure": "yes"}, "insecure is not a boolean"),
    ({"type": "vnc", "address": "h:1", "password": 5}, "password is not a string"),
    ({"type": "vnc", "address": "h:1", "once": "yes"}, "once is not a boolean"),
    ({"type": "vnc", "address": "h:1", "once": True, "claimed": 0}, "claimed is not a boolean"),
    ({"type": "vnc", "address": "h:1", "insecure": True, "tlsTunnel": True}, "contradict"),
])
def test_bad_answers(document, message):
    with pytest.raises(ValueError, match=message):
        parse_answer(document)


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class Resolver:
    """An HTTPS server with a mandatory client certificate whose answers the test chooses."""

    def __init__(self, pki: Pki, answer: Handler, server_pair=None) -> None:
        outer = self
        self.paths = []
        self.connections = 0
        self.resumed = []  # per request: did its connection resume an earlier TLS session

        class Handle(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                outer.resumed.append(self.connection.session_reused)
                answer(self)

            def do_POST(self) -> None:
                outer.paths.append("POST " + self.path)
                answer(self)

            def log_message(self, *args) -> None:
                pass

        pair = server_pair or pki.resolverd_server
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.server.daemon_threads = True
        self.server.socket = tls.server_context(pair.cert, pair.key, pki.ca_cert).wrap_socket(
            self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(status: int, body: bytes, close: bool = False) -> Handler:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        if close:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
    return answer


@pytest.fixture
def resolver(pki) -> Iterator[Callable[..., Tuple[Resolver, ResolverClient]]]:
    made = []

    def make(answer: Handler, read_timeout: float = 2.0, server_pair=None, client_pair=None,
             host: str = "localhost") -> Tuple[Resolver, ResolverClient]:
        server = Resolver(pki, answer, server_pair)
        pair = client_pair or pki.proxyd_resolverd_client
        client = ResolverClient(f"https://{host}:{server.port}/consoleresolver/",
                                tls.client_context(pki.ca_cert, pair.cert, pair.key), 1.0, read_timeout)
        made.append((server, client))
        return server, client

    yield make
    for server, client in made:
        client.close()
        server.close()


def test_lookup_path_and_keep_alive(resolver):
    server, client = resolver(reply(200, json.dumps(GOOD).encode()))
    assert client.lookup("abc/..?x") == parse_answer(GOOD)
    assert client.lookup("second") == parse_answer(GOOD)
    assert server.paths == ["/consoleresolver/token/abc%2F..%3Fx?claim=later",
                            "/consoleresolver/token/second?claim=later"]
    assert server.connections == 1


def test_a_claim_is_a_post_on_the_token_kept_alive_with_the_look_ups(resolver):
    server, client = resolver(reply(200, b'{"claimed": true}'))
    client.claim("abc/..?x")
    client.claim("second")
    assert server.paths == ["POST /consoleresolver/token/abc%2F..%3Fx/claim",
                            "POST /consoleresolver/token/second/claim"]
    assert server.connections == 1


@pytest.mark.parametrize("status, refusal", [(409, TokenSpent), (404, TokenRefused), (503, ResolverUnavailable)])
def test_a_lost_claim_is_token_spent_and_others_refused_or_unavailable(resolver, status, refusal):
    _, client = resolver(reply(status, b'{"error": "x"}'))
    with pytest.raises(refusal):
        client.claim("tok")


def test_unknown_token_is_404(resolver):
    _, client = resolver(reply(404, b'{"error": "No token found"}'))
    with pytest.raises(TokenRefused):
        client.lookup("nope")


def test_server_error_is_unavailable(resolver):
    _, client = resolver(reply(503, b'{"error": "down"}'))
    with pytest.raises(ResolverUnavailable, match="HTTP 503"):
        client.lookup("t")


@pytest.mark.parametrize("body, message", [
    (b"not json", "unusable answer"),
    (b'{"type": "vnc"}', "no address"),
    (b"x" * 70000, "answer too large"),
])
def test_garbage_answers_are_unavailable(resolver, body, message):
    _, client = resolver(reply(200, body))
    with pytest.raises(ResolverUnavailable, match=message):
        client.lookup("t")


def test_slow_resolver_times_out(resolver):
    def slow(handler) -> None:
        time.sleep(1.5)
        reply(200, json.dumps(GOOD).encode())(handler)
    _, client = resolver(slow, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ResolverUnavailable, match="timed out"):
        client.lookup("t")
    assert time.monotonic() - started < 1.0


def test_resolver_closing_after_each_answer_still_works(resolver):
    server, client = resolver(reply(200, json.dumps(GOOD).encode(), close=True))
    for _ in range(3):
        assert client.lookup("t").port == 5901
    assert server.connections == 3


def test_a_new_connection_resumes_the_tls_session_of_the_last(resolver):
    server, client = resolver(reply(200, json.dumps(GOOD).encode(), close=True))
    for _ in range(3):
        client.lookup("t")
    assert server.resumed == [False, True, True]


def test_resolver_down(pki):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pair = pki.proxyd_resolverd_client
    client = ResolverClient(f"https://127.0.0.1:{port}/consoleresolver", tls.client_context(
        pki.ca_cert, pair.cert, pair.key), 1.0, 1.0)
    with pytest.raises(ResolverUnavailable, match="ConnectionRefused"):
        client.lookup("t")


def test_resolver_certificate_from_another_ca(resolver, pki):
    foreign = pki.issue("foreign-resolver", foreign=True)
    _, client = resolver(reply(200, b"{}"), server_pair=foreign)
    with pytest.raises(ResolverUnavailable, match="certificate not trusted"):
        client.lookup("t")


def test_resolver_name_is_checked(resolver, pki):
    elsewhere = pki.issue("elsewhere", sans=("elsewhere.example",))
    _, client = resolver(reply(200, b"{}"), server_pair=elsewhere)
    with pytest.raises(ResolverUnavailable, match="certificate not trusted"):
        client.lookup("t")


def test_resolver_refusing_our_certificate(resolver, pki):
    _, client = resolver(reply(200, b"{}"), client_pair=pki.foreign_client)
    with pytest.raises(ResolverUnavailable):
        client.lookup("t")


def test_contexts_must_match_the_scheme(pki):
    with pytest.raises(ValueError):
        ResolverClient("http://localhost/x", tls.client_context(pki.ca_cert), 1, 1)
    with pytest.raises(ValueError):
        ResolverClient("https://localhost/x", None, 1, 1)
    with pytest.raises(ValueError):
        ResolverClient("localhost/x", None, 1, 1)
