"""TLS contexts for every listener and outbound connection of the three programs.

TLS 1.2 is the floor everywhere.  Files are read up front so that a missing or
unreadable certificate, key or CA is reported with its path at start-up,
not as an opaque handshake failure later.
"""

import ssl
from pathlib import Path
from typing import Optional, Union

from resolverd.config import ConfigError

PathLike = Union[str, Path]


def server_context(cert: PathLike, key: PathLike, client_ca: Optional[PathLike]) -> ssl.SSLContext:
    """A listener's context; with ``client_ca`` a client certificate signed by it is mandatory."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    # No session tickets: their key would live as long as the process (forward secrecy), consoles are
    # long-lived so resuming saves little, and a TLS 1.3 ticket arriving after the handshake races the
    # first request of clients that read and write from two threads.
    context.num_tickets = 0
    _load_chain(context, cert, key)
    if client_ca is not None:
        _load_ca(context, client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class SwappableContext:
    """A listener's context that a reload may replace: new handshakes get the current one, open
    connections keep the one they were made with."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context

    @property
    def current(self) -> ssl.SSLContext:
        return self._context

    def replace(self, context: ssl.SSLContext) -> None:
        self._context = context


def client_context(ca: PathLike, cert: Optional[PathLike] = None, key: Optional[PathLike] = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """An outbound context that verifies the peer against ``ca`` and offers ``cert`` if given.

    ``check_hostname=False`` still verifies the chain; the caller then checks
    the peer's name itself (a fixed subject, say).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(context)
    _load_ca(context, ca)
    context.check_hostname = check_hostname
    if cert is not None:
        if key is None:
            raise ConfigError(f"a key is needed with the certificate {cert}")
        _load_chain(context, cert, key)
    return context


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def _readable(path: PathLike, what: str) -> str:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    return str(path)


def _load_chain(context: ssl.SSLContext, cert: PathLike, key: PathLike) -> None:
    cert_path, key_path = _readable(cert, "certificate"), _readable(key, "private key")
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot load certificate {cert} with key {key}: {exc.reason or exc}") from exc


def _load_ca(context: ssl.SSLContext, ca: PathLike) -> None:
    ca_path = _readable(ca, "CA certificate")
    try:
        context.load_verify_locations(cafile=ca_path)
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot load CA certificate {ca}: {exc.reason or exc}") from exc
