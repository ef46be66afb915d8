import os
import struct

import pytest

from proxyd.protocol.errors import BadMagic, MalformedMessage, Oversized, UnsupportedVersion
from proxyd.protocol.spice_link import (
    BadCapabilities,
    BadTicket,
    LinkError,
    LinkMess,
    LinkReply,
    LinkRequested,
    SpiceClientLink,
    TicketReceived,
    UnsupportedAuthMechanism,
    encode_link_error,
    encrypt_ticket,
    ticket_plaintext,
)
from proxyd.protocol.spice_link.client_link import MAX_PENDING

MAIN = LinkMess(0, 1, 0, (0b1001,), (0b1111,))          # spice-gtk: AUTH_SELECTION|MINI_HEADER
DISPLAY = LinkMess(0x5EED, 2, 1, (0b1001,), (0b11,))
QEMU_COMMON, QEMU_MAIN = (0b1011,), (0b1001,)           # AUTH_SELECTION|AUTH_SPICE|MINI_HEADER; migrate caps
OK = b"\0\0\0\0"


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def ticket(key, password: str) -> bytes:
    return encrypt_ticket(key.public_der, ticket_plaintext(password))


def feed(link, chunks):
    events = []
    for chunk in chunks:
        events += link.receive_data(chunk)
    return events


def test_a_whole_link_byte_for_byte(chunkings, proxy_key):
    for chunks in chunkings(MAIN.encode()):
        link = SpiceClientLink(proxy_key)
        assert feed(link, chunks) == [LinkRequested(MAIN)]
        assert link.message == MAIN
        assert link.data_to_send() == b""
    assert link.send_reply(QEMU_COMMON, QEMU_MAIN) == []
    assert link.data_to_send() == LinkReply(LinkError.OK, proxy_key.public_der, QEMU_COMMON, QEMU_MAIN).encode()
    auth = u32(1) + ticket(proxy_key, "TOKEN-1")
    for chunks in chunkings(auth):
        link = SpiceClientLink(proxy_key)
        link.receive_data(MAIN.encode())
        link.send_reply(QEMU_COMMON, QEMU_MAIN)
        link.data_to_send()
        assert feed(link, chunks) == [TicketReceived("TOKEN-1")]
        assert link.data_to_send() == b""
    assert link.complete() == b""
    assert link.data_to_send() == OK


def test_reply_always_offers_ticket_auth_and_never_sasl(proxy_key):
    link = SpiceClientLink(proxy_key)
    link.receive_data(DISPLAY.encode())
    link.send_reply((0b0100,), ())                          # AUTH_SASL only
    reply = LinkReply.parse(link.data_to_send()[16:])
    assert reply.common_caps == (0b0011,) and reply.channel_caps == ()


def test_a_client_without_auth_selection_sends_the_ticket_alone(proxy_key):
    link = SpiceClientLink(proxy_key)
    link.receive_data(LinkMess(0, 1, 0, (0b1000,), ()).encode())
    link.send_reply(QEMU_COMMON, ())
    assert link.receive_data(ticket(proxy_key, "t")) == [TicketReceived("t")]


def test_an_empty_password_is_one_nul_byte(proxy_key):
    link = SpiceClientLink(proxy_key)
    link.receive_data(MAIN.encode())
    link.send_reply(QEMU_COMMON, ())
    assert link.receive_data(u32(1) + encrypt_ticket(proxy_key.public_der, b"\0")) == [TicketReceived("")]


def test_bytes_after_the_ticket_go_to_the_relay(proxy_key):
    link = SpiceClientLink(proxy_key)
    link.receive_data(MAIN.encode())
    link.send_reply(QEMU_COMMON, ())
    link.receive_data(u32(1) + ticket(proxy_key, "t") + b"\x65\x00")
    assert link.complete() == b"\x65\x00"


@pytest.mark.parametrize("data, error, link_error", [
    (b"REDX" + MAIN.encode()[4:], BadMagic, LinkError.INVALID_MAGIC),
    (b"REDQ" + struct.pack("<III", 1, 0, 18), UnsupportedVersion, LinkError.VERSION_MISMATCH),
    (b"REDQ" + struct.pack("<III", 2, 2, 17), MalformedMessage, LinkError.INVALID_DATA),
    (b"REDQ" + struct.pack("<III", 2, 2, 5000), Oversized, LinkError.INVALID_DATA),
    (b"REDQ" + struct.pack("<III", 2, 2, 22) + struct.pack("<IBBIII", 0, 1, 0, 1, 1, 18) + u32(9),
     BadCapabilities, LinkError.INVALID_DATA),
])
def test_bad_links_get_the_whole_error_reply(proxy_key, data, error, link_error):
    link = SpiceClientLink(proxy_key)
    with pytest.raises(error):
        link.receive_data(data)
    assert link.data_to_send() == encode_link_error(link_error)
    with pytest.raises(RuntimeError):
        link.receive_data(b"")


def test_sasl_is_refused_after_the_reply_with_a_bare_result(proxy_key):
    link = SpiceClientLink(proxy_key)
    link.receive_data(MAIN.encode())
    link.send_reply(QEMU_COMMON, ())
    link.data_to_send()
    with pytest.raises(UnsupportedAuthMechanism) as caught:
        link.receive_data(u32(2))
    assert caught.value.reason == "bad-auth-mechanism"
    assert link.data_to_send() == u32(LinkError.INVALID_DATA)


@pytest.mark.parametrize("make_ticket", [
    lambda proxy_key, other_key: os.urandom(128),
    lambda proxy_key, other_key: ticket(other_key, "token"),                       # encrypted for QEMU
    lambda proxy_key, other_key: encrypt_ticket(proxy_key.public_der, b"to\0ken\0"),
    lambda proxy_key, other_key: encrypt_ticket(proxy_key.public_der, b"\xff\xfe\0"),
])
def test_undecryptable_tickets_are_permission_denied(proxy_key, qemu_key, make_ticket):
    link = SpiceClientLink(proxy_key)
    link.receive_data(MAIN.encode())
    link.send_reply(QEMU_COMMON, ())
    link.data_to_send()
    with pytest.raises(BadTicket) as caught:
        link.receive_data(u32(1) + make_ticket(proxy_key, qemu_key))
    assert caught.value.reason == "bad-ticket"
    assert link.data_to_send() == u32(LinkError.PERMISSION_DENIED)


def test_refusals_take_the_form_the_client_reads_next(proxy_key):
    link = SpiceClientLink(proxy_key)
    link.receive_data(DISPLAY.encode())
    link.refuse(LinkError.BAD_CONNECTION_ID)
    assert link.data_to_send() == encode_link_error(LinkError.BAD_CONNECTION_ID)

    link = SpiceClientLink(proxy_key)
    link.receive_data(MAIN.encode())
    link.send_reply(QEMU_COMMON, ())
    link.receive_data(u32(1) + ticket(proxy_key, "wrong"))
    link.data_to_send()
    link.refuse(LinkError.PERMISSION_DENIED)
    assert link.data_to_send() == u32(7)
    with pytest.raises(RuntimeError):
        link.complete()


def test_refusing_with_ok_or_after_completion_is_a_mistake(proxy_key):
    link = SpiceClientLink(proxy_key)
    with pytest.raises(ValueError):
        link.refuse(LinkError.OK)
    with pytest.raises(RuntimeError):
        link.send_reply((), ())
    link.receive_data(MAIN.encode())
    link.send_reply((), ())
    link.receive_data(u32(1) + ticket(proxy_key, "t"))
    link.complete()
    with pytest.raises(RuntimeError):
        link.refuse(LinkError.ERROR)


def test_a_client_cannot_make_the_proxy_buffer_while_it_waits(proxy_key):
    link = SpiceClientLink(proxy_key)
    link.receive_data(MAIN.encode() + bytes(MAX_PENDING))
    assert link.buffered_bytes == MAX_PENDING
    with pytest.raises(Oversized):
        link.receive_data(b"x")
    assert link.data_to_send() == encode_link_error(LinkError.INVALID_DATA)
