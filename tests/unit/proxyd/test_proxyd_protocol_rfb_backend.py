import struct

import pytest

from proxyd.protocol.errors import MalformedMessage, Oversized, UnsupportedVersion
from proxyd.protocol.rfb import (
    AuthenticationFailed,
    BackendAuthenticated,
    RfbBackendHandshake,
    RfbVersion,
    SecurityType,
    ServerRefused,
    StartTLS,
    UnsupportedSecurityType,
    VeNCryptSubtype,
    vnc_auth_response,
)

V33, V37, V38 = b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"
CHALLENGE = bytes(range(0xA0, 0xB0))
SERVER_INIT_START = b"\x02\xd0\x01\x90"  # 720x400


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def reason(text: bytes) -> bytes:
    return u32(len(text)) + text


def feed(handshake, chunks):
    """Feed chunks until an event; returns (events, remaining + the chunks never fed)."""
    for i, chunk in enumerate(chunks):
        events = handshake.receive_data(chunk)
        if events:
            rest = b"".join(chunks[i + 1:])
            return events, (events[-1].remaining + rest if isinstance(events[-1], BackendAuthenticated) else rest)
    return [], b""


def qemu_vencrypt(subtype: int) -> bytes:
    """What QEMU (ui/vnc-auth-vencrypt.c) sends up to its accept of the subtype."""
    return V38 + b"\x01\x13" + b"\x00\x02" + b"\x00\x01" + u32(subtype) + b"\x01"


def test_vencrypt_x509none_as_qemu_speaks_it(chunkings):
    for chunks in chunkings(qemu_vencrypt(260)):
        handshake = RfbBackendHandshake()
        events, rest = feed(handshake, chunks)
        assert (events, rest) == ([StartTLS()], b"")
        assert handshake.data_to_send() == V38 + b"\x13" + b"\x00\x02" + u32(260)
    for after_tls in chunkings(u32(0) + SERVER_INIT_START):
        handshake = RfbBackendHandshake()
        handshake.receive_data(qemu_vencrypt(260))
        assert handshake.tls_established() == []
        events, rest = feed(handshake, after_tls)
        assert events == [BackendAuthenticated(RfbVersion.V3_8, SecurityType.VENCRYPT, VeNCryptSubtype.X509_NONE,
                                               events[0].remaining)]
        assert rest == SERVER_INIT_START


def test_vencrypt_x509vnc_answers_the_challenge_inside_tls(chunkings):
    for chunks in chunkings(CHALLENGE + u32(0)):
        handshake = RfbBackendHandshake(password="s3cret")
        assert handshake.receive_data(qemu_vencrypt(261)) == [StartTLS()]
        assert handshake.data_to_send() == V38 + b"\x13\x00\x02" + u32(261)
        assert handshake.tls_established() == []
        events, _ = feed(handshake, chunks)
        assert events == [BackendAuthenticated(RfbVersion.V3_8, SecurityType.VENCRYPT, VeNCryptSubtype.X509_VNC, b"")]
        assert handshake.data_to_send() == vnc_auth_response(CHALLENGE, b"s3cret")


def test_x509none_is_preferred_when_both_are_offered():
    handshake = RfbBackendHandshake(password="pw")
    handshake.receive_data(V38 + b"\x01\x13\x00\x02\x00\x02" + u32(261) + u32(260))
    assert handshake.data_to_send().endswith(u32(260))


def test_vencrypt_wins_over_vnc_auth_and_none():
    handshake = RfbBackendHandshake(password="pw", allow_none=True)
    handshake.receive_data(V38 + b"\x03\x01\x02\x13")
    assert handshake.data_to_send() == V38 + b"\x13"


def test_plain_vnc_auth_with_the_resolver_password(chunkings):
    server = V38 + b"\x01\x02" + CHALLENGE + u32(0)
    for chunks in chunkings(server):
        handshake = RfbBackendHandshake(password="pw")
        events, rest = feed(handshake, chunks)
        assert events == [BackendAuthenticated(RfbVersion.V3_8, SecurityType.VNC_AUTH, None, b"")] and rest == b""
        assert handshake.data_to_send() == V38 + b"\x02" + vnc_auth_response(CHALLENGE, b"pw")


def test_a_wrong_password_gives_the_servers_reason():
    handshake = RfbBackendHandshake(password="wrong")
    with pytest.raises(AuthenticationFailed) as caught:
        handshake.receive_data(V38 + b"\x01\x02" + CHALLENGE + u32(1) + reason(b"Authentication failed\0"))
    assert str(caught.value) == "Authentication failed"
    assert caught.value.reason == "auth-failed"


def test_a_3_7_server_gives_no_reason_for_a_failure():
    handshake = RfbBackendHandshake(password="wrong")
    with pytest.raises(AuthenticationFailed, match="security result 1"):
        handshake.receive_data(V37 + b"\x01\x02" + CHALLENGE + u32(1))


def test_none_only_for_insecure_consoles():
    handshake = RfbBackendHandshake(allow_none=True)
    assert handshake.receive_data(V38 + b"\x01\x01" + u32(0)) == [
        BackendAuthenticated(RfbVersion.V3_8, SecurityType.NONE, None, b"")]
    assert handshake.data_to_send() == V38 + b"\x01"
    with pytest.raises(UnsupportedSecurityType, match=r"1 \(NONE\)"):
        RfbBackendHandshake().receive_data(V38 + b"\x01\x01")


def test_none_before_3_8_has_no_security_result():
    handshake = RfbBackendHandshake(allow_none=True)
    assert handshake.receive_data(V37 + b"\x01\x01" + SERVER_INIT_START) == [
        BackendAuthenticated(RfbVersion.V3_7, SecurityType.NONE, None, SERVER_INIT_START)]
    assert handshake.data_to_send() == V37 + b"\x01"


def test_an_unsupported_type_is_named():
    with pytest.raises(UnsupportedSecurityType) as caught:
        RfbBackendHandshake(password="pw").receive_data(V38 + b"\x03\x10\x14\x2a")
    assert "16 (TIGHT), 20 (SASL), 42 (unknown)" in str(caught.value)
    assert caught.value.reason == "unsupported-security-type"


def test_vnc_auth_needs_a_password():
    with pytest.raises(UnsupportedSecurityType, match=r"2 \(VNC_AUTH\)"):
        RfbBackendHandshake().receive_data(V38 + b"\x01\x02")


def test_a_server_refusing_the_connection_gives_its_reason():
    with pytest.raises(ServerRefused) as caught:
        RfbBackendHandshake().receive_data(V38 + b"\x00" + reason(b"Too many connections"))
    assert str(caught.value) == "Too many connections"
    assert caught.value.reason == "backend-refused"


@pytest.mark.parametrize("server, expected_reply", [
    (b"RFB 003.008\n", V38),
    (b"RFB 003.889\n", V38),
    (b"RFB 004.001\n", V38),
    (b"RFB 003.007\n", V37),
    (b"RFB 003.005\n", V33),
    (b"RFB 003.003\n", V33),
])
def test_the_version_answered_is_the_highest_not_above_the_servers(server, expected_reply):
    handshake = RfbBackendHandshake()
    handshake.receive_data(server)
    assert handshake.data_to_send() == expected_reply


def test_rfb_3_3_server_decides_the_type(chunkings):
    server = V33 + u32(2) + CHALLENGE + u32(0)
    for chunks in chunkings(server):
        handshake = RfbBackendHandshake(password="pw")
        events, _ = feed(handshake, chunks)
        assert events == [BackendAuthenticated(RfbVersion.V3_3, SecurityType.VNC_AUTH, None, b"")]
        assert handshake.data_to_send() == V33 + vnc_auth_response(CHALLENGE, b"pw")


def test_rfb_3_3_none_and_refusal():
    assert RfbBackendHandshake(allow_none=True).receive_data(V33 + u32(1)) == [
        BackendAuthenticated(RfbVersion.V3_3, SecurityType.NONE, None, b"")]
    with pytest.raises(ServerRefused, match="busy"):
        RfbBackendHandshake().receive_data(V33 + u32(0) + reason(b"busy"))
    with pytest.raises(MalformedMessage):
        RfbBackendHandshake().receive_data(V33 + u32(19))


@pytest.mark.parametrize("after_version, error, text", [
    (b"\x00\x01", UnsupportedVersion, "VeNCrypt 0.1"),
    (b"\x00\x02\x01", ServerRefused, "refused VeNCrypt 0.2"),
    (b"\x00\x02\x00\x00", ServerRefused, "no VeNCrypt subtype"),
    (b"\x00\x02\x00\x02" + u32(257) + u32(262), UnsupportedSecurityType, "257 (TLS_NONE), 262 (X509_PLAIN)"),
    (b"\x00\x02\x00\x01" + u32(261), UnsupportedSecurityType, "261 (X509_VNC)"),
    (b"\x00\x02\x00\x01" + u32(260) + b"\x00", ServerRefused, "260 (X509_NONE)"),
    (b"\x00\x02\x00\x01" + u32(260) + b"\x01\x16", MalformedMessage, "before the TLS handshake"),
])
def test_vencrypt_failures(after_version, error, text):
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        RfbBackendHandshake().receive_data(V38 + b"\x01\x13" + after_version)


def test_data_before_tls_has_its_own_reason():
    with pytest.raises(MalformedMessage) as caught:
        RfbBackendHandshake().receive_data(qemu_vencrypt(260) + b"\x16")
    assert caught.value.reason == "unexpected-data"


def test_a_reason_length_is_checked_before_buffering():
    handshake = RfbBackendHandshake()
    with pytest.raises(Oversized):
        handshake.receive_data(V38 + b"\x00" + u32(4097))
    with pytest.raises(RuntimeError):
        handshake.receive_data(b"x")


def test_calls_out_of_order_are_mistakes():
    handshake = RfbBackendHandshake()
    with pytest.raises(RuntimeError):
        handshake.tls_established()
    handshake.receive_data(qemu_vencrypt(260))
    with pytest.raises(RuntimeError):
        handshake.receive_data(b"\x16\x03\x03")
