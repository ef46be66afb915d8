"""ssl contexts for test clients of the lab's TLS endpoints."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Optional

from .pki import CertPair


def client_context(ca: Path, client: Optional[CertPair] = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """A TLS >= 1.2 client context trusting only ``ca``, presenting ``client``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(*client.as_tuple)
    return context


def server_context(ca: Path, server: CertPair, require_client: bool = True) -> ssl.SSLContext:
    """A TLS >= 1.2 server context presenting ``server``, verifying clients against ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(*server.as_tuple)
    context.load_verify_locations(cafile=str(ca))
    context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    return context
