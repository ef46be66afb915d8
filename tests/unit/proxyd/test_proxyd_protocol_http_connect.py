import base64

import pytest

from proxyd.protocol.errors import MalformedMessage, Oversized, UnsupportedVersion
from proxyd.protocol.http_connect import (
    MAX_HEADERS,
    MAX_REQUEST_SIZE,
    BadCredentials,
    BadRequest,
    BasicCredentials,
    ConnectRequest,
    ConnectRequestParser,
    established_reply,
    refusal_for,
    refusal_reply,
)


def basic(user_and_password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user_and_password)


def glib_request(target: bytes = b"vm.example:5901", authorization: bytes = b"") -> bytes:
    """What GLib's GHttpProxy sends for remote-viewer's proxy= setting."""
    lines = [b"CONNECT " + target + b" HTTP/1.0", b"Host: " + target, b"Proxy-Connection: keep-alive",
             b"User-Agent: GLib/2.74"]
    if authorization:
        lines.append(b"Proxy-Authorization: " + authorization)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def parse(data: bytes):
    return ConnectRequestParser().receive_data(data)


def test_glib_request_with_the_token_as_basic_password(chunkings):
    data = glib_request(authorization=basic(b"spice:TOKEN-123"))
    expected = ConnectRequest(
        host="vm.example", port=5901, http_version="1.0",
        headers=(("host", "vm.example:5901"), ("proxy-connection", "keep-alive"), ("user-agent", "GLib/2.74"),
                 ("proxy-authorization", "Basic " + base64.b64encode(b"spice:TOKEN-123").decode())),
        credentials=BasicCredentials("spice", "TOKEN-123"), remaining=b"",
    )
    for chunks in chunkings(data):
        parser = ConnectRequestParser()
        fed = 0
        for chunk in chunks:
            fed += len(chunk)
            result = parser.receive_data(chunk)
            if result is not None:
                break
        assert (result, fed) == (expected, len(data))
    assert expected.token == "TOKEN-123"


def test_the_token_may_be_the_basic_user():
    assert parse(glib_request(authorization=basic(b"TOKEN:"))).token == "TOKEN"


def test_without_credentials_the_token_is_the_connect_host():
    request = parse(glib_request(b"TOKEN-abc_1:61000"))
    assert (request.credentials, request.host, request.port, request.token) == (None, "TOKEN-abc_1", 61000, "TOKEN-abc_1")


def test_an_ipv6_literal_target_and_http_1_1():
    request = parse(b"CONNECT [2001:db8::7]:5900 HTTP/1.1\r\n\r\n")
    assert (request.host, request.port, request.http_version, request.headers) == ("2001:db8::7", 5900, "1.1", ())


def test_bytes_after_the_request_are_handed_back_for_the_tunnel():
    hello = bytes.fromhex("1603010200")
    assert parse(glib_request() + hello).remaining == hello


def test_scheme_name_is_case_insensitive_and_value_whitespace_is_trimmed():
    data = b"CONNECT h:1 HTTP/1.1\r\nproxy-authorization:   bAsIc " + base64.b64encode(b"u:p") + b"  \r\n\r\n"
    assert parse(data).credentials == BasicCredentials("u", "p")


@pytest.mark.parametrize("data, error", [
    (b"GET / HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT h:1 HTTP/2.0\r\n\r\n", UnsupportedVersion),
    (b"CONNECT h:1 HTTP/1.1 extra\r\n\r\n", BadRequest),
    (b"CONNECT  h:1 HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT h HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT h: HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT h:0 HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT h:65536 HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT h:+80 HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT :80 HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT a/b:80 HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT [nope]:80 HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT [::1] HTTP/1.1\r\n\r\n", BadRequest),
    (b"CONNECT h:1 HTTP/1.1\r\nHost h\r\n\r\n", BadRequest),
    (b"CONNECT h:1 HTTP/1.1\r\nHost : h\r\n\r\n", BadRequest),
    (b"CONNECT h:1 HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", BadRequest),
    (b"CONNECT h:1 HTTP/1.1\r\nX: a\nY: b\r\n\r\n", MalformedMessage),
    (b"CONNECT h:1 HTTP/1.1\r\nX: a\rb\r\n\r\n", MalformedMessage),
    (b"CONNECT h:1 HTTP/1.1\r\nX: \xff\r\n\r\n", BadRequest),
    (b"\r\n\r\n", BadRequest),
    (glib_request(authorization=basic(b"a:b")).replace(b"\r\n\r\n", b"\r\nProxy-Authorization: "
                                                        + basic(b"c:d") + b"\r\n\r\n"), BadRequest),
    (glib_request(authorization=b"Bearer abc"), BadCredentials),
    (glib_request(authorization=b"Basic !!!!"), BadCredentials),
    (glib_request(authorization=basic(b"no-colon")), BadCredentials),
    (glib_request(authorization=basic(b"\xff:x")), BadCredentials),
    (b"CONNECT h:1 HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", Oversized),
])
def test_bad_requests_raise_a_specific_error(data, error):
    with pytest.raises(error):
        parse(data)


def test_reason_codes_for_metrics():
    with pytest.raises(BadRequest) as caught:
        parse(b"GET / HTTP/1.1\r\n\r\n")
    assert caught.value.reason == "bad-request"
    with pytest.raises(BadCredentials) as caught:
        parse(glib_request(authorization=b"Negotiate x"))
    assert caught.value.reason == "bad-credentials"


def test_a_head_without_its_end_is_refused_at_the_bound():
    parser = ConnectRequestParser()
    assert parser.receive_data(b"CONNECT h:1 HTTP/1.1\r\nX: " + b"a" * (MAX_REQUEST_SIZE - 100)) is None
    assert parser.buffered_bytes <= MAX_REQUEST_SIZE
    with pytest.raises(Oversized) as caught:
        parser.receive_data(b"a" * 100)
    assert caught.value.reason == "oversized"


def test_a_head_of_exactly_the_bound_is_accepted_and_one_more_byte_is_not():
    start = b"CONNECT h:1 HTTP/1.1\r\nX: "
    filler = b"a" * (MAX_REQUEST_SIZE - len(start) - 4)
    assert parse(start + filler + b"\r\n\r\n").headers == (("x", filler.decode()),)
    with pytest.raises(Oversized):
        parse(start + filler + b"a\r\n\r\n")


def test_the_end_of_the_head_is_found_across_chunks_without_rescanning_everything():
    parser = ConnectRequestParser()
    for byte in b"CONNECT h:1 HTTP/1.1\r\n\r":
        assert parser.receive_data(bytes([byte])) is None
    assert parser.receive_data(b"\n").host == "h"
    with pytest.raises(RuntimeError):
        parser.receive_data(b"more")


def test_replies_byte_for_byte():
    assert established_reply() == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert refusal_reply(407) == (b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                  b'Proxy-Authenticate: Basic realm="virt-console-proxy"\r\n'
                                  b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert refusal_reply(400) == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert refusal_reply(403) == b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert refusal_reply(502) == b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with pytest.raises(ValueError):
        refusal_reply(200)
    with pytest.raises(ValueError):
        refusal_reply(418)


def test_refusal_for_a_parse_error():
    assert refusal_for(BadCredentials("x")) == refusal_reply(407)
    assert refusal_for(Oversized("x")) == refusal_reply(400)
    assert refusal_for(BadRequest("x")) == refusal_reply(400)
