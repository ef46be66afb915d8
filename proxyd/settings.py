"""proxyd's flags (also the keys of the ``[proxyd]`` section of its config file), checked up front.

Every TLS file is loaded here, so a missing or unreadable certificate stops
the start with its path instead of failing the first tenant's handshake.
"""

import argparse
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, TypeVar
from urllib.parse import urlsplit

from resolverd import config, tls
from resolverd.settings import Address, address

PROG = "proxyd"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:9180"

Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Settings:
    listen: Tuple[Address, ...]
    listen_insecure: bool
    resolver_uri: str
    connect_insecure: bool
    connect_server_name: Optional[str]
    workers: int
    admin_listen: Address
    allowed_origins: Tuple[str, ...]
    idle_timeout: float  # 0: never
    handshake_timeout: float
    drain_grace: float
    ping_interval: float  # 0: never
    resolver_connect_timeout: float
    resolver_read_timeout: float
    log_level: str


@dataclass(frozen=True)
class Contexts:
    """The TLS contexts of the three legs; None where the settings run that leg in clear text."""

    public: Optional[ssl.SSLContext]
    resolver: Optional[ssl.SSLContext]
    connect: Optional[ssl.SSLContext]


def _at_least(minimum: Number, kind: Callable[[str], Number]) -> Callable[[str], Number]:
    def convert(text: str) -> Number:
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text!r}")
        return value
    convert.__name__ = kind.__name__
    return convert


def origin(text: str) -> str:
    """``scheme://host[:port]`` as browsers send it in the Origin header, lower-cased."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username is not None:
        raise argparse.ArgumentTypeError(f"expected an origin like https://console.example.com, got {text!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def build_parser(exit_on_error: bool = True) -> argparse.ArgumentParser:
    parser = config.new_parser(
        PROG, "Public console proxy: tenants open SPICE, VNC and serial consoles through one TLS port with a "
              "token that resolverd resolves; proxyd reaches QEMU over mutually authenticated TLS.", exit_on_error)
    add = parser.add_argument
    add("--listen", type=address, action="append", metavar="ADDR:PORT",
        help="public address (TLS, websocket, HTTP CONNECT and SPICE on one port); repeat for several (required)")
    add("--tls-cert", type=Path, metavar="FILE", help="certificate of the public port (PEM)")
    add("--tls-key", type=Path, metavar="FILE", help="private key of --tls-cert (PEM)")
    add("--listen-insecure", action="store_true",
        help="serve the public port in clear text (refused otherwise when no --tls-cert is given)")
    add("--resolver-uri", metavar="URI",
        help="base URI of resolverd's API, e.g. https://resolver:8081/consoleresolver (required)")
    add("--resolver-cert", type=Path, metavar="FILE", help="client certificate presented to resolverd (PEM)")
    add("--resolver-key", type=Path, metavar="FILE", help="private key of --resolver-cert (PEM)")
    add("--resolver-ca", type=Path, metavar="FILE", help="CA that signed resolverd's certificate (PEM)")
    add("--connect-cert", type=Path, metavar="FILE", help="client certificate presented to QEMU (PEM)")
    add("--connect-key", type=Path, metavar="FILE", help="private key of --connect-cert (PEM)")
    add("--connect-ca", type=Path, metavar="FILE", help="CA that signed QEMU's certificates (PEM)")
    add("--connect-insecure", action="store_true",
        help="allow clear-text outbound connections: to consoles the resolver marks insecure and to an "
             "http:// resolver; without --connect-cert/--connect-key/--connect-ca only insecure consoles "
             "can then be reached")
    add("--connect-server-name", metavar="NAME",
        help="name QEMU's certificates must carry (default: the host or IP of each console's address)")
    add("--workers", type=_at_least(1, int), default=os.cpu_count() or 1, metavar="N",
        help="worker processes (default: one per CPU, %(default)s here)")
    add("--admin-listen", type=address, default=address(DEFAULT_ADMIN_LISTEN), metavar="ADDR:PORT",
        help=f"address of /metrics and /healthz (plain HTTP; default: {DEFAULT_ADMIN_LISTEN})")
    add("--allowed-origin", type=origin, action="append", metavar="ORIGIN",
        help="browser origin allowed to open websockets besides the proxy's own (same host as the Host "
             "header); repeatable")
    add("--idle-timeout", type=_at_least(0, float), default=1800.0, metavar="SECONDS",
        help="close a session after this long without console data either way; 0: never "
             "(default: %(default)s)")
    add("--handshake-timeout", type=_at_least(0.1, float), default=10.0, metavar="SECONDS",
        help="time a connection has to get from accept to an open console; the refusal's log line names what "
             "it was waiting for (default: %(default)s)")
    add("--drain-grace", type=_at_least(0, float), default=30.0, metavar="SECONDS",
        help="on SIGTERM, how long open sessions may go on before they are closed (default: %(default)s)")
    add("--ping-interval", type=_at_least(0, float), default=30.0, metavar="SECONDS",
        help="websocket ping to a client silent for this long; no pong within as long again closes the "
             "session; 0: never (default: %(default)s)")
    add("--resolver-connect-timeout", type=_at_least(0.1, float), default=2.0, metavar="SECONDS",
        help="time to connect to resolverd (default: %(default)s)")
    add("--resolver-read-timeout", type=_at_least(0.1, float), default=5.0, metavar="SECONDS",
        help="time resolverd has to answer a look-up (default: %(default)s)")
    return parser


def from_args(argv: Optional[Sequence[str]] = None, exit_on_error: bool = True) -> Tuple[Settings, Contexts]:
    """Parse and check the command line and the config file, and load every TLS file.

    Exits with a usage error naming what is wrong; with ``exit_on_error=False``
    (a reload) raises ConfigError instead.
    """
    parser = build_parser(exit_on_error)
    ns = config.parse(parser, argv)
    config.require(parser, ns, "listen", "resolver_uri")
    try:
        contexts = _contexts(parser, ns)
    except config.ConfigError as exc:
        parser.error(str(exc))
    settings = Settings(
        listen=tuple(dict.fromkeys(ns.listen)), listen_insecure=ns.listen_insecure,
        resolver_uri=ns.resolver_uri.rstrip("/"), connect_insecure=ns.connect_insecure,
        connect_server_name=ns.connect_server_name, workers=ns.workers, admin_listen=ns.admin_listen,
        allowed_origins=tuple(dict.fromkeys(ns.allowed_origin)), idle_timeout=ns.idle_timeout,
        handshake_timeout=ns.handshake_timeout, drain_grace=ns.drain_grace, ping_interval=ns.ping_interval,
        resolver_connect_timeout=ns.resolver_connect_timeout, resolver_read_timeout=ns.resolver_read_timeout,
        log_level=ns.log_level)
    return settings, contexts


def _contexts(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> Contexts:
    public = _public_context(parser, ns)
    scheme = urlsplit(ns.resolver_uri).scheme
    if scheme not in ("https", "http") or not urlsplit(ns.resolver_uri).hostname:
        parser.error(f"--resolver-uri: expected https://HOST:PORT/PATH, got {ns.resolver_uri!r}")
    resolver_files = (ns.resolver_cert, ns.resolver_key, ns.resolver_ca)
    if scheme == "http":
        if not ns.connect_insecure:
            parser.error("refusing a clear-text resolver (http://) without --connect-insecure")
        if any(f is not None for f in resolver_files):
            parser.error("--resolver-cert/--resolver-key/--resolver-ca need an https:// --resolver-uri")
        resolver = None
    else:
        _all_or_none(parser, ("--resolver-cert", "--resolver-key", "--resolver-ca"), resolver_files, required=True)
        resolver = tls.client_context(ns.resolver_ca, ns.resolver_cert, ns.resolver_key)
    connect_files = (ns.connect_cert, ns.connect_key, ns.connect_ca)
    _all_or_none(parser, ("--connect-cert", "--connect-key", "--connect-ca"), connect_files,
                 required=not ns.connect_insecure)
    connect = None
    if ns.connect_ca is not None:
        connect = tls.client_context(ns.connect_ca, ns.connect_cert, ns.connect_key)
    return Contexts(public=public, resolver=resolver, connect=connect)


def _public_context(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> Optional[ssl.SSLContext]:
    if ns.listen_insecure:
        if ns.tls_cert is not None or ns.tls_key is not None:
            parser.error("--listen-insecure contradicts --tls-cert/--tls-key")
        return None
    if ns.tls_cert is None or ns.tls_key is None:
        parser.error("refusing to serve without TLS: give --tls-cert and --tls-key, or --listen-insecure")
    return tls.server_context(ns.tls_cert, ns.tls_key, None)


def _all_or_none(parser: argparse.ArgumentParser, flags: Tuple[str, ...], values: Tuple[Optional[Path], ...],
                 required: bool) -> None:
    given = [v is not None for v in values]
    if any(given) and not all(given):
        parser.error(f"{', '.join(flags)} go together")
    if required and not any(given):
        parser.error(f"missing required setting(s): {', '.join(flags)} (give them as flags or in the config file)")
