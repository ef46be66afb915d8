import struct

import pytest

from proxyd.protocol.errors import BadMagic, MalformedMessage, Oversized, UnsupportedVersion
from proxyd.protocol.spice_link import (
    BadCapabilities,
    LinkError,
    LinkHeader,
    LinkMess,
    LinkReply,
    caps_from_bits,
    encode_link_error,
    has_cap,
    set_cap,
)
from proxyd.protocol.spice_link.constants import LINK_MESS_SIZE, LINK_REPLY_SIZE, PUBKEY_SIZE
from proxyd.protocol.spice_link.messages import parse_link_header, parse_link_result

# spice-gtk opening a main channel: AUTH_SELECTION|MINI_HEADER, main caps bits 0-3.
GTK_MAIN_LINK = bytes.fromhex(
    "52454451" "02000000" "02000000" "1a000000"   # REDQ 2.2, 26 bytes follow
    "00000000" "01" "00"                          # connection 0, main, id 0
    "01000000" "01000000" "12000000"              # 1 common word, 1 channel word, caps at 18
    "09000000" "0f000000"
)
PUBKEY = bytes(range(PUBKEY_SIZE))


def test_link_mess_encodes_byte_for_byte():
    assert LinkMess(0, 1, 0, (0b1001,), (0b1111,)).encode() == GTK_MAIN_LINK
    assert len(LinkMess(7, 2, 1).encode()) == 16 + LINK_MESS_SIZE


def test_link_mess_parses_back():
    header = parse_link_header(GTK_MAIN_LINK[:16], LINK_MESS_SIZE)
    assert header == LinkHeader(2, 2, 26)
    message = LinkMess.parse(GTK_MAIN_LINK[16:])
    assert message == LinkMess(0, 1, 0, (9,), (15,))
    assert message.mini_header and message.auth_selection


def test_caps_offset_is_honoured_not_assumed():
    body = struct.pack("<IBBIII", 0x1234, 2, 1, 1, 2, 22) + b"pad!" + struct.pack("<3I", 8, 1, 2)
    assert LinkMess.parse(body) == LinkMess(0x1234, 2, 1, (8,), (1, 2))


def test_caps_offset_is_ignored_without_caps_as_spice_server_does():
    body = struct.pack("<IBBIII", 5, 3, 0, 0, 0, 0)
    assert LinkMess.parse(body) == LinkMess(5, 3, 0)


@pytest.mark.parametrize("num_common, num_channel, offset, size", [
    (1025, 0, 18, 18 + 4 * 1025),   # over spice-server's bound
    (0, 1025, 18, 18 + 4 * 1025),
    (1, 1, 18, 18 + 4),             # the second word is past the message
    (1, 0, 17, 18 + 4),             # caps overlapping the fixed part
    (1, 0, 0xFFFFFFFF, 18 + 4),     # far out of range
    (0xFFFFFFFF, 0xFFFFFFFF, 18, 18 + 4),
])
def test_caps_that_do_not_fit_are_refused(num_common, num_channel, offset, size):
    body = struct.pack("<IBBIII", 0, 1, 0, num_common, num_channel, offset).ljust(size, b"\0")
    with pytest.raises(BadCapabilities) as caught:
        LinkMess.parse(body)
    assert caught.value.reason == "bad-caps"


@pytest.mark.parametrize("header, error", [
    (b"REDX" + struct.pack("<III", 2, 2, 18), BadMagic),
    (b"REDQ" + struct.pack("<III", 1, 3, 18), UnsupportedVersion),
    (b"REDQ" + struct.pack("<III", 3, 0, 18), UnsupportedVersion),
    (b"REDQ" + struct.pack("<III", 2, 2, 17), MalformedMessage),
    (b"REDQ" + struct.pack("<III", 2, 2, 4097), Oversized),
    (b"REDQ" + struct.pack("<III", 2, 2, 0xFFFFFFFF), Oversized),
])
def test_bad_headers(header, error):
    with pytest.raises(error):
        parse_link_header(header, LINK_MESS_SIZE)


def test_any_minor_version_is_accepted_as_spice_server_does():
    assert parse_link_header(b"REDQ" + struct.pack("<III", 2, 9, 4096), LINK_MESS_SIZE) == LinkHeader(2, 9, 4096)


def test_link_reply_encodes_byte_for_byte_and_parses_back():
    reply = LinkReply(LinkError.OK, PUBKEY, (0b1011,), (0b1001,))
    encoded = reply.encode()
    assert encoded[:16] == b"REDQ" + struct.pack("<III", 2, 2, 178 + 8)
    assert encoded[16:20] == b"\0\0\0\0"
    assert encoded[20:182] == PUBKEY
    assert encoded[182:194] == struct.pack("<III", 1, 1, 178)
    assert encoded[194:] == struct.pack("<II", 0b1011, 0b1001)
    assert parse_link_header(encoded[:16], LINK_REPLY_SIZE).size == 186
    assert LinkReply.parse(encoded[16:]) == reply
    assert reply.mini_header


def test_link_reply_needs_a_whole_key():
    with pytest.raises(ValueError):
        LinkReply(LinkError.OK, b"short").encode()


def test_error_reply_is_the_whole_194_bytes():
    encoded = encode_link_error(LinkError.PERMISSION_DENIED)
    assert encoded == b"REDQ" + struct.pack("<IIII", 2, 2, 178, 7) + bytes(162) + bytes(12)
    assert LinkReply.parse(encoded[16:]) == LinkReply(LinkError.PERMISSION_DENIED, bytes(162))


def test_unknown_error_codes_read_as_error():
    body = struct.pack(f"<I{PUBKEY_SIZE}sIII", 42, bytes(PUBKEY_SIZE), 0, 0, 0)
    assert LinkReply.parse(body).error is LinkError.ERROR
    assert parse_link_result(struct.pack("<I", 42)) is LinkError.ERROR
    assert parse_link_result(struct.pack("<I", 8)) is LinkError.BAD_CONNECTION_ID


def test_cap_helpers():
    assert caps_from_bits(0, 3) == (9,)
    assert caps_from_bits(33) == (0, 2)
    assert has_cap((9,), 3) and not has_cap((9,), 1) and not has_cap((), 0) and not has_cap((9,), 40)
    assert set_cap((9,), 1, True) == (11,)
    assert set_cap((11,), 3, False) == (3,)
    assert set_cap((), 2, False) == (0,)
