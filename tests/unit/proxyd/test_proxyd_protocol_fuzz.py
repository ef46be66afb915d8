"""Fuzzing the parsers: whatever the bytes and however they are split, a
machine raises nothing but ProtocolError and never holds more than its bound
while a handshake is incomplete."""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxyd.protocol import http_connect, spice_main
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.front_sniffer import MAX_PEEK, Front, FrontSniffer
from proxyd.protocol.rfb import RfbBackendHandshake, RfbTenantHandshake, StartTLS
from proxyd.protocol.rfb import backend as rfb_backend
from proxyd.protocol.rfb import tenant as rfb_tenant
from proxyd.protocol.spice_link import (
    BackendLinked,
    LinkError,
    LinkMess,
    LinkReply,
    LinkRequested,
    SpiceBackendLink,
    SpiceClientLink,
    TicketReceived,
    encrypt_ticket,
    ticket_plaintext,
)
from proxyd.protocol.spice_link import backend_link, client_link
from proxyd.protocol.spice_link.constants import LINK_MESS_SIZE, LINK_REPLY_SIZE, MAX_CAPS_WORDS, MAX_LINK_SIZE
from proxyd.protocol.spice_link.messages import encode_link_error, parse_link_header

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
u32 = st.integers(0, 0xFFFFFFFF)
small_or_any = st.one_of(st.integers(0, 8), st.integers(0, MAX_CAPS_WORDS + 2), u32)


def split(data: bytes, cuts):
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


caps_words = st.lists(u32, max_size=4).map(tuple)


@st.composite
def link_messages(draw):
    """SpiceLinkMess bytes: well-formed half of the time, else with sizes, counts and offsets often wrong."""
    if draw(st.booleans()):
        message = LinkMess(draw(u32), draw(st.integers(0, 255)), draw(st.integers(0, 255)),
                           draw(caps_words), draw(caps_words))
        return message.encode()
    body = struct.pack("<IBBIII", draw(u32), draw(st.integers(0, 255)), draw(st.integers(0, 255)),
                       draw(small_or_any), draw(small_or_any),
                       draw(st.one_of(st.just(LINK_MESS_SIZE), st.integers(0, 64), u32)))
    body += draw(st.binary(max_size=80))
    size = draw(st.one_of(st.just(len(body)), st.integers(0, MAX_LINK_SIZE + 8), u32))
    major = draw(st.sampled_from([2, 2, 2, 1, 3]))
    return b"REDQ" + struct.pack("<III", major, draw(u32), size) + body


@st.composite
def link_replies(draw, key):
    """SpiceLinkReply bytes: well-formed with QEMU's key half of the time, else often wrong."""
    if draw(st.booleans()):
        common = draw(st.sampled_from([(0b1011,), (0b1000,), (0b1101,), ()]))
        return LinkReply(LinkError.OK, key.public_der, common, draw(caps_words)).encode()
    pub_key = draw(st.sampled_from([key.public_der, bytes(162)]))
    error = draw(st.sampled_from([0, 0, 0, 7, 42]))
    body = struct.pack("<I162sIII", error, pub_key, draw(small_or_any), draw(small_or_any),
                       draw(st.one_of(st.just(LINK_REPLY_SIZE), st.integers(0, 250), u32)))
    body += draw(st.binary(max_size=40))
    size = draw(st.one_of(st.just(len(body)), st.integers(0, MAX_LINK_SIZE + 8)))
    return b"REDQ" + struct.pack("<III", 2, 2, size) + body


@FUZZ
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=300))
def test_link_parsers_raise_only_protocol_errors(header, body):
    for parse in (lambda: parse_link_header(header, LINK_MESS_SIZE), lambda: LinkMess.parse(body.ljust(18, b"\0")),
                  lambda: LinkReply.parse(body.ljust(178, b"\0"))):
        try:
            parse()
        except ProtocolError:
            pass


def check_error_answer(out: bytes) -> None:
    """The whole error reply before the link is answered, else (maybe after the reply) a bare u32."""
    if len(out) == 194 and out[:4] == b"REDQ":
        assert LinkReply.parse(out[16:]).error is not LinkError.OK
        return
    reply, result = out[:-4], struct.unpack("<I", out[-4:])[0]
    assert result in (LinkError.INVALID_DATA, LinkError.PERMISSION_DENIED)
    assert reply == b"" or LinkReply.parse(reply[16:]).error is LinkError.OK


@FUZZ
@given(st.data())
def test_spice_client_link(proxy_key, data):
    start = data.draw(st.one_of(link_messages(), st.binary(max_size=200)))
    mechanism = struct.pack("<I", data.draw(st.sampled_from([1, 1, 2, 0xFFFFFFFF])))
    ticket = data.draw(st.one_of(st.just(encrypt_ticket(proxy_key.public_der, ticket_plaintext("tok"))),
                                 st.binary(min_size=128, max_size=128)))
    stream = start + mechanism + ticket + data.draw(st.binary(max_size=50))
    link = SpiceClientLink(proxy_key)
    events = []
    try:
        for chunk in split(stream, data.draw(st.lists(st.integers(0, 10_000), max_size=6))):
            events += link.receive_data(chunk)
            assert link.buffered_bytes <= client_link.MAX_PENDING
            if events and isinstance(events[0], LinkRequested):
                message = events.pop(0).message
                assert len(message.common_caps) <= MAX_CAPS_WORDS and len(message.channel_caps) <= MAX_CAPS_WORDS
                assert LinkMess.parse(message.encode()[16:]) == message
                events += link.send_reply(message.common_caps, ())
                assert LinkReply.parse(link.data_to_send()[16:]).error is LinkError.OK
            if events:
                assert events == [TicketReceived("tok")]
                link.complete()
                assert link.data_to_send() == b"\0\0\0\0"
                return
    except ProtocolError:
        check_error_answer(link.data_to_send())


@FUZZ
@given(st.data())
def test_spice_backend_link(qemu_key, data):
    stream = data.draw(st.one_of(link_replies(qemu_key), st.binary(max_size=250),
                                 st.just(encode_link_error(LinkError.NEED_SECURED))))
    stream += data.draw(st.sampled_from([b"\0\0\0\0", b"\x07\0\0\0", b""])) + data.draw(st.binary(max_size=12))
    link = SpiceBackendLink(LinkMess(0, 1, 0, (9,), ()), "pw")
    for chunk in split(stream, data.draw(st.lists(st.integers(0, 10_000), max_size=6))):
        try:
            events = link.receive_data(chunk)
        except ProtocolError:
            return
        assert link.buffered_bytes <= backend_link.MAX_PENDING
        if any(isinstance(event, BackendLinked) for event in events):
            return


@st.composite
def connect_requests(draw):
    alphabet = st.sampled_from(list("CONNECThost:[]1234567890 HTTP/.\r\n\t:aZ-_") + ["\r\n", "\r\n\r\n", "\xff"])
    text = "".join(draw(st.lists(alphabet, max_size=120)))
    prefix = draw(st.sampled_from(["CONNECT ", "CONNECT h:1 HTTP/1.1\r\n", "CONNECT [::1]:5 HTTP/1.0\r\n"]))
    return (prefix + text).encode("utf-8")


@FUZZ
@given(st.data())
def test_http_connect_parser(data):
    stream = data.draw(st.one_of(connect_requests(), st.binary(max_size=300),
                                 st.binary(min_size=8000, max_size=9000)))
    parser = http_connect.ConnectRequestParser()
    for chunk in split(stream, data.draw(st.lists(st.integers(0, 10_000), max_size=6))):
        try:
            request = parser.receive_data(chunk)
        except ProtocolError as error:
            assert http_connect.refusal_for(error).startswith(b"HTTP/1.1 4")
            return
        if request is not None:
            assert request.host and 0 < request.port < 65536
            return
        assert parser.buffered_bytes < http_connect.MAX_REQUEST_SIZE


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_rfb_tenant(stream, cuts, accept_first):
    handshake = RfbTenantHandshake()
    if accept_first:
        handshake.accept()
    for chunk in split(stream, cuts):
        try:
            if handshake.receive_data(chunk):
                return
        except ProtocolError:
            return
        assert handshake.buffered_bytes <= rfb_tenant.MAX_PENDING


@FUZZ
@given(st.data())
def test_rfb_backend(data):
    start = data.draw(st.sampled_from([b"RFB 003.008\n", b"RFB 003.003\n", b"RFB 003.007\n", b""]))
    stream = start + data.draw(st.binary(max_size=300))
    handshake = RfbBackendHandshake(password=data.draw(st.sampled_from([None, "pw"])), allow_none=data.draw(st.booleans()))
    for chunk in split(stream, data.draw(st.lists(st.integers(0, 10_000), max_size=6))):
        try:
            events = handshake.receive_data(chunk)
        except ProtocolError:
            return
        assert handshake.buffered_bytes <= rfb_backend.MAX_PENDING
        if events:
            if isinstance(events[-1], StartTLS):
                handshake.tls_established()
            else:
                return


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_main_channel_filter(stream, cuts, mini_header):
    channel_filter = spice_main.MainChannelFilter(mini_header=mini_header)
    for chunk in split(stream, cuts):
        try:
            channel_filter.receive_data(chunk)
        except ProtocolError:
            return
        assert channel_filter.buffered_bytes <= 18 + spice_main.MAX_INSPECTED_SIZE


@FUZZ
@given(st.binary(min_size=MAX_PEEK, max_size=40))
def test_front_sniffer_decides_within_max_peek_bytes(stream):
    sniffer = FrontSniffer(set(Front))
    try:
        for i in range(MAX_PEEK):
            if sniffer.receive_data(stream[i:i + 1]):
                return
    except ProtocolError:
        return
    raise AssertionError(f"no decision after {stream[:MAX_PEEK]!r}")
