"""resolveradm's command line: the flags, the subcommands, and one line on stderr for every failure."""

import argparse
import sys
from pathlib import Path
from typing import Callable, NoReturn, Optional, Sequence

import libvirt

from resolverd import config, logs
from resolverd.metadata import CONSOLE_TYPES, valid_host
from resolveradm import access, domains, errors, pki, report, vv
from resolveradm.errors import AdmError
from resolveradm.expiry import expiry_argument
from resolveradm.urls import proxy_url_argument
from resolverd.settings import address

PROG = "resolveradm"
DEFAULT_URI = "qemu:///system"

_DESCRIPTION = (
    "Give a libvirt domain's SPICE, VNC and serial consoles to virt-console-proxy, and take them back: one "
    "libvirt secret per console holds the token a tenant presents, and the domain's lcp metadata "
    "(virsh metadata DOMAIN http://libvirt.org/schemas/console-proxy/1.0) names the secrets. "
    "DOMAIN is a name, UUID or numeric id.")


def build_parser() -> argparse.ArgumentParser:
    parser = config.new_parser(PROG, _DESCRIPTION)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (errors.epilog() + "\n\nconfig file keys (section [resolveradm]): connect, proxy-url, json, "
                     "log-level")
    _one_line_errors(parser)
    _connection_flags(parser, DEFAULT_URI, None, False)
    # The same flags after the subcommand; SUPPRESS keeps them from hiding the values given before it.
    shared = argparse.ArgumentParser(add_help=False)
    _connection_flags(shared, argparse.SUPPRESS, argparse.SUPPRESS, argparse.SUPPRESS)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, run: Callable[[argparse.Namespace], int],
                with_connection: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  parents=[shared] if with_connection else [])
        _one_line_errors(sub)
        sub.set_defaults(run=run)
        return sub

    enable = command("enable", "create a secret (token) for each console of DOMAIN and write its metadata",
                     _enable)
    enable.add_argument("domain", metavar="DOMAIN")
    enable.add_argument("--add", action="store_true",
                        help="on a domain already enabled, enable the consoles added since (the others keep "
                             "their tokens)")
    enable.add_argument("--insecure", action="store_true",
                        help="the proxy reaches these consoles without TLS (SPICE: the plain port)")
    enable.add_argument("--host", type=_host, help="host name or address the proxy uses to reach the hypervisor "
                                       "(default: the console's listen address, else libvirt's host name)")
    enable.add_argument("--once", action="store_true",
                        help="a token opens one session (a SPICE session keeps all its channels)")
    enable.add_argument("--expires", type=expiry_argument, metavar="WHEN",
                        help="tokens stop working then: 30m, 2h, 1d, 1h30m, an RFC 3339 time such as "
                             "2026-01-31T18:00:00Z, or never (the default)")

    disable = command("disable", "undefine DOMAIN's console secrets and remove its metadata (live and config)",
                      _disable)
    disable.add_argument("domain", metavar="DOMAIN")

    show = command("show", "print DOMAIN's consoles with their tokens and attributes", _show)
    show.add_argument("domain", metavar="DOMAIN")

    command("list", "print every domain of the connection with console access enabled", _list)

    rotate = command("rotate", "give DOMAIN's consoles new tokens; the old ones stop working at once", _rotate)
    rotate.add_argument("domain", metavar="DOMAIN")
    rotate.add_argument("--type", choices=CONSOLE_TYPES, dest="console_type",
                        help="only the consoles of this type")
    rotate.add_argument("--index", type=_ordinal, metavar="N", help="only the consoles with this number")
    rotate.add_argument("--once", action="store_true", help="the new tokens open one session each")
    rotate.add_argument("--expires", type=expiry_argument, metavar="WHEN",
                        help="the new tokens stop working then (as for enable; never removes an expiry); "
                             "without it the expiry stays as it was")

    viewer = command("vv", "write a remote-viewer file (.vv) that opens DOMAIN's SPICE console through proxyd "
                           "(it holds the token: written 0600, deleted by remote-viewer once read)", _vv)
    viewer.add_argument("domain", metavar="DOMAIN")
    viewer.add_argument("--proxy", type=_proxy_address, metavar="HOST:PORT",
                        help="proxyd's public host and port (default: those of --proxy-url)")
    viewer.add_argument("--connect-proxy", action="store_true",
                        help="remote-viewer reaches proxyd through HTTP CONNECT (its proxy= setting, the token as "
                             "the proxy password), for networks that only let an HTTP proxy out")
    viewer.add_argument("--index", type=_ordinal, default=0, metavar="N", help="the SPICE console's number "
                                                                                "(default: %(default)s)")
    viewer.add_argument("--ca", type=Path, default=pki.DEFAULT_DIR / "ca-cert.pem", metavar="FILE",
                        help="CA of proxyd's public certificate, written into the file (default: %(default)s)")
    viewer.add_argument("--proxy-cert", type=Path, default=pki.DEFAULT_DIR / "proxyd-cert.pem", metavar="FILE",
                        help="proxyd's public certificate, whose subject remote-viewer checks "
                             "(default: %(default)s)")
    viewer.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write (default: standard output)")

    certificates = command("pki", "make the CA and the certificates the daemons and QEMU need "
                                  "(never overwrites a file)", pki.run, with_connection=False)
    pki.add_arguments(certificates)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = config.parse(parser, argv)
    logs.setup(args.log_level)
    libvirt.registerErrorHandler(lambda _context, _error: None, None)  # else libvirt prints each error itself
    try:
        return args.run(args)
    except AdmError as exc:
        return _fail(str(exc), exc.exit_status)
    except libvirt.libvirtError as exc:
        failure = errors.from_libvirt(exc)
        return _fail(str(failure), failure.exit_status)
    except KeyboardInterrupt:
        return _fail("interrupted; every change made so far was undone", 130)


# -- the subcommands ----------------------------------------------------------------------------

def _enable(args: argparse.Namespace) -> int:
    expires = args.expires.at if args.expires is not None else None
    grant = access.Grant(host=args.host, insecure=args.insecure, once=args.once, expires=expires)
    return _on_domain(args, lambda connection, domain: access.enable(connection, domain, grant, args.add))


def _disable(args: argparse.Namespace) -> int:
    return _on_domain(args, access.disable)


def _show(args: argparse.Namespace) -> int:
    return _on_domain(args, access.show)


def _rotate(args: argparse.Namespace) -> int:
    return _on_domain(args, lambda connection, domain: access.rotate(
        connection, domain, args.console_type, args.index, args.once, args.expires))


def _vv(args: argparse.Namespace) -> int:
    if args.proxy is not None:
        proxy = args.proxy
    elif args.proxy_url is not None:
        proxy = (args.proxy_url.host, args.proxy_url.port)
    else:
        raise errors.AdmError("give --proxy HOST:PORT (or --proxy-url): where remote-viewer finds proxyd")
    connection = domains.connect(args.connect)
    try:
        outcome = access.show(connection, domains.find(connection, args.domain))
    finally:
        connection.close()
    token = vv.spice_token(outcome.domain.name, outcome.consoles, args.index)
    ca_pem, subject = vv.read_files(args.ca, args.proxy_cert)
    vv.write(vv.render(outcome.domain.name, proxy, token, ca_pem, subject, args.connect_proxy), args.output)
    return 0


def _list(args: argparse.Namespace) -> int:
    connection = domains.connect(args.connect)
    try:
        listed = access.list_enabled(connection)
    finally:
        connection.close()
    print(report.listing_json(listed) if args.json else report.listing_text(listed))
    return 0


def _on_domain(args: argparse.Namespace,
               operation: Callable[[libvirt.virConnect, libvirt.virDomain], access.Outcome]) -> int:
    connection = domains.connect(args.connect)
    try:
        outcome = operation(connection, domains.find(connection, args.domain))
    finally:
        connection.close()
    print(report.outcome_json(outcome, args.proxy_url) if args.json else report.outcome_text(outcome, args.proxy_url))
    if outcome.missing:
        gone = ", ".join(f"{item.console.type} {item.console.index}" for item in outcome.missing)
        return _fail(f"the secret of console(s) {gone} of domain {outcome.domain.name} no longer exists; "
                     f"'disable' then 'enable' makes new ones", errors.Inconsistent.exit_status)
    return 0


# -- helpers ------------------------------------------------------------------------------------

def _connection_flags(parser: argparse.ArgumentParser, uri: object, proxy_url: object, as_json: object) -> None:
    parser.add_argument("-c", "--connect", default=uri, metavar="URI",
                        help=f"libvirt connection URI (default: {DEFAULT_URI})")
    parser.add_argument("--proxy-url", type=proxy_url_argument, default=proxy_url, metavar="URL",
                        help="proxyd's public base URL, e.g. https://console.example.com; adds the URL "
                             "(wss://HOST/websockify?token=...) and, for SPICE, the remote-viewer command "
                             "a tenant uses")
    parser.add_argument("--json", action="store_true", default=as_json, help="print JSON instead of text")


def _ordinal(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a console number (0, 1, ...)")
    return int(text)


def _proxy_address(text: str) -> "tuple[str, int]":
    host, port = address(text)
    if not valid_host(host) or port == 0:
        raise argparse.ArgumentTypeError(f"expected proxyd's public HOST:PORT, got {text!r}")
    return host, port


def _host(text: str) -> str:
    if not valid_host(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name or IP address")
    return text


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Usage errors on one line, like every other failure (the usage itself is in --help)."""
    def error(message: str) -> NoReturn:
        parser.exit(errors.USAGE, f"{PROG}: error: {message} (see '{parser.prog} --help')\n")
    parser.error = error  # type: ignore[method-assign]


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status
