import ssl
from typing import Optional

import pytest

from lab.pki import Pki
from resolverd import tls
from resolverd.config import ConfigError


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def handshake(server: ssl.SSLContext, client: ssl.SSLContext,
              server_hostname: Optional[str] = "localhost") -> ssl.SSLObject:
    """Run a TLS handshake between the two contexts over memory BIOs; the client's end, or the first SSLError."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client_side), ("server", server_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3 servers judge the client certificate after the client finished: read once more.
            try:
                server_side.read(1)
            except ssl.SSLWantReadError:
                pass
            c_in.write(s_out.read())
            try:
                client_side.read(1)
            except ssl.SSLWantReadError:
                pass
            return client_side
    raise AssertionError("handshake did not finish")


def test_mandatory_client_certificate(pki):
    server = tls.server_context(*pki.resolverd_server.as_tuple, client_ca=pki.ca_cert)
    handshake(server, tls.client_context(pki.ca_cert, *pki.proxyd_resolverd_client.as_tuple))
    with pytest.raises(ssl.SSLError):
        handshake(server, tls.client_context(pki.ca_cert))
    with pytest.raises(ssl.SSLError):
        handshake(server, tls.client_context(pki.ca_cert, *pki.foreign_client.as_tuple))


def test_client_verifies_server_name_and_chain(pki):
    server = tls.server_context(*pki.proxyd_server.as_tuple, client_ca=None)
    handshake(server, tls.client_context(pki.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, tls.client_context(pki.ca_cert), server_hostname="other.example")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, tls.client_context(pki.foreign_ca_cert))
    handshake(server, tls.client_context(pki.ca_cert, check_hostname=False), server_hostname=None)


def test_servers_issue_no_session_tickets(pki):
    """Ticket keys would live as long as the process, never rotated.  And a TLS 1.3 ticket comes after the
    handshake, while a client that reads in one thread (websockets' sync client) writes its first request in
    another: OpenSSL objects are not safe for that, and such a client's upgrade request got lost."""
    server = tls.server_context(*pki.proxyd_server.as_tuple, client_ca=None)
    client = handshake(server, tls.client_context(pki.ca_cert))
    assert client.version() == "TLSv1.3"
    assert not client.session.has_ticket


def test_tls_1_2_is_the_floor(pki):
    context = tls.client_context(pki.ca_cert)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION


def test_missing_files_are_named(pki, tmp_path):
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=f"cannot read certificate {missing}"):
        tls.server_context(missing, pki.proxyd_server.key, None)
    with pytest.raises(ConfigError, match=f"cannot read private key {missing}"):
        tls.server_context(pki.proxyd_server.cert, missing, None)
    with pytest.raises(ConfigError, match=f"cannot read CA certificate {missing}"):
        tls.client_context(missing)


def test_garbage_and_mismatched_files_are_named(pki, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=f"cannot load CA certificate {garbage}"):
        tls.client_context(garbage)
    with pytest.raises(ConfigError, match=f"cannot load certificate {pki.proxyd_server.cert}"):
        tls.server_context(pki.proxyd_server.cert, pki.resolverd_server.key, None)
    with pytest.raises(ConfigError, match="a key is needed"):
        tls.client_context(pki.ca_cert, pki.proxyd_server.cert)
