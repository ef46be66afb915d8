"""``resolveradm vv DOMAIN``: a remote-viewer file (.vv) that opens DOMAIN's SPICE console through proxyd.

::

    [virt-viewer]
    type=spice
    host=PROXY_HOST
    tls-port=PROXY_PORT
    password=TOKEN
    ca=-----BEGIN CERTIFICATE-----\\n...   (the CA of proxyd's certificate, newlines written as \\n)
    host-subject=CN=...,O=...              (proxyd's certificate: spice-gtk then checks it, not the host name)
    secure-channels=all
    delete-this-file=1
    title=DOMAIN
    proxy=http://console:TOKEN@PROXY_HOST:PROXY_PORT   (with --connect-proxy only)

Without --connect-proxy remote-viewer speaks SPICE over TLS straight to
proxyd's public port, the token being the SPICE password; with it,
remote-viewer sends one HTTP CONNECT per channel to the same port, the token
as the proxy password, then TLS and SPICE inside (for networks that only let
an HTTP proxy out).  The file holds the token: it is written readable by its
owner only, and remote-viewer deletes it once read.
"""

import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.x509.oid import NameOID

from resolveradm.access import ConsoleAccess
from resolveradm.errors import AdmError, Inconsistent, NoConsoles
from resolverd.settings import Address

SECTION = "virt-viewer"
PROXY_USER = "console"

# spice-common's host-subject parser takes OpenSSL's short names.
_SHORT_NAMES = {
    NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST", NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.DOMAIN_COMPONENT: "DC",
}


def host_subject(certificate: x509.Certificate) -> str:
    """The certificate's subject as spice-gtk's host-subject wants it: ``K=V,K=V`` in the certificate's order."""
    parts = []
    for attribute in certificate.subject:
        name = _SHORT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
        value = str(attribute.value).replace("\\", "\\\\").replace(",", "\\,")
        parts.append(f"{name}={value}")
    return ",".join(parts)


def render(title: str, proxy: Address, token: str, ca_pem: str, subject: str, connect_proxy: bool) -> str:
    """The .vv file's text."""
    host, port = proxy
    if any(char in token for char in "@:/?%\n") or not token.isprintable():
        raise AdmError(f"the token of {title} cannot go into a .vv file (it holds @ : / ? % or control "
                       "characters); 'rotate' gives it a new one")
    entries: List[Tuple[str, str]] = [
        ("type", "spice"), ("host", host), ("tls-port", str(port)), ("password", token),
        ("ca", ca_pem.strip().replace("\n", "\\n")), ("host-subject", subject), ("secure-channels", "all"),
        ("delete-this-file", "1"), ("title", title)]
    if connect_proxy:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        entries.append(("proxy", f"http://{PROXY_USER}:{token}@{netloc}"))
    return "".join(f"{line}\n" for line in [f"[{SECTION}]"] + [f"{key}={value}" for key, value in entries])


def spice_token(title: str, consoles: Sequence[ConsoleAccess], index: int) -> str:
    for access in consoles:
        if access.console.type == "spice" and access.console.index == index:
            if access.token is None:
                raise Inconsistent(f"the secret of {title}'s SPICE console {index} no longer exists; "
                               "'disable' then 'enable' makes a new one")
            return access.token
    raise NoConsoles(f"{title} has no SPICE console {index} with console access enabled ('enable' first)")


def read_files(ca: Path, certificate: Path) -> Tuple[str, str]:
    """(the CA's PEM, proxyd's certificate's subject)."""
    try:
        ca_pem = ca.read_text()
        cert = x509.load_pem_x509_certificate(certificate.read_bytes())
        x509.load_pem_x509_certificate(ca_pem.encode())
    except OSError as exc:
        raise AdmError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise AdmError(f"not a PEM certificate ({ca} or {certificate}): {exc}") from None
    return ca_pem, host_subject(cert)


def write(text: str, output: Optional[Path]) -> None:
    """To ``output`` (created readable by its owner only), or stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)
    except OSError as exc:
        raise AdmError(f"cannot write {output}: {exc.strerror}") from None
