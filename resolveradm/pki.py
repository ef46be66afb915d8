"""``resolveradm pki``: the CA and the certificates a deployment needs, where the sample configs look.

In ``--dir`` (default /etc/pki/virt-console-proxy):

- ``ca-cert.pem``, ``ca-key.pem``: the deployment's CA (the key is root's
  alone; move it offline once every certificate is made);
- ``resolverd-cert.pem``, ``resolverd-key.pem``: resolverd's API and console
  bridge;
- ``proxyd-cert.pem``, ``proxyd-key.pem``: proxyd's public port (browsers want
  a publicly trusted certificate here instead);
- ``proxyd-client-cert.pem``, ``proxyd-client-key.pem``: what proxyd shows to
  resolverd and to QEMU.

With ``--qemu-dir`` (libvirt reads /etc/pki/qemu by default), QEMU's
``ca-cert.pem``, ``server-cert.pem`` and ``server-key.pem`` for SPICE, VNC
and TLS chardevs, so that QEMU and proxyd trust each other.

Nothing that exists is overwritten: a second run adds what is missing, signed
by the CA already there.  To renew a certificate, delete it and its key.
Keys are ECDSA P-256; leaf certificates mark their key usage critical with
keyEncipherment, which QEMU's GnuTLS checks insist on even for EC keys.
"""

import argparse
import datetime
import grp
import ipaddress
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DIR = Path("/etc/pki/virt-console-proxy")
PROXY_GROUP = "virt-console-proxy"
RESOLVER_GROUP = "virt-console-resolver"
DEFAULT_QEMU_GROUP = "qemu"
CA_DAYS = 3650
DEFAULT_DAYS = 825
ORGANIZATION = "virt-console-proxy"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")

_DNS_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$",
                       re.IGNORECASE)
_CLOCK_SKEW = datetime.timedelta(hours=1)


class PkiError(Exception):
    """A file or setting that stops the PKI from being made; the message names it."""


@dataclass(frozen=True)
class Leaf:
    """One certificate to issue: where it goes, what it is for and who may read its key."""

    common_name: str
    cert: Path
    key: Path
    server: bool
    names: Tuple[str, ...]
    key_group: Optional[str]


@dataclass(frozen=True)
class Plan:
    ca_cert: Path
    ca_key: Path
    leaves: Tuple[Leaf, ...]
    qemu_ca_copy: Optional[Path]
    days: int


def host_names() -> Tuple[str, ...]:
    """This host's names as certificates should carry them: FQDN and short name, once each."""
    return tuple(dict.fromkeys(n for n in (socket.getfqdn(), socket.gethostname()) if n))


def plan(directory: Path = DEFAULT_DIR, proxy_names: Sequence[str] = (), resolver_names: Sequence[str] = (),
         qemu_dir: Optional[Path] = None, qemu_names: Sequence[str] = (),
         qemu_group: Optional[str] = DEFAULT_QEMU_GROUP, days: int = DEFAULT_DAYS) -> Plan:
    """What to make; empty name lists mean this host's names (plus loopback for resolverd and QEMU)."""
    if days <= 0:
        raise PkiError(f"--days must be greater than 0, got {days}")
    here = host_names()
    proxy = _checked_names(proxy_names or here)
    resolver = _checked_names(resolver_names or (*LOCAL_NAMES, *here))
    leaves = [
        Leaf("virt-console-resolverd", directory / "resolverd-cert.pem", directory / "resolverd-key.pem",
             server=True, names=resolver, key_group=RESOLVER_GROUP),
        Leaf("virt-console-proxyd", directory / "proxyd-cert.pem", directory / "proxyd-key.pem",
             server=True, names=proxy, key_group=PROXY_GROUP),
        Leaf("virt-console-proxyd client", directory / "proxyd-client-cert.pem",
             directory / "proxyd-client-key.pem", server=False, names=(), key_group=PROXY_GROUP),
    ]
    if qemu_dir is not None:
        qemu = _checked_names(qemu_names or (*here, *LOCAL_NAMES))
        leaves.append(Leaf(f"QEMU on {here[0] if here else 'localhost'}", qemu_dir / "server-cert.pem",
                           qemu_dir / "server-key.pem", server=True, names=qemu, key_group=qemu_group))
    elif qemu_names:
        raise PkiError("--qemu-name needs --qemu-dir")
    return Plan(ca_cert=directory / "ca-cert.pem", ca_key=directory / "ca-key.pem", leaves=tuple(leaves),
                qemu_ca_copy=qemu_dir / "ca-cert.pem" if qemu_dir is not None else None, days=days)


def make(pki: Plan) -> List[Tuple[Path, str]]:
    """Create what is missing; returns (path, what happened to it) for every file of the plan."""
    report: List[Tuple[Path, str]] = []
    ca_cert, ca_key = _authority(pki, report)
    for leaf in pki.leaves:
        if _present(leaf.cert, leaf.key):
            _check_leaf(leaf, ca_cert)
            report += [(leaf.cert, "kept"), (leaf.key, "kept")]
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _leaf_certificate(leaf, key, ca_cert, ca_key, pki.days)
        key_status = _write_key(leaf.key, key, leaf.key_group)
        _write(leaf.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        report += [(leaf.cert, "created"), (leaf.key, key_status)]
    if pki.qemu_ca_copy is not None:
        report.append(_copy_ca(ca_cert, pki.qemu_ca_copy))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``resolveradm pki``."""
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, metavar="DIR",
                        help="where the CA and the daemons' certificates go (default: %(default)s)")
    parser.add_argument("--proxy-name", action="append", default=[], metavar="NAME",
                        help="DNS name or IP address tenants use to reach proxyd; repeatable "
                             "(default: this host's names)")
    parser.add_argument("--resolver-name", action="append", default=[], metavar="NAME",
                        help="DNS name or IP address proxyd uses to reach resolverd; repeatable "
                             "(default: localhost, 127.0.0.1, ::1 and this host's names)")
    parser.add_argument("--qemu-dir", type=Path, metavar="DIR",
                        help="also make QEMU's ca-cert.pem, server-cert.pem and server-key.pem here "
                             "(libvirt's default_tls_x509_cert_dir, /etc/pki/qemu by default)")
    parser.add_argument("--qemu-name", action="append", default=[], metavar="NAME",
                        help="DNS name or IP address on QEMU's certificate; repeatable "
                             "(default: this host's names, localhost, 127.0.0.1 and ::1)")
    parser.add_argument("--qemu-group", default=DEFAULT_QEMU_GROUP, metavar="GROUP",
                        help="group that may read QEMU's key, the one QEMU runs as (default: %(default)s)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, metavar="N",
                        help="validity of the certificates made now (default: %(default)s; the CA: "
                             f"{CA_DAYS})")


def run(args: argparse.Namespace) -> int:
    """``resolveradm pki`` with the flags of ``add_arguments``; prints what it did, 1 on error."""
    try:
        made = make(plan(args.dir, args.proxy_name, args.resolver_name, args.qemu_dir, args.qemu_name,
                         args.qemu_group, args.days))
    except PkiError as exc:
        print(f"resolveradm pki: {exc}", file=sys.stderr)
        return 1
    for path, what in made:
        print(f"{path}: {what}")
    return 0


def _checked_names(names: Iterable[str]) -> Tuple[str, ...]:
    checked = []
    for name in names:
        name = name.strip()
        try:
            ipaddress.ip_address(name)
        except ValueError:
            # An all-numeric name is a mistyped IP address, never a host name.
            if not _DNS_NAME.match(name) or len(name) > 253 or name.replace(".", "").isdigit():
                raise PkiError(f"not a DNS name or IP address: {name!r}") from None
        checked.append(name)
    return tuple(dict.fromkeys(checked))


def _present(cert: Path, key: Path) -> bool:
    if cert.exists() != key.exists():
        there, missing = (cert, key) if cert.exists() else (key, cert)
        raise PkiError(f"{there} exists but {missing} does not: delete it or restore its pair")
    return cert.exists()


def _authority(pki: Plan, report: List[Tuple[Path, str]]) -> Tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if _present(pki.ca_cert, pki.ca_key):
        cert = _load_cert(pki.ca_cert)
        key = _load_key(pki.ca_key)
        constraints = _extension(cert, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            raise PkiError(f"{pki.ca_cert} is not a CA certificate")
        if not _same_key(cert, key):
            raise PkiError(f"{pki.ca_key} is not the key of {pki.ca_cert}")
        report += [(pki.ca_cert, "kept"), (pki.ca_key, "kept")]
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_certificate(key)
    _write_key(pki.ca_key, key, None)
    _write(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    report += [(pki.ca_cert, "created"), (pki.ca_key, "created")]
    return cert, key


def _check_leaf(leaf: Leaf, ca_cert: x509.Certificate) -> None:
    cert = _load_cert(leaf.cert)
    if not _same_key(cert, _load_key(leaf.key)):
        raise PkiError(f"{leaf.key} is not the key of {leaf.cert}")
    if not _issued_by(cert, ca_cert):
        raise PkiError(f"{leaf.cert} was not issued by the CA of this directory")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _subject(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, signing: bool, certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signing, content_commitment=False, key_encipherment=signing,
                         data_encipherment=False, key_agreement=False, key_cert_sign=certificates,
                         crl_sign=certificates, encipher_only=False, decipher_only=False)


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = _subject(f"{ORGANIZATION} CA {socket.gethostname()}")
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _CLOCK_SKEW)
            .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signing=False, certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def _leaf_certificate(leaf: Leaf, key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                      ca_key: ec.EllipticCurvePrivateKey, days: int) -> x509.Certificate:
    usage = ExtendedKeyUsageOID.SERVER_AUTH if leaf.server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(_subject(leaf.common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(_now() - _CLOCK_SKEW)
               .not_valid_after(min(_now() + datetime.timedelta(days=days), _not_after(ca_cert)))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(signing=True, certificates=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if leaf.names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in leaf.names]),
                                        critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    # not_valid_after_utc appeared in cryptography 42; RHEL 9 ships 36.
    utc = getattr(cert, "not_valid_after_utc", None)
    return utc if utc is not None else cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    authority = ca_cert.public_key()
    if cert.issuer != ca_cert.subject or not isinstance(authority, ec.EllipticCurvePublicKey) \
            or cert.signature_hash_algorithm is None:
        return False
    try:
        authority.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return True


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _extension(cert: x509.Certificate, kind: type) -> Optional[x509.ExtensionType]:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return (cert.public_key().public_bytes(serialization.Encoding.DER, spki)
            == key.public_key().public_bytes(serialization.Encoding.DER, spki))


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise PkiError(f"{path} is not a PEM certificate") from exc


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path} is not an EC private key")
    return key


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, group: Optional[str]) -> str:
    """Write a key readable by its owner and ``group``; says who can read it."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write(path, pem, 0o600)
    if group is None:
        return "created, readable by its owner only"
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        # Before the package (which creates the service users) is installed, say.
        return f"created, readable by its owner only: there is no group {group!r}"
    try:
        os.chown(path, -1, gid)
        os.chmod(path, 0o640)
    except OSError as exc:
        raise PkiError(f"cannot let group {group!r} read {path}: {exc.strerror}") from exc
    return f"created, readable by group {group!r}"


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start, never replacing a file (O_EXCL)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise PkiError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)


def _copy_ca(ca_cert: x509.Certificate, path: Path) -> Tuple[Path, str]:
    if path.exists():
        if _load_cert(path) != ca_cert:
            raise PkiError(f"{path} holds another CA: QEMU would not trust proxyd's certificate")
        return path, "kept"
    _write(path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return path, "created"
