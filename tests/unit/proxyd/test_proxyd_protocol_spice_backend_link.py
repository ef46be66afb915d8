import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from proxyd.protocol.errors import BadMagic, MalformedMessage, Oversized, UnsupportedVersion
from proxyd.protocol.spice_link import (
    BackendLinked,
    BadPublicKey,
    LinkError,
    LinkMess,
    LinkRefused,
    LinkReply,
    LinkReplyReceived,
    SpiceBackendLink,
    TicketKey,
    UnsupportedAuthMechanism,
    encode_link_error,
)

MAIN = LinkMess(0, 1, 0, (0b1001,), (0b1111,))
QEMU_COMMON, QEMU_MAIN = (0b1011,), (0b1001,)
MAIN_INIT_START = b"\x67\x00\x20\x00\x00\x00"


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def qemu_reply(key, common=QEMU_COMMON, channel=QEMU_MAIN) -> LinkReply:
    return LinkReply(LinkError.OK, key.public_der, common, channel)


def test_the_link_message_goes_out_at_once():
    assert SpiceBackendLink(MAIN, "pw").data_to_send() == MAIN.encode()


def test_a_whole_link_with_qemu(chunkings, qemu_key):
    reply = qemu_reply(qemu_key)
    for chunks in chunkings(reply.encode()):
        link = SpiceBackendLink(MAIN, "vm-password")
        link.data_to_send()
        events = []
        for chunk in chunks:
            events += link.receive_data(chunk)
        assert events == [LinkReplyReceived(reply)]
        out = link.data_to_send()
        assert len(out) == 4 + 128 and out[:4] == u32(1)
        assert qemu_key.decrypt(out[4:]) == "vm-password"
    for chunks in chunkings(u32(0) + MAIN_INIT_START):
        link = SpiceBackendLink(MAIN, "vm-password")
        link.receive_data(reply.encode())
        events = []
        for i, chunk in enumerate(chunks):
            events += link.receive_data(chunk)
            if events:
                break
        assert events == [BackendLinked(reply, events[0].remaining)]
        assert events[0].remaining + b"".join(chunks[i + 1:]) == MAIN_INIT_START


def test_the_password_is_encrypted_with_its_nul_using_oaep_sha1():
    qemu_private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    link = SpiceBackendLink(MAIN, "pw")
    link.data_to_send()
    link.receive_data(qemu_reply(TicketKey(qemu_private)).encode())
    openssl_oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    assert qemu_private.decrypt(link.data_to_send()[4:], openssl_oaep) == b"pw\0"


def test_no_mechanism_without_auth_selection(qemu_key):
    link = SpiceBackendLink(MAIN, "pw")
    link.data_to_send()
    link.receive_data(qemu_reply(qemu_key, common=(0b1000,)).encode())
    assert len(link.data_to_send()) == 128


def test_a_sasl_only_backend_is_refused(qemu_key):
    with pytest.raises(UnsupportedAuthMechanism):
        SpiceBackendLink(MAIN, "pw").receive_data(qemu_reply(qemu_key, common=(0b1101,)).encode())


@pytest.mark.parametrize("error", [LinkError.NEED_SECURED, LinkError.BAD_CONNECTION_ID,
                                   LinkError.CHANNEL_NOT_AVAILABLE, LinkError.VERSION_MISMATCH])
def test_errors_in_the_reply_are_passed_on(error):
    link = SpiceBackendLink(MAIN, "pw")
    with pytest.raises(LinkRefused) as caught:
        link.receive_data(encode_link_error(error))
    assert caught.value.link_error is error
    assert caught.value.reason == "link-refused"
    with pytest.raises(RuntimeError):
        link.receive_data(b"")


def test_a_refused_ticket_is_passed_on(qemu_key):
    link = SpiceBackendLink(MAIN, "stale")
    link.receive_data(qemu_reply(qemu_key).encode())
    with pytest.raises(LinkRefused, match="after the ticket") as caught:
        link.receive_data(u32(7))
    assert caught.value.link_error is LinkError.PERMISSION_DENIED


@pytest.mark.parametrize("data, error", [
    (b"RFB 003.008\n\0\0\0\0", BadMagic),
    (b"REDQ" + struct.pack("<III", 1, 0, 178), UnsupportedVersion),
    (b"REDQ" + struct.pack("<IIII", 2, 2, 4, 0), MalformedMessage),     # shorter than SpiceLinkReply
    (b"REDQ" + struct.pack("<III", 2, 2, 4097), Oversized),
    (LinkReply(LinkError.OK, bytes(162), (11,), ()).encode(), BadPublicKey),
])
def test_bad_replies(data, error):
    with pytest.raises(error):
        SpiceBackendLink(MAIN, "pw").receive_data(data)


def test_a_password_qemu_could_not_hold_is_the_callers_mistake():
    with pytest.raises(ValueError):
        SpiceBackendLink(MAIN, "x" * 61)
    with pytest.raises(ValueError):
        SpiceBackendLink(MAIN, "a\0b")
