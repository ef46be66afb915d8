"""A throwaway PKI for one test run, made with `cryptography`.

Two CAs: the run's CA (trusted by QEMU, resolverd and proxyd) and a foreign
CA that nobody trusts, for negative tests.  Every leaf certificate is an
ECDSA P-256 key (instant to generate) signed by its CA, with key usage and
extended key usage set the way QEMU's GnuTLS sanity checks want them.

QEMU reads one directory per TLS user (SPICE, VNC, chardev) laid out as
``ca-cert.pem``, ``server-cert.pem``, ``server-key.pem`` plus
``client-cert.pem``/``client-key.pem`` for its own outgoing TLS; the lab
points all three qemu.conf settings at ``Pki.qemu_dir``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Names every server certificate of the lab answers to.
LOCAL_SANS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")

_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key on disk (PEM)."""

    cert: Path
    key: Path

    @property
    def as_tuple(self) -> tuple[str, str]:
        """``(certfile, keyfile)`` as ``ssl.SSLContext.load_cert_chain`` takes them."""
        return str(self.cert), str(self.key)

    @property
    def der(self) -> bytes:
        """The certificate in DER, as ``getpeercert(binary_form=True)`` returns it."""
        return ssl.PEM_cert_to_DER_cert(self.cert.read_text())

    def copy_to(self, cert: Path, key: Path) -> None:
        """Put the pair where a daemon reads it, as an operator renewing a certificate does."""
        shutil.copyfile(self.cert, cert)
        shutil.copyfile(self.key, key)


@dataclass
class _Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "virt-console-proxy test lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _make_authority(directory: Path, common_name: str) -> _Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _ONE_DAY)
        .not_valid_after(_now() + 30 * _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / "ca-cert.pem"
    _write_cert(cert_path, cert)
    _write_key(directory / "ca-key.pem", key)
    return _Authority(cert=cert, key=key, cert_path=cert_path)


def _issue(
    authority: _Authority,
    common_name: str,
    *,
    server: bool,
    client: bool,
    sans: Sequence[str],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    cert_path: Path,
    key_path: Path,
) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # QEMU 7.2 insists on key_encipherment whenever key usage is critical,
        # even for an EC key, so it is set although ECDHE never uses it.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(_san(sans), critical=False)
    cert = builder.sign(authority.key, hashes.SHA256())
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return CertPair(cert=cert_path, key=key_path)


class Pki:
    """The run's certificates, all under one directory.

    Attributes (all ``pathlib.Path`` or :class:`CertPair`):

    - ``root``: the directory holding everything.
    - ``ca_cert``: the run's CA certificate (trust anchor for every lab peer).
    - ``qemu_dir``: QEMU's x509 directory (ca-cert.pem, server-cert.pem,
      server-key.pem, client-cert.pem, client-key.pem).
    - ``qemu_server``: QEMU's server pair (SAN 127.0.0.1, ::1, localhost).
    - ``resolverd_server``, ``proxyd_server``: the daemons' server pairs
      (same SANs).
    - ``proxyd_qemu_client``: proxyd's client pair towards QEMU (SPICE, VNC
      VeNCrypt x509, TLS chardev).
    - ``proxyd_resolverd_client``: proxyd's client pair towards resolverd.
    - ``foreign_ca_cert``, ``foreign_client``: a CA nobody trusts and a client
      pair it signed, for negative tests.

    :meth:`issue` signs more certificates at test time (expired ones, other
    names, ...).
    """

    def __init__(self, root: Path, group: Optional[int] = None) -> None:
        self.root = root
        self.group = group
        root.mkdir(parents=True, exist_ok=True)
        self._ca = _make_authority(root / "ca", "vcp-lab CA")
        self._foreign = _make_authority(root / "foreign-ca", "vcp-lab foreign CA")
        self.ca_cert: Path = self._ca.cert_path
        self.foreign_ca_cert: Path = self._foreign.cert_path

        self.qemu_dir: Path = root / "qemu"
        self.qemu_dir.mkdir()
        shutil.copyfile(self.ca_cert, self.qemu_dir / "ca-cert.pem")
        self.qemu_server = self.issue(
            "qemu",
            server=True,
            cert_path=self.qemu_dir / "server-cert.pem",
            key_path=self.qemu_dir / "server-key.pem",
        )
        self.qemu_client = self.issue(
            "qemu-client",
            server=False,
            client=True,
            sans=(),
            cert_path=self.qemu_dir / "client-cert.pem",
            key_path=self.qemu_dir / "client-key.pem",
        )
        self.resolverd_server = self.issue("resolverd", server=True)
        self.proxyd_server = self.issue("proxyd", server=True)
        self.proxyd_qemu_client = self.issue(
            "proxyd-to-qemu", server=False, client=True, sans=()
        )
        self.proxyd_resolverd_client = self.issue(
            "proxyd-to-resolverd", server=False, client=True, sans=()
        )
        self.foreign_client = self.issue(
            "foreign-client", server=False, client=True, sans=(), foreign=True
        )
        self._share()

    def issue(
        self,
        common_name: str,
        *,
        server: bool = True,
        client: bool = False,
        sans: Sequence[str] = LOCAL_SANS,
        foreign: bool = False,
        valid_from: Optional[datetime.datetime] = None,
        valid_until: Optional[datetime.datetime] = None,
        cert_path: Optional[Path] = None,
        key_path: Optional[Path] = None,
    ) -> CertPair:
        """Sign a new leaf certificate with the run's CA (or the foreign CA).

        Files land in ``root/<common_name>/{cert,key}.pem`` unless paths are
        given.  Pass ``valid_until`` in the past for an expired certificate.
        """
        authority = self._foreign if foreign else self._ca
        directory = self.root / common_name
        pair = _issue(
            authority,
            common_name,
            server=server,
            client=client,
            sans=sans,
            not_before=valid_from or (_now() - _ONE_DAY),
            not_after=valid_until or (_now() + 30 * _ONE_DAY),
            cert_path=cert_path or directory / "cert.pem",
            key_path=key_path or directory / "key.pem",
        )
        self._share()
        return pair

    @contextmanager
    def qemu_identity(self, ca_cert: Path, server: CertPair) -> Iterator[None]:
        """Hand QEMU another CA and server pair while the block runs.

        QEMU reads its x509 directory when a guest starts, so guests started
        inside the block keep the substitute for life; the files are put back
        afterwards.  ``with pki.qemu_identity(pki.foreign_ca_cert,
        pki.issue("qemu-foreign", foreign=True)):`` makes a guest that proxyd
        must refuse to trust and that refuses proxyd's client certificate.
        """
        names = ("ca-cert.pem", "server-cert.pem", "server-key.pem")
        saved = {name: (self.qemu_dir / name).read_bytes() for name in names}
        try:
            for name, source in zip(names, (ca_cert, server.cert, server.key)):
                (self.qemu_dir / name).write_bytes(Path(source).read_bytes())
            yield
        finally:
            for name, content in saved.items():
                (self.qemu_dir / name).write_bytes(content)

    def _share(self) -> None:
        """Let the lab user's group read everything (QEMU runs as that user).

        Directories become 0750 and files 0640, owned by whoever runs the
        tests and group ``self.group``; without a group they stay private.
        """
        for dirpath, _dirnames, filenames in os.walk(self.root):
            paths = [dirpath] + [os.path.join(dirpath, f) for f in filenames]
            for path in paths:
                is_dir = path == dirpath
                if self.group is not None:
                    os.chown(path, -1, self.group)
                    os.chmod(path, 0o750 if is_dir else 0o640)
                else:
                    os.chmod(path, 0o700 if is_dir else 0o600)
