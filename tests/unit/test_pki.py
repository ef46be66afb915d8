import argparse
import datetime
import grp
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from resolveradm import pki
from resolverd import tls

SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
LEAVES = ("resolverd", "proxyd", "proxyd-client")


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    pki.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def made(tmp_path):
    directory = tmp_path / "pki"
    report = pki.make(pki.plan(directory, proxy_names=["console.example.com", "192.0.2.7"],
                               qemu_dir=tmp_path / "qemu", qemu_group=grp.getgrgid(os.getgid()).gr_name))
    return directory, tmp_path / "qemu", report


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(path: Path) -> list:
    names = cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in names]


def certtool_verify(ca: Path, leaf: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["certtool", "--verify", "--load-ca-certificate", str(ca), "--infile", str(leaf),
                           *options], capture_output=True, text=True, timeout=30)


def test_fresh_directory_gets_the_whole_layout(made):
    directory, qemu, report = made
    expected = [directory / "ca-cert.pem", directory / "ca-key.pem"]
    for leaf in LEAVES:
        expected += [directory / f"{leaf}-cert.pem", directory / f"{leaf}-key.pem"]
    expected += [qemu / "server-cert.pem", qemu / "server-key.pem", qemu / "ca-cert.pem"]
    assert [path for path, _ in report] == expected
    assert all(status.startswith("created") for _, status in report)
    assert (qemu / "ca-cert.pem").read_bytes() == (directory / "ca-cert.pem").read_bytes()


def test_file_modes_keep_keys_private(made):
    directory, qemu, _ = made
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(directory / "ca-key.pem") == 0o600
    assert mode(directory / "ca-cert.pem") == 0o644
    assert mode(qemu / "server-cert.pem") == 0o644
    # This machine has no service users: their keys stay private to root.
    for leaf in LEAVES:
        assert mode(directory / f"{leaf}-key.pem") == 0o600


def test_key_is_given_to_an_existing_group(made):
    _, qemu, report = made
    key = qemu / "server-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o640 and key.stat().st_gid == os.getgid()
    assert dict(report)[key] == f"created, readable by group {grp.getgrgid(os.getgid()).gr_name!r}"


def test_missing_group_is_reported(made):
    directory, _, report = made
    assert dict(report)[directory / "proxyd-key.pem"] == \
        "created, readable by its owner only: there is no group 'virt-console-proxy'"


def test_names_on_the_certificates(made):
    directory, qemu, _ = made
    here = pki.host_names()
    assert sans(directory / "proxyd-cert.pem") == ["console.example.com", "192.0.2.7"]
    assert sans(directory / "resolverd-cert.pem") == list(dict.fromkeys(["localhost", "127.0.0.1", "::1", *here]))
    assert sans(qemu / "server-cert.pem") == list(dict.fromkeys([*here, "localhost", "127.0.0.1", "::1"]))
    with pytest.raises(x509.ExtensionNotFound):
        cert(directory / "proxyd-client-cert.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_extensions_satisfy_qemu(made):
    directory, qemu, _ = made
    authority = cert(directory / "ca-cert.pem").extensions
    assert authority.get_extension_for_class(x509.BasicConstraints).value.ca
    assert authority.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    for path, usage in ((qemu / "server-cert.pem", ExtendedKeyUsageOID.SERVER_AUTH),
                        (directory / "proxyd-client-cert.pem", ExtendedKeyUsageOID.CLIENT_AUTH)):
        extensions = cert(path).extensions
        key_usage = extensions.get_extension_for_class(x509.KeyUsage)
        assert key_usage.critical and key_usage.value.digital_signature and key_usage.value.key_encipherment
        assert list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
        assert not extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_gnutls_accepts_qemu_and_proxy_certificates_for_their_purpose(made):
    directory, qemu, _ = made
    ca = directory / "ca-cert.pem"
    assert certtool_verify(ca, qemu / "server-cert.pem", f"--verify-purpose={SERVER_AUTH}",
                           "--verify-hostname=localhost").returncode == 0
    assert certtool_verify(ca, directory / "proxyd-client-cert.pem",
                           f"--verify-purpose={CLIENT_AUTH}").returncode == 0
    assert certtool_verify(ca, directory / "proxyd-client-cert.pem",
                           f"--verify-purpose={SERVER_AUTH}").returncode != 0
    assert certtool_verify(ca, qemu / "server-cert.pem", f"--verify-purpose={SERVER_AUTH}",
                           "--verify-hostname=elsewhere.example.com").returncode != 0


def handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext, server_name: str) -> None:
    """A real TLS handshake over loopback; raises what the client sees."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        failures = []

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_context.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                failures.append(exc)

        server = threading.Thread(target=serve)
        server.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                    client_context.wrap_socket(raw, server_hostname=server_name) as tls_conn:
                assert tls_conn.recv(2) == b"ok"
        finally:
            server.join(10)


def test_proxyd_client_reaches_resolverd_with_mutual_tls(made):
    directory, _, _ = made
    server = tls.server_context(directory / "resolverd-cert.pem", directory / "resolverd-key.pem",
                                directory / "ca-cert.pem")
    client = tls.client_context(directory / "ca-cert.pem", directory / "proxyd-client-cert.pem",
                                directory / "proxyd-client-key.pem")
    for name in ("localhost", "127.0.0.1"):
        handshake(server, client, name)


def test_resolverd_refuses_a_client_without_certificate(made):
    directory, _, _ = made
    server = tls.server_context(directory / "resolverd-cert.pem", directory / "resolverd-key.pem",
                                directory / "ca-cert.pem")
    anonymous = tls.client_context(directory / "ca-cert.pem")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(server, anonymous, "localhost")


def test_public_certificate_answers_to_the_proxy_names(made):
    directory, _, _ = made
    server = tls.server_context(directory / "proxyd-cert.pem", directory / "proxyd-key.pem", None)
    browser = tls.client_context(directory / "ca-cert.pem")
    handshake(server, browser, "console.example.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, browser, "other.example.com")


def test_second_run_keeps_every_file(made):
    directory, qemu, _ = made
    before = {p: p.read_bytes() for p in [*directory.iterdir(), *qemu.iterdir()]}
    report = pki.make(pki.plan(directory, proxy_names=["console.example.com"], qemu_dir=qemu))
    assert {status for _, status in report} == {"kept"}
    assert {p: p.read_bytes() for p in before} == before


def test_missing_leaf_is_issued_by_the_existing_ca(made):
    directory, _, _ = made
    (directory / "proxyd-cert.pem").unlink()
    (directory / "proxyd-key.pem").unlink()
    report = dict(pki.make(pki.plan(directory)))
    assert report[directory / "proxyd-cert.pem"] == "created"
    assert report[directory / "ca-cert.pem"] == "kept"
    assert certtool_verify(directory / "ca-cert.pem", directory / "proxyd-cert.pem").returncode == 0


def test_validity(tmp_path):
    pki.make(pki.plan(tmp_path, days=30))
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf_end = pki._not_after(cert(tmp_path / "proxyd-cert.pem"))
    ca_end = pki._not_after(cert(tmp_path / "ca-cert.pem"))
    assert datetime.timedelta(days=29) < leaf_end - now <= datetime.timedelta(days=30)
    assert datetime.timedelta(days=pki.CA_DAYS - 1) < ca_end - now


def test_leaf_never_outlives_its_ca(tmp_path):
    pki.make(pki.plan(tmp_path, days=pki.CA_DAYS + 1000))
    assert pki._not_after(cert(tmp_path / "resolverd-cert.pem")) <= pki._not_after(cert(tmp_path / "ca-cert.pem"))


@pytest.mark.parametrize("days", [0, -5])
def test_bad_days(tmp_path, days):
    with pytest.raises(pki.PkiError, match="--days"):
        pki.plan(tmp_path, days=days)


@pytest.mark.parametrize("name", ["", "bad name", "under_score.example", "-lead.example", "a..b", "x" * 64,
                                  "exa$mple.com", "256.1.1.1", "10.0.0"])
def test_bad_names(tmp_path, name):
    with pytest.raises(pki.PkiError, match="not a DNS name or IP address"):
        pki.plan(tmp_path, proxy_names=[name])
    with pytest.raises(pki.PkiError):
        pki.plan(tmp_path, qemu_dir=tmp_path / "qemu", qemu_names=[name])


def test_good_names(tmp_path):
    names = ["*.console.example.com", "fe80::1", "10.0.0.1", "Console-1.Example.COM."]
    assert pki.plan(tmp_path, resolver_names=names).leaves[0].names == tuple(names)


def test_qemu_names_need_a_qemu_dir(tmp_path):
    with pytest.raises(pki.PkiError, match="--qemu-dir"):
        pki.plan(tmp_path, qemu_names=["hv1.example.com"])


@pytest.mark.parametrize("present", ["proxyd-cert.pem", "proxyd-key.pem", "ca-cert.pem", "ca-key.pem"])
def test_half_a_pair_is_refused(made, present):
    directory, _, _ = made
    partner = present.replace("-cert", "-key") if "-cert" in present else present.replace("-key", "-cert")
    (directory / partner).unlink()
    with pytest.raises(pki.PkiError, match="exists but"):
        pki.make(pki.plan(directory))


def test_ca_certificate_that_is_not_a_ca(made):
    directory, _, _ = made
    shutil.copy(directory / "resolverd-cert.pem", directory / "ca-cert.pem")
    shutil.copy(directory / "resolverd-key.pem", directory / "ca-key.pem")
    with pytest.raises(pki.PkiError, match="is not a CA certificate"):
        pki.make(pki.plan(directory))


def test_ca_key_of_another_certificate(made):
    directory, _, _ = made
    shutil.copy(directory / "proxyd-key.pem", directory / "ca-key.pem")
    with pytest.raises(pki.PkiError, match="ca-key.pem is not the key of"):
        pki.make(pki.plan(directory))


def test_leaf_key_of_another_certificate(made):
    directory, _, _ = made
    shutil.copy(directory / "proxyd-key.pem", directory / "resolverd-key.pem")
    with pytest.raises(pki.PkiError, match="resolverd-key.pem is not the key of"):
        pki.make(pki.plan(directory))


def test_leaf_of_another_ca(made, tmp_path):
    directory, _, _ = made
    other = tmp_path / "other"
    pki.make(pki.plan(other))
    for name in ("proxyd-cert.pem", "proxyd-key.pem"):
        shutil.copy(other / name, directory / name)
    with pytest.raises(pki.PkiError, match="was not issued by the CA"):
        pki.make(pki.plan(directory))


def test_garbage_certificate(made):
    directory, _, _ = made
    (directory / "ca-cert.pem").write_text("not a certificate\n")
    with pytest.raises(pki.PkiError, match="is not a PEM certificate"):
        pki.make(pki.plan(directory))


def test_garbage_key(made):
    directory, _, _ = made
    (directory / "ca-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(pki.PkiError, match="is not an unencrypted PEM private key"):
        pki.make(pki.plan(directory))


def test_encrypted_key(made):
    directory, _, _ = made
    key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), password=None)
    (directory / "ca-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(pki.PkiError, match="is not an unencrypted PEM private key"):
        pki.make(pki.plan(directory))


def test_rsa_key_is_refused(made):
    directory, _, _ = made
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "ca-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(pki.PkiError, match="is not an EC private key"):
        pki.make(pki.plan(directory))


def test_unreadable_certificate(made):
    directory, _, _ = made
    (directory / "ca-cert.pem").unlink()
    (directory / "ca-cert.pem").mkdir()
    with pytest.raises(pki.PkiError, match="cannot read .*ca-cert.pem"):
        pki.make(pki.plan(directory))


def test_qemu_dir_with_another_ca(made, tmp_path):
    directory, qemu, _ = made
    other = tmp_path / "other"
    pki.make(pki.plan(other))
    shutil.copy(other / "ca-cert.pem", qemu / "ca-cert.pem")
    with pytest.raises(pki.PkiError, match="holds another CA"):
        pki.make(pki.plan(directory, qemu_dir=qemu))


def test_directory_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(pki.PkiError, match="cannot create .*file/pki/ca-key.pem"):
        pki.make(pki.plan(tmp_path / "file" / "pki"))


def test_run_prints_each_file(tmp_path, capsys):
    assert pki.run(flags("--dir", str(tmp_path), "--proxy-name", "console.example.com", "--days", "10")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'ca-cert.pem'}: created" and len(lines) == 8
    assert sans(tmp_path / "proxyd-cert.pem") == ["console.example.com"]


def test_run_reports_errors_on_stderr(tmp_path, capsys):
    assert pki.run(flags("--dir", str(tmp_path), "--resolver-name", "not valid")) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not a DNS name or IP address: 'not valid'" in captured.err
    assert not any(tmp_path.iterdir())


def test_flag_defaults():
    args = flags()
    assert args.dir == Path("/etc/pki/virt-console-proxy") and args.qemu_dir is None
    assert (args.proxy_name, args.resolver_name, args.qemu_name) == ([], [], [])
    assert args.qemu_group == "qemu" and args.days == pki.DEFAULT_DAYS


def test_flag_days_must_be_a_number():
    with pytest.raises(SystemExit):
        flags("--days", "many")
