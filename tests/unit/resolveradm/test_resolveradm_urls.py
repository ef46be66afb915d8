"""--proxy-url and the tenant URLs made from it."""

import argparse

import pytest

from resolveradm.urls import ProxyUrl, parse_proxy_url, proxy_url_argument, remote_viewer_command, websocket_url

TOKEN = "Zm9v-YmFy_0123456789abcdefghijklmnopqrstuvw"


@pytest.mark.parametrize("text, expected", [
    ("https://console.example.com", ProxyUrl(True, "console.example.com", 443, "")),
    ("https://console.example.com/", ProxyUrl(True, "console.example.com", 443, "")),
    ("https://console.example.com:8443", ProxyUrl(True, "console.example.com", 8443, "")),
    ("https://Console.Example.com:443/consoles/", ProxyUrl(True, "console.example.com", 443, "/consoles")),
    ("http://10.0.0.5:6080", ProxyUrl(False, "10.0.0.5", 6080, "")),
    ("https://[2001:db8::5]:8443", ProxyUrl(True, "2001:db8::5", 8443, "")),
])
def test_parse(text, expected):
    assert parse_proxy_url(text) == expected


@pytest.mark.parametrize("text, message", [
    ("console.example.com", "expected an https://"),
    ("wss://console.example.com", "expected an https://"),
    ("ftp://console.example.com", "expected an https://"),
    ("https://", "no valid host"),
    ("https://:443", "no valid host"),
    ("https://bad_host!", "no valid host"),
    ("https://-bad.example", "no valid host"),
    ("https://a..b", "no valid host"),
    ("https://console.example.com:0", "the port is not"),
    ("https://console.example.com:99999", "the port is not"),
    ("https://console.example.com:https", "the port is not"),
    ("https://user:pw@console.example.com", "a user or password"),
    ("https://console.example.com/?token=x", "a query or fragment"),
    ("https://console.example.com/#top", "a query or fragment"),
])
def test_refused(text, message):
    with pytest.raises(ValueError) as caught:
        parse_proxy_url(text)
    assert message in str(caught.value)
    with pytest.raises(argparse.ArgumentTypeError):
        proxy_url_argument(text)


@pytest.mark.parametrize("base, url", [
    ("https://console.example.com", f"wss://console.example.com/websockify?token={TOKEN}"),
    ("https://console.example.com:8443/consoles", f"wss://console.example.com:8443/consoles/websockify?token={TOKEN}"),
    ("http://console.example.com", f"ws://console.example.com/websockify?token={TOKEN}"),
    ("http://console.example.com:443", f"ws://console.example.com:443/websockify?token={TOKEN}"),
    ("https://[2001:db8::5]", f"wss://[2001:db8::5]/websockify?token={TOKEN}"),
])
def test_websocket_url(base, url):
    assert websocket_url(parse_proxy_url(base), TOKEN) == url


def test_websocket_url_escapes_what_a_token_must_not_carry_raw():
    assert websocket_url(parse_proxy_url("https://h.example"), "a+b/c=") == \
        "wss://h.example/websockify?token=a%2Bb%2Fc%3D"


@pytest.mark.parametrize("base, command", [
    ("https://console.example.com", f"remote-viewer 'spice://console.example.com?tls-port=443&password={TOKEN}'"),
    ("https://console.example.com:8443/x",
     f"remote-viewer 'spice://console.example.com?tls-port=8443&password={TOKEN}'"),
    ("http://console.example.com:5800", f"remote-viewer 'spice://console.example.com?port=5800&password={TOKEN}'"),
    ("https://[2001:db8::5]", f"remote-viewer 'spice://[2001:db8::5]?tls-port=443&password={TOKEN}'"),
])
def test_remote_viewer_for_spice(base, command):
    assert remote_viewer_command("spice", parse_proxy_url(base), TOKEN) == command


@pytest.mark.parametrize("console_type", ["vnc", "serial", "console"])
def test_no_remote_viewer_for_the_others(console_type):
    assert remote_viewer_command(console_type, parse_proxy_url("https://h.example"), TOKEN) is None
