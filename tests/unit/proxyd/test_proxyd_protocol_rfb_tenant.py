import struct

import pytest

from proxyd.protocol.errors import MalformedMessage, Oversized, UnsupportedVersion
from proxyd.protocol.rfb import RfbTenantHandshake, RfbVersion, TenantAuthenticated, UnsupportedSecurityType
from proxyd.protocol.rfb.tenant import MAX_PENDING

V33, V37, V38 = b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"
CLIENT_INIT_SHARED = b"\x01"


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def reason(text: bytes) -> bytes:
    return u32(len(text)) + text


def feed_until_done(handshake, chunks):
    """Feed chunks until the handshake finishes; returns (events, remaining + the chunks never fed)."""
    events = []
    for i, chunk in enumerate(chunks):
        events += handshake.receive_data(chunk)
        if events:
            return events, events[-1].remaining + b"".join(chunks[i + 1:])
    return events, b""


@pytest.mark.parametrize("tenant_bytes, offer, version", [
    (V38 + b"\x01" + CLIENT_INIT_SHARED, b"\x01\x01" + u32(0), RfbVersion.V3_8),
    (V37 + b"\x01" + CLIENT_INIT_SHARED, b"\x01\x01", RfbVersion.V3_7),
    (V33 + CLIENT_INIT_SHARED, u32(1), RfbVersion.V3_3),
])
def test_tenant_transcripts_when_the_backend_was_ready_first(chunkings, tenant_bytes, offer, version):
    for chunks in chunkings(tenant_bytes):
        handshake = RfbTenantHandshake()
        assert handshake.accept() == []
        events, rest = feed_until_done(handshake, chunks)
        assert events == [TenantAuthenticated(version, events[0].remaining)]
        assert rest == CLIENT_INIT_SHARED
        assert handshake.data_to_send() == V38 + offer


def test_the_offer_waits_for_accept():
    handshake = RfbTenantHandshake()
    assert handshake.data_to_send() == V38
    assert handshake.receive_data(V38) == []
    assert handshake.data_to_send() == b""
    assert handshake.accept() == []
    assert handshake.data_to_send() == b"\x01\x01"
    assert handshake.receive_data(b"\x01") == [TenantAuthenticated(RfbVersion.V3_8, b"")]
    assert handshake.data_to_send() == u32(0)


def test_a_3_3_tenant_is_done_as_soon_as_it_is_accepted():
    handshake = RfbTenantHandshake()
    handshake.data_to_send()
    assert handshake.receive_data(V33) == []
    assert handshake.accept() == [TenantAuthenticated(RfbVersion.V3_3, b"")]
    assert handshake.data_to_send() == u32(1)


@pytest.mark.parametrize("version", [b"RFB 003.005\n", b"RFB 003.889\n", b"RFB 003.006\n"])
def test_other_3_x_versions_are_treated_as_3_3(version):
    handshake = RfbTenantHandshake()
    handshake.receive_data(version)
    assert handshake.accept() == [TenantAuthenticated(RfbVersion.V3_3, b"")]


@pytest.mark.parametrize("version, error", [
    (b"RFB 004.001\n", UnsupportedVersion),
    (b"RFB 002.000\n", UnsupportedVersion),
    (b"RFB 003.8\n\n\n", MalformedMessage),
    (b"GET / HTTP/1.", MalformedMessage),
])
def test_bad_versions(version, error):
    with pytest.raises(error):
        RfbTenantHandshake().receive_data(version)


def test_a_3_8_tenant_choosing_another_type_gets_a_failed_security_result():
    handshake = RfbTenantHandshake()
    handshake.receive_data(V38)
    handshake.accept()
    handshake.data_to_send()
    with pytest.raises(UnsupportedSecurityType) as caught:
        handshake.receive_data(b"\x02")
    assert caught.value.reason == "unsupported-security-type"
    assert handshake.data_to_send() == u32(1) + reason(b"security type None is the only one offered")
    with pytest.raises(RuntimeError):
        handshake.receive_data(b"\x01")


def test_a_3_7_tenant_choosing_another_type_is_just_dropped():
    handshake = RfbTenantHandshake()
    handshake.receive_data(V37)
    handshake.accept()
    handshake.data_to_send()
    with pytest.raises(UnsupportedSecurityType):
        handshake.receive_data(b"\x13")
    assert handshake.data_to_send() == b""


@pytest.mark.parametrize("version, refusal", [
    (V38, b"\x00" + reason(b"console unavailable")),
    (V37, b"\x00" + reason(b"console unavailable")),
    (V33, u32(0) + reason(b"console unavailable")),
])
def test_refusal_before_the_offer_tells_every_version_why(version, refusal):
    handshake = RfbTenantHandshake()
    handshake.data_to_send()
    handshake.receive_data(version)
    handshake.refuse("console unavailable")
    assert handshake.data_to_send() == refusal
    with pytest.raises(RuntimeError):
        handshake.accept()


def test_refusal_before_the_tenant_version_says_nothing():
    handshake = RfbTenantHandshake()
    handshake.data_to_send()
    handshake.refuse("too late")
    assert handshake.data_to_send() == b""


def test_refusal_after_the_offer_of_a_3_8_tenant_is_a_security_result():
    handshake = RfbTenantHandshake()
    handshake.receive_data(V38)
    handshake.accept()
    handshake.data_to_send()
    handshake.refuse("gone")
    assert handshake.data_to_send() == u32(1) + reason(b"gone")


def test_refusing_a_finished_handshake_is_a_mistake():
    handshake = RfbTenantHandshake()
    handshake.receive_data(V33)
    handshake.accept()
    with pytest.raises(RuntimeError):
        handshake.refuse("late")


def test_a_tenant_cannot_make_the_proxy_buffer_while_it_waits():
    handshake = RfbTenantHandshake()
    handshake.receive_data(V38 + b"x" * MAX_PENDING)
    assert handshake.buffered_bytes == MAX_PENDING
    with pytest.raises(Oversized):
        handshake.receive_data(b"x")


def test_a_long_reason_is_cut():
    handshake = RfbTenantHandshake()
    handshake.receive_data(V38)
    handshake.data_to_send()
    handshake.refuse("x" * 10000)
    out = handshake.data_to_send()
    assert out[1:5] == u32(4096) and len(out) == 1 + 4 + 4096
