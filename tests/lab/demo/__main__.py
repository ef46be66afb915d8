"""``scripts/demo [--check] [--listen ADDR:PORT] ...`` and ``scripts/demo serial --ca FILE URL``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional, Sequence

from .. import teardown
from ..timings import summary
from . import report, terminal
from .addresses import Listen, default_public_host
from .checks import verify
from .stack import Settings, bring_up

log = logging.getLogger("demo")

DEFAULT_LISTEN = "0.0.0.0:8443"
DEFAULT_WEB_PORT = 8444


def _listen(text: str) -> Listen:
    try:
        return Listen.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Run virt-console-proxy locally with a demo guest, check its consoles through proxyd and "
                    "print their URLs; Ctrl-C or SIGTERM stops it and removes everything.")
    parser.add_argument("--listen", type=_listen, default=Listen.parse(DEFAULT_LISTEN), metavar="ADDR:PORT",
                        help=f"proxyd's public address; a free port if this one is taken, any free port for "
                             f"port 0 (default: {DEFAULT_LISTEN})")
    parser.add_argument("--web-listen", type=_listen, metavar="ADDR:PORT",
                        help=f"address of the HTTPS page with noVNC (default: --listen's address, port "
                             f"{DEFAULT_WEB_PORT} or a free one)")
    parser.add_argument("--host", metavar="NAME",
                        help="host name or address the printed URLs use (default: this machine's address on "
                             "its default route, or --listen's address when it is not a wildcard)")
    parser.add_argument("--check", action="store_true",
                        help="stop once the consoles are checked: exit 0 when they all work, 1 otherwise")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="least severe progress message to show (default: info)")
    commands = parser.add_subparsers(dest="command", metavar="serial")
    serial = commands.add_parser("serial", help="attach this terminal to a serial console the demo printed")
    serial.add_argument("--ca", type=Path, required=True, metavar="FILE", help="the demo's CA certificate")
    serial.add_argument("url", metavar="URL", help="the console's wss:// URL")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.command == "serial":
        return terminal.attach(args.url, args.ca)
    proxy_listen = args.listen.resolved()
    web_listen = (args.web_listen or Listen(proxy_listen.host, DEFAULT_WEB_PORT)).resolved()
    settings = Settings(proxy_listen=proxy_listen, web_listen=web_listen,
                        public_host=args.host or default_public_host(proxy_listen))
    return run(settings, check_only=args.check)


def run(settings: Settings, check_only: bool) -> int:
    began = time.monotonic()
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (as a background job, say).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stack = ExitStack()
    key = teardown.register(stack.close)  # also turns SIGTERM and SIGHUP into KeyboardInterrupt
    try:
        demo = bring_up(settings, stack)
        verified = verify(demo)
        up_seconds = time.monotonic() - began
        log.info("up and checked in %.1f s (%s)", up_seconds, summary())
        print(report.render(demo, up_seconds, verified.native_spice_problem, verified.screen), flush=True)
        if check_only:
            log.info("check passed; stopping")
            return 0
        print("\nready: Ctrl-C (or SIGTERM) stops the demo and removes everything it made.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        log.info("stopping")
        return 0
    except Exception:
        log.exception("the demo failed; stopping")
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # let the teardown finish
        stack.close()
        teardown.unregister(key)
        log.info("stopped: everything the demo started has ended")


if __name__ == "__main__":
    sys.exit(main())
