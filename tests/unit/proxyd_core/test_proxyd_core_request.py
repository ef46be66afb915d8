import pytest

from proxyd.request import (
    Framing,
    TokenError,
    framing_of,
    origin_allowed,
    path_of,
    select_framing,
    token_of,
)


@pytest.mark.parametrize("offered, chosen", [
    ([], None),
    (["binary"], "binary"),
    (["base64"], "base64"),
    (["base64", "binary"], "binary"),
    (["binary", "base64"], "binary"),
    (["chat", "base64"], "base64"),
    (["chat"], None),
])
def test_binary_wins_then_base64(offered, chosen):
    assert select_framing(offered) == chosen


def test_framing_of_subprotocol():
    assert framing_of(None) is Framing.BINARY
    assert framing_of("binary") is Framing.BINARY
    assert framing_of("base64") is Framing.BASE64


def test_path_ignores_the_query():
    assert path_of("/websockify?token=abc") == "/websockify"
    assert path_of("/other") == "/other"


def test_token_from_query():
    assert token_of("/websockify?token=abc-DEF_123", []) == "abc-DEF_123"


def test_token_is_url_decoded():
    assert token_of("/websockify?token=a%2Bb%3D", []) == "a+b="


def test_query_token_wins_over_cookie():
    assert token_of("/websockify?token=fromurl", ["token=fromcookie"]) == "fromurl"


def test_token_from_cookie_among_others():
    assert token_of("/websockify", ["session=1; token=fromcookie", "lang=en"]) == "fromcookie"


@pytest.mark.parametrize("target, cookies, message", [
    ("/websockify", [], "no token"),
    ("/websockify?token=", [], "empty token"),
    ("/websockify?token=a&token=b", [], "several tokens"),
    ("/websockify?token=" + "x" * 257, [], "malformed token"),
    ("/websockify?token=a%20b", [], "malformed token"),
    ("/websockify?token=%0A", [], "malformed token"),
    ("/websockify?token=%C3%A9t%C3%A9", [], "malformed token"),
    ("/websockify", ['token="unterminated'], "no token"),
    ("/websockify", ["a b=c; token=after-garbage"], "no token"),
])
def test_bad_tokens_are_refused_with_a_reason(target, cookies, message):
    with pytest.raises(TokenError, match=message):
        token_of(target, cookies)


@pytest.mark.parametrize("origin, host, allowed, ok", [
    (None, "proxy.example:443", (), True),
    ("https://proxy.example", "proxy.example", (), True),
    ("https://proxy.example", "proxy.example:443", (), True),
    ("https://proxy.example:8443", "proxy.example:8443", (), True),
    ("https://PROXY.example", "proxy.EXAMPLE", (), True),
    ("https://evil.example", "proxy.example", (), False),
    ("https://proxy.example:8443", "proxy.example", (), False),
    ("http://proxy.example", "proxy.example:443", (), False),
    ("null", "proxy.example", (), False),
    ("file://", "proxy.example", (), False),
    ("https://portal.example", "proxy.example", ("https://portal.example",), True),
    ("https://portal.example:443", "proxy.example", ("https://portal.example",), True),
    ("http://portal.example", "proxy.example", ("https://portal.example",), False),
    ("https://portal.example", None, (), False),
    ("https://proxy.example:99999", "proxy.example", (), False),
])
def test_origin_rules(origin, host, allowed, ok):
    assert origin_allowed(origin, host, allowed) is ok
