import pytest

from proxyd.protocol.front_sniffer import MAX_PEEK, Front, FrontDetected, FrontSniffer, UnknownFront

OUTER = {Front.TLS, Front.HTTP_CONNECT}
INNER = {Front.SPICE_LINK, Front.HTTP_GET}

CLIENT_HELLO_START = bytes.fromhex("160301020001000200")
GLIB_CONNECT = b"CONNECT tok:5901 HTTP/1.0\r\nHost: tok:5901\r\n\r\n"
SPICE_LINK_START = b"REDQ\x02\x00\x00\x00\x02\x00\x00\x00"
WEBSOCKET_GET = b"GET /websockify?token=t HTTP/1.1\r\n"


@pytest.mark.parametrize("allowed, data, front", [
    (OUTER, CLIENT_HELLO_START, Front.TLS),
    (OUTER, GLIB_CONNECT, Front.HTTP_CONNECT),
    (INNER, SPICE_LINK_START, Front.SPICE_LINK),
    (INNER, WEBSOCKET_GET, Front.HTTP_GET),
])
def test_each_front_is_named_and_every_byte_is_handed_back(chunkings, allowed, data, front):
    for chunks in chunkings(data):
        sniffer = FrontSniffer(allowed)
        fed = b""
        for chunk in chunks:
            fed += chunk
            detected = sniffer.receive_data(chunk)
            if detected:
                break
        assert detected == FrontDetected(front, fed)


def test_detection_needs_no_more_than_the_signature():
    assert FrontSniffer(OUTER).receive_data(b"\x16") is None
    assert FrontSniffer(OUTER).receive_data(b"\x16\x03") == FrontDetected(Front.TLS, b"\x16\x03")
    assert FrontSniffer(OUTER).receive_data(b"CONNECT") is None
    assert FrontSniffer(INNER).receive_data(b"REDQ").front is Front.SPICE_LINK


@pytest.mark.parametrize("allowed, data", [
    (OUTER, b"GET / HTTP/1.1\r\n"),      # plain HTTP on the TLS port
    (OUTER, b"REDQ"),                    # clear-text SPICE without --listen-insecure
    (INNER, b"\x16\x03\x01"),            # TLS inside TLS
    (OUTER, b"CONNECX "),
    (OUTER, b"\x16\x02"),
    (INNER, b"get "),                    # methods are case-sensitive
    (OUTER, b"\x00"),
])
def test_other_starts_are_rejected_as_soon_as_they_cannot_match(allowed, data):
    sniffer = FrontSniffer(allowed)
    with pytest.raises(UnknownFront) as caught:
        for i in range(len(data)):
            sniffer.receive_data(data[i:i + 1])
    assert caught.value.reason == "unknown-front"


def test_a_decision_never_needs_more_than_max_peek_bytes():
    assert MAX_PEEK == len(b"CONNECT ")
    for start in (b"CONNECT!", b"GET/", b"REDX", b"\x16\x04", b"CONNECT "):
        sniffer = FrontSniffer(set(Front))
        outcome = None
        try:
            for i in range(len(start)):
                outcome = sniffer.receive_data(start[i:i + 1])
        except UnknownFront:
            outcome = "rejected"
        assert outcome is not None


def test_all_fronts_on_an_insecure_listener():
    sniffer = FrontSniffer(set(Front))
    assert sniffer.receive_data(b"REDQ") == FrontDetected(Front.SPICE_LINK, b"REDQ")


def test_misuse_is_not_a_protocol_error():
    with pytest.raises(ValueError):
        FrontSniffer([])
    sniffer = FrontSniffer(OUTER)
    sniffer.receive_data(b"\x16\x03")
    with pytest.raises(RuntimeError):
        sniffer.receive_data(b"more")
