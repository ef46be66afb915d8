"""remote-viewer files (.vv) that open a SPICE console through proxyd; resolveradm vv and resolverd's API write them.

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
    proxy=http://console:TOKEN@PROXY_HOST:PROXY_PORT   (CONNECT mode only)

Without CONNECT mode remote-viewer speaks SPICE over TLS straight to
proxyd's public port, the token being the SPICE password; in CONNECT mode
it sends one HTTP CONNECT per channel to the same port, the token as the
proxy password, then TLS and SPICE inside (for networks that only let an
HTTP proxy out).  The file holds the token; remote-viewer deletes it once
read.
"""

from pathlib import Path
from typing import List, Tuple

from cryptography import x509
from cryptography.x509.oid import NameOID

SECTION = "virt-viewer"
MEDIA_TYPE = "application/x-virt-viewer"
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


def render(title: str, proxy: Tuple[str, int], token: str, ca_pem: str, subject: str, connect_proxy: bool) -> str:
    """The file's text; ValueError for a token a .vv file cannot carry."""
    host, port = proxy
    if any(char in token for char in "@:/?%") or not token.isprintable():
        raise ValueError("the token cannot go into a .vv file (it holds @ : / ? % or control characters)")
    entries: List[Tuple[str, str]] = [
        ("type", "spice"), ("host", host), ("tls-port", str(port)), ("password", token),
        ("ca", ca_pem.strip().replace("\n", "\\n")), ("host-subject", subject), ("secure-channels", "all"),
        ("delete-this-file", "1"), ("title", title)]
    if connect_proxy:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        entries.append(("proxy", f"http://{PROXY_USER}:{token}@{netloc}"))
    return "".join(f"{line}\n" for line in [f"[{SECTION}]"] + [f"{key}={value}" for key, value in entries])


def proxy_identity(ca: Path, certificate: Path) -> Tuple[str, str]:
    """(the PEM of proxyd's CA, the subject of proxyd's public certificate); OSError or ValueError."""
    ca_pem = ca.read_text()
    x509.load_pem_x509_certificate(ca_pem.encode())
    return ca_pem, host_subject(x509.load_pem_x509_certificate(certificate.read_bytes()))
