"""The resolver client against small in-test HTTPS servers that misbehave on purpose.

resolverd itself never sends garbage or stalls, so these peers stand in for
a broken or overloaded resolver; the end-to-end tests use the real one.
"""

import asyncio
import http.server
import json
import socket
import threading
import time
from typing import Awaitable, Callable, Iterator, Tuple, TypeVar

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
T = TypeVar("T")


class Resolver:
    """An HTTPS server with a mandatory client certificate whose answers the test chooses."""

    def __init__(self, pki: Pki, answer: Handler, server_pair=None) -> None:
        outer = self
        self.paths = []
        self.connections = 0

        class Handle(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_GET(self) -> None:
                outer.paths.append(self.path)
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


def run(client: ResolverClient, scenario: Callable[[ResolverClient], Awaitable[T]]) -> T:
    """``scenario`` on one event loop (uvloop, as in a worker); the client's connections close at its end."""
    async def main() -> T:
        try:
            return await scenario(client)
        finally:
            client.close()
    return asyncio.run(main())


def test_lookup_path_and_keep_alive(resolver):
    server, client = resolver(reply(200, json.dumps(GOOD).encode()))

    async def two(c: ResolverClient):
        return [await c.lookup("abc/..?x"), await c.lookup("second")]
    assert run(client, two) == [parse_answer(GOOD)] * 2
    assert server.paths == ["/consoleresolver/token/abc%2F..%3Fx?claim=later",
                            "/consoleresolver/token/second?claim=later"]
    assert server.connections == 1


def test_concurrent_look_ups_share_at_most_the_connection_limit(resolver, monkeypatch):
    monkeypatch.setattr("proxyd.resolver.CONNECTIONS", 3)
    server, client = resolver(reply(200, json.dumps(GOOD).encode()))

    async def many(c: ResolverClient):
        return await asyncio.gather(*(c.lookup(f"t{n}") for n in range(20)))
    assert run(client, many) == [parse_answer(GOOD)] * 20
    assert len(server.paths) == 20
    assert server.connections <= 3


def test_a_claim_is_a_post_on_the_token_kept_alive_with_the_look_ups(resolver):
    server, client = resolver(reply(200, b'{"claimed": true}'))

    async def two(c: ResolverClient):
        await c.claim("abc/..?x")
        await c.claim("second")
    run(client, two)
    assert server.paths == ["POST /consoleresolver/token/abc%2F..%3Fx/claim",
                            "POST /consoleresolver/token/second/claim"]
    assert server.connections == 1


@pytest.mark.parametrize("status, refusal", [(409, TokenSpent), (404, TokenRefused), (503, ResolverUnavailable)])
def test_a_lost_claim_is_token_spent_and_others_refused_or_unavailable(resolver, status, refusal):
    _, client = resolver(reply(status, b'{"error": "x"}'))
    with pytest.raises(refusal):
        run(client, lambda c: c.claim("tok"))


def test_unknown_token_is_404(resolver):
    _, client = resolver(reply(404, b'{"error": "No token found"}'))
    with pytest.raises(TokenRefused):
        run(client, lambda c: c.lookup("nope"))


def test_server_error_is_unavailable(resolver):
    _, client = resolver(reply(503, b'{"error": "down"}'))
    with pytest.raises(ResolverUnavailable, match="HTTP 503"):
        run(client, lambda c: c.lookup("t"))


def raw(answer: bytes) -> Handler:
    def send(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.wfile.write(answer)
        handler.close_connection = True
    return send


@pytest.mark.parametrize("answer, message", [
    (reply(200, b"not json"), "unusable answer"),
    (reply(200, b'{"type": "vnc"}'), "no address"),
    (reply(200, b"x" * 70000), "answer too large"),
    (raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), "not an HTTP answer"),
    (raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"), "closed the connection in the middle"),
    (raw(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n{}"), "invalid literal"),
    (raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), "not supported"),
    (raw(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n"), "answer head too large"),
    (raw(b""), "closed the connection without answering"),
])
def test_garbage_answers_are_unavailable(resolver, answer, message):
    _, client = resolver(answer)
    with pytest.raises(ResolverUnavailable, match=message):
        run(client, lambda c: c.lookup("t"))


def test_slow_resolver_times_out(resolver):
    def slow(handler) -> None:
        time.sleep(1.5)
        reply(200, json.dumps(GOOD).encode())(handler)
    _, client = resolver(slow, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ResolverUnavailable, match="timed out"):
        run(client, lambda c: c.lookup("t"))
    assert time.monotonic() - started < 1.0


def test_resolver_closing_after_each_answer_still_works(resolver):
    server, client = resolver(reply(200, json.dumps(GOOD).encode(), close=True))

    async def three(c: ResolverClient):
        return [(await c.lookup("t")).port for _ in range(3)]
    assert run(client, three) == [5901] * 3
    assert server.connections == 3


def test_a_kept_alive_connection_the_resolver_dropped_is_replaced(resolver):
    """resolverd closes idle connections (after 75 s): the next look-up goes on a new one, without an error."""
    def answer_then_hang_up(handler) -> None:
        reply(200, json.dumps(GOOD).encode())(handler)
        handler.close_connection = True  # no Connection: close header: the client believes it kept alive
    server, client = resolver(answer_then_hang_up)

    async def two(c: ResolverClient):
        first = await c.lookup("t")
        await asyncio.sleep(0)  # the hang-up may or may not have arrived yet: either way must work
        return [first, await c.lookup("t")]
    assert run(client, two) == [parse_answer(GOOD)] * 2
    assert server.connections == 2


def test_resolver_down(pki):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pair = pki.proxyd_resolverd_client
    client = ResolverClient(f"https://127.0.0.1:{port}/consoleresolver", tls.client_context(
        pki.ca_cert, pair.cert, pair.key), 1.0, 1.0)
    with pytest.raises(ResolverUnavailable, match="ConnectionRefused"):
        run(client, lambda c: c.lookup("t"))


def test_resolver_certificate_from_another_ca(resolver, pki):
    foreign = pki.issue("foreign-resolver", foreign=True)
    _, client = resolver(reply(200, b"{}"), server_pair=foreign)
    with pytest.raises(ResolverUnavailable, match="certificate not trusted"):
        run(client, lambda c: c.lookup("t"))


def test_resolver_name_is_checked(resolver, pki):
    elsewhere = pki.issue("elsewhere", sans=("elsewhere.example",))
    _, client = resolver(reply(200, b"{}"), server_pair=elsewhere)
    with pytest.raises(ResolverUnavailable, match="certificate not trusted"):
        run(client, lambda c: c.lookup("t"))


def test_resolver_refusing_our_certificate(resolver, pki):
    _, client = resolver(reply(200, b"{}"), client_pair=pki.foreign_client)
    with pytest.raises(ResolverUnavailable):
        run(client, lambda c: c.lookup("t"))


def test_contexts_must_match_the_scheme(pki):
    with pytest.raises(ValueError):
        ResolverClient("http://localhost/x", tls.client_context(pki.ca_cert), 1, 1)
    with pytest.raises(ValueError):
        ResolverClient("https://localhost/x", None, 1, 1)
    with pytest.raises(ValueError):
        ResolverClient("localhost/x", None, 1, 1)
