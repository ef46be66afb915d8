"""resolverd's flags (also the keys of the ``[resolverd]`` section of its config file), checked up front."""

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, TypeVar

from resolverd import config, tls, vvfile

PROG = "resolverd"
CONFIG_ENV = "RESOLVERD_CONFIG"
DEFAULT_LISTEN = "127.0.0.1:8081"

Address = Tuple[str, int]
Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Settings:
    connect: Tuple[str, ...]
    listen: Address
    tls_cert: Optional[Path]
    tls_key: Optional[Path]
    tls_ca: Optional[Path]
    listen_insecure: bool
    console_listen: Optional[Address]
    console_advertise: Optional[str]
    resync_interval: float
    threads: int
    log_level: str
    proxy_public: Optional[Address] = None
    proxy_ca: Optional[Path] = None
    proxy_cert: Optional[Path] = None

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None


def address(text: str) -> Address:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as a (host, port) pair; an empty host means every address."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"write an IPv6 address in brackets: [{host}]:{port_text}")
    return host, int(port_text)


def _positive(kind: Callable[[str], Number]) -> Callable[[str], Number]:
    def convert(text: str) -> Number:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
        return value
    convert.__name__ = kind.__name__
    return convert


def build_parser(exit_on_error: bool = True) -> argparse.ArgumentParser:
    parser = config.new_parser(
        PROG, "Resolve console tokens for proxyd from libvirt domain metadata and secrets, over HTTPS "
              "with a mandatory client certificate.", exit_on_error)
    parser.add_argument("--connect", action="append", metavar="URI",
                        help="libvirt URI to watch; repeat for several hypervisors (required)")
    parser.add_argument("--listen", type=address, default=address(DEFAULT_LISTEN), metavar="ADDR:PORT",
                        help=f"address of the HTTPS API (default: {DEFAULT_LISTEN})")
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="private key of --tls-cert (PEM)")
    parser.add_argument("--tls-ca", type=Path, metavar="FILE",
                        help="CA whose client certificates are admitted; clients without one fail the handshake")
    parser.add_argument("--listen-insecure", action="store_true",
                        help="serve the API over plain HTTP without client certificates (refused otherwise "
                             "when no --tls-* is given)")
    parser.add_argument("--console-listen", type=address, metavar="ADDR:PORT",
                        help="address of the TLS console bridge that serves pty serial consoles "
                             "(same certificate and client CA as the API; off when not given)")
    parser.add_argument("--console-advertise", metavar="HOST:PORT",
                        help="bridge address the API hands to the proxy (default: --console-listen, "
                             "with this host's FQDN for a wildcard address)")
    parser.add_argument("--resync-interval", type=_positive(float), default=60.0, metavar="SECONDS",
                        help="full re-read of every connection as a safety net besides libvirt's events "
                             "(default: %(default)s)")
    parser.add_argument("--proxy-public", type=address, metavar="HOST:PORT",
                        help="where tenants reach proxyd's public port: with --proxy-ca and --proxy-cert, "
                             "GET .../token/TOKEN?format=vv answers a remote-viewer file for a SPICE token")
    parser.add_argument("--proxy-ca", type=Path, metavar="FILE",
                        help="CA of proxyd's public certificate (PEM), written into remote-viewer files")
    parser.add_argument("--proxy-cert", type=Path, metavar="FILE",
                        help="proxyd's public certificate (PEM), whose subject remote-viewer files make it check")
    parser.add_argument("--threads", type=_positive(int), default=16, metavar="N",
                        help="request threads of the single gunicorn worker (default: %(default)s)")
    return parser


def from_args(argv: Optional[Sequence[str]] = None, exit_on_error: bool = True) -> Settings:
    """Parse and check the command line and the config file; exits with a usage error naming what is wrong
    (with ``exit_on_error=False``, a reload, raises ConfigError instead)."""
    parser = build_parser(exit_on_error)
    return _checked(parser, config.parse(parser, argv))


def from_config_file(path: Optional[str] = None) -> Settings:
    """Settings for ``create_app()`` run by an operator's own gunicorn: the file named by
    ``path``, else by $RESOLVERD_CONFIG, else the default config file."""
    parser = build_parser()
    chosen = path or os.environ.get(CONFIG_ENV)
    return _checked(parser, config.parse(parser, ["--config", chosen] if chosen else []))


def _checked(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> Settings:
    config.require(parser, ns, "connect")
    tls_files = (ns.tls_cert, ns.tls_key, ns.tls_ca)
    if any(f is not None for f in tls_files) and None in tls_files:
        parser.error("--tls-cert, --tls-key and --tls-ca go together")
    if ns.tls_cert is None and not ns.listen_insecure:
        parser.error("refusing to serve without TLS: give --tls-cert, --tls-key and --tls-ca, "
                     "or --listen-insecure")
    if ns.tls_cert is not None and ns.listen_insecure:
        parser.error("--listen-insecure contradicts --tls-cert/--tls-key/--tls-ca")
    if ns.console_listen is not None and ns.tls_cert is None:
        parser.error("--console-listen needs --tls-cert, --tls-key and --tls-ca")
    if ns.console_advertise is not None:
        try:
            address(ns.console_advertise)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"--console-advertise: {exc}")
    if ns.tls_cert is not None:
        try:
            tls.server_context(ns.tls_cert, ns.tls_key, ns.tls_ca)
        except config.ConfigError as exc:
            parser.error(str(exc))
    proxy = (ns.proxy_public, ns.proxy_ca, ns.proxy_cert)
    if any(value is not None for value in proxy) and None in proxy:
        parser.error("--proxy-public, --proxy-ca and --proxy-cert go together")
    if ns.proxy_ca is not None:
        try:
            vvfile.proxy_identity(ns.proxy_ca, ns.proxy_cert)
        except OSError as exc:
            parser.error(f"cannot read {exc.filename}: {exc.strerror}")
        except ValueError as exc:
            parser.error(f"--proxy-ca/--proxy-cert: not a PEM certificate: {exc}")
    return Settings(
        connect=tuple(dict.fromkeys(ns.connect)), listen=ns.listen, tls_cert=ns.tls_cert, tls_key=ns.tls_key,
        tls_ca=ns.tls_ca, listen_insecure=ns.listen_insecure, console_listen=ns.console_listen,
        console_advertise=ns.console_advertise, resync_interval=ns.resync_interval, threads=ns.threads,
        log_level=ns.log_level, proxy_public=ns.proxy_public, proxy_ca=ns.proxy_ca, proxy_cert=ns.proxy_cert)
