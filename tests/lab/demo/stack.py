"""Bringing the demo up: PKI, private libvirtd, the guest, resolveradm enable, resolverd, proxyd, web page.

Everything lives in one lab run directory (``/tmp/vcp-lab-XXXXXXXX``) and
is registered on the caller's ExitStack as it starts, so closing the stack
(Ctrl-C, SIGTERM, a failed check, or the normal end) stops it all in reverse
order and removes the directory.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from .. import account as lab_account
from ..guests import Guest, GuestFactory, GuestImage
from ..libvirtd import PrivateLibvirtd
from ..pki import CertPair, Pki
from ..polling import within
from ..proxyd import Proxyd
from ..resolverd import REPO, Resolverd
from ..rundir import make_run_dir, reap_stale_runs
from ..timings import measure
from .addresses import Listen, certificate_names
from .website import Website

log = logging.getLogger(__name__)

GUEST_NAME = "demo"
NOVNC = REPO / ".venv" / "novnc" / "node_modules" / "@novnc" / "novnc"
#: TCG: it boots the lab guest faster than nested KVM here (see tests/conftest.py, lab_domain_type).
DOMAIN_TYPE = "qemu"
#: Console types that carry a byte stream (the guest's serial ports).
TEXT_CONSOLES = ("serial", "console")


@dataclass(frozen=True)
class Settings:
    proxy_listen: Listen
    web_listen: Listen
    public_host: str
    novnc: Path = NOVNC


@dataclass(frozen=True)
class Console:
    """One console as ``resolveradm enable --json`` reported it."""

    type: str
    index: int
    token: str
    url: str
    remote_viewer: str

    @property
    def label(self) -> str:
        return self.type if self.type in ("spice", "vnc") else f"{self.type} {self.index}"


@dataclass(frozen=True)
class Demo:
    """What is running, for the checks and the report."""

    settings: Settings
    run_dir: Path
    ca_cert: Path
    guest: Guest
    proxy_url: str
    web_url: str
    enable_command: str
    consoles: tuple[Console, ...]

    def console(self, label: str) -> Console:
        return next(console for console in self.consoles if console.label == label)


def bring_up(settings: Settings, stack: ExitStack) -> Demo:
    """Start everything, registering each part's teardown on ``stack``."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    account = lab_account.lab_account()
    reap_stale_runs(account.uid)
    run_dir = make_run_dir()
    stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
    log.info("run directory %s", run_dir)

    with measure("pki"):
        pki = Pki(run_dir / "pki", group=account.gid)
        public = pki.issue("demo-public", server=True,
                           sans=certificate_names(settings.public_host, settings.proxy_listen))

    with measure("libvirtd start"):
        libvirtd = PrivateLibvirtd(run_dir / "libvirt", account, pki.qemu_dir)
        stack.callback(libvirtd.close)
        libvirtd.start()

    with measure("guest image, define and boot"):
        factory = GuestFactory(libvirtd, GuestImage(run_dir / "image"), pki, run_dir / "disks", DOMAIN_TYPE)
        stack.callback(factory.cleanup)
        guest = factory(name=GUEST_NAME, persistent=True)

    with measure("resolverd start"):
        resolver = Resolverd(run_dir, pki, [libvirtd.uri], log_level="info")
        stack.callback(resolver.stop)
        resolver.start()

    proxy_url = f"https://{_netloc(settings.public_host, settings.proxy_listen.port)}"
    with measure("proxyd start"):
        proxy = _proxyd(run_dir, pki, resolver, settings, public)
        stack.callback(proxy.stop)
        proxy.start()

    with measure("resolveradm enable"):
        command, consoles = _enable(libvirtd.uri, proxy_url)
        within(10, lambda: all(resolver.status(console.token) == 200 for console in consoles))

    web_url = f"https://{_netloc(settings.public_host, settings.web_listen.port)}/"
    site = Website(run_dir / "web", settings.web_listen, public, pki.ca_cert, settings.novnc)
    stack.callback(site.stop)
    site.start()
    return Demo(settings=settings, run_dir=run_dir, ca_cert=pki.ca_cert, guest=guest, proxy_url=proxy_url,
                web_url=web_url, enable_command=command, consoles=consoles)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _proxyd(run_dir: Path, pki: Pki, resolver: Resolverd, settings: Settings, public: CertPair) -> Proxyd:
    """The lab's proxyd, plus the public listener, its certificate and the web page's origin.

    The lab runner listens on loopback with the lab's own certificate;
    ``--listen`` repeats, so the public address is a second listener, and
    the later ``--tls-cert``/``--tls-key`` win over the runner's.
    """
    origin = f"https://{_netloc(settings.public_host, settings.web_listen.port)}"
    return Proxyd(run_dir, pki, resolver,
                  "--listen", str(settings.proxy_listen),
                  "--tls-cert", str(public.cert), "--tls-key", str(public.key),
                  "--allowed-origin", origin, "--log-level", "info")


def _enable(uri: str, proxy_url: str) -> tuple[str, tuple[Console, ...]]:
    """Run the real ``resolveradm enable``; the command line (as a person would type it) and the consoles."""
    resolveradm = Path(sys.executable).with_name("resolveradm")
    argv = ["-c", uri, "enable", GUEST_NAME, "--proxy-url", proxy_url]
    result = subprocess.run([str(resolveradm), *argv, "--json"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"resolveradm enable failed ({result.returncode}): {result.stderr.strip()}")
    report: dict[str, Any] = json.loads(result.stdout)
    consoles = tuple(Console(type=entry["type"], index=entry["index"], token=entry["token"], url=entry["url"],
                             remote_viewer=entry["remoteViewer"] or "")
                     for entry in report["consoles"])
    return shlex.join(["resolveradm", *argv]), consoles
