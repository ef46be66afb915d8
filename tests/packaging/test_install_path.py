"""The operator's path with the packaged files, on the lab's libvirtd and a lab guest.

As the README's "Install on Fedora/RHEL" goes: ``resolveradm pki`` makes the
certificates (QEMU's included), both services start from their units with
the sample configs, ``resolveradm enable`` prints each console's URL, and a
tenant opens the console at that URL.  The commands, configs and units are
those of the built RPM; each daemon runs with its unit's privileges
(sandbox.py): resolverd as the lab's user (which, like the polkit rule for
the real service user, may use the libvirtd), proxyd as nobody with only
CAP_NET_BIND_SERVICE on a port below 1024, both under NoNewPrivileges and
MemoryDenyWriteExecute.  Only the paths differ from an installed system:
the certificates live in a scratch directory, named by flags that override
the configs' /etc/pki paths.
"""

import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from websockets.sync.client import ClientConnection, connect

from lab import teardown
from lab.bootsector import BANNER, ENQ
from lab.guests import GuestFactory
from lab.pki import CertPair
from lab.ports import free_port
from tests.packaging.sandbox import StandIn, UnitProcess

pytestmark = pytest.mark.timeout(1800)

UNITS = Path("usr/lib/systemd/system")
CONFIGS = Path("etc/virt-console-proxy")
CAP_NET_BIND_SERVICE = 1 << 10
START_SECONDS = 90


def packaged(build, command: str, *args: str) -> subprocess.CompletedProcess:
    """A packaged command run as root, the way an operator types it."""
    environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": build.python_path}
    return subprocess.run([str(build.root / "usr/bin" / command), *args], env=environment, capture_output=True,
                          text=True, timeout=120)


def privileged_port() -> int:
    """A free TCP port below 1024 on 127.0.0.1."""
    for port in range(1023, 600, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 1024")


def give_to(path: Path, gid: int) -> None:
    """What the package's %attr and tmpfiles rules do for a config or key: readable by the service's group."""
    os.chown(path, 0, gid)
    path.chmod(0o640)


@pytest.fixture(scope="module")
def site(lab_account) -> Iterator[Path]:
    """Scratch directory of this deployment: certificates, notify sockets, daemon logs."""
    directory = Path(tempfile.mkdtemp(prefix="vcp-install-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def users(lab_account) -> Dict[str, StandIn]:
    nobody = pwd.getpwnam("nobody")
    return {"proxyd": StandIn("nobody", nobody.pw_uid, nobody.pw_gid),
            "resolverd": StandIn(lab_account.name, lab_account.uid, lab_account.gid)}


@pytest.fixture(scope="module")
def certificates(build, site, users, lab_account) -> Path:
    pki = site / "pki"
    made = packaged(build, "resolveradm", "pki", "--dir", str(pki), "--qemu-dir", str(site / "qemu"),
                    "--qemu-group", str(lab_account.gid), "--proxy-name", "localhost")
    assert made.returncode == 0, made.stderr
    for name in ("proxyd-key.pem", "proxyd-client-key.pem"):
        give_to(pki / name, users["proxyd"].gid)
    give_to(pki / "resolverd-key.pem", users["resolverd"].gid)
    return pki


@pytest.fixture(scope="module")
def resolverd(build, site, users, certificates, lab_libvirtd) -> Iterator[UnitProcess]:
    give_to(build.root / CONFIGS / "resolverd.conf", users["resolverd"].gid)
    port, bridge_port = free_port(), free_port()
    args = ["--config", str(build.root / CONFIGS / "resolverd.conf"), "--connect", lab_libvirtd.uri,
            "--listen", f"127.0.0.1:{port}", "--console-listen", f"127.0.0.1:{bridge_port}",
            "--tls-cert", str(certificates / "resolverd-cert.pem"),
            "--tls-key", str(certificates / "resolverd-key.pem"), "--tls-ca", str(certificates / "ca-cert.pem")]
    daemon = UnitProcess(build.root / UNITS / "virt-console-resolverd.service", build.root, build.python_path,
                         users["resolverd"], args, site, port)
    with running(daemon):
        yield daemon


def start_proxyd(build, site, users, certificates, resolverd, instance: str = "") -> UnitProcess:
    give_to(build.root / CONFIGS / "proxyd.conf", users["proxyd"].gid)
    port = privileged_port()
    client = ["--resolver-cert", str(certificates / "proxyd-client-cert.pem"),
              "--resolver-key", str(certificates / "proxyd-client-key.pem"),
              "--resolver-ca", str(certificates / "ca-cert.pem"),
              "--connect-cert", str(certificates / "proxyd-client-cert.pem"),
              "--connect-key", str(certificates / "proxyd-client-key.pem"),
              "--connect-ca", str(certificates / "ca-cert.pem")]
    args = ["--config", str(build.root / CONFIGS / "proxyd.conf"), "--listen", f"127.0.0.1:{port}",
            "--tls-cert", str(certificates / "proxyd-cert.pem"), "--tls-key", str(certificates / "proxyd-key.pem"),
            "--resolver-uri", f"https://localhost:{resolverd.port}/consoleresolver", *client,
            "--admin-listen", f"127.0.0.1:{free_port()}", "--workers", "2", "--drain-grace", "5"]
    return UnitProcess(build.root / UNITS / "virt-console-proxyd.service", build.root, build.python_path,
                       users["proxyd"], args, site, port, instance)


@contextmanager
def running(daemon: UnitProcess) -> Iterator[UnitProcess]:
    """Until the block ends: ready (READY=1), and stopped afterwards whatever happens."""
    key = teardown.register(daemon.kill)
    try:
        daemon.wait_ready(START_SECONDS)
        yield daemon
    finally:
        teardown.unregister(key)
        daemon.stop()


@pytest.fixture(scope="module")
def proxyd(build, site, users, certificates, resolverd) -> Iterator[UnitProcess]:
    with running(start_proxyd(build, site, users, certificates, resolverd)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def guest(lab_libvirtd, lab_image, lab_pki, lab_run_dir, lab_domain_type, site, certificates):
    """A guest whose QEMU holds the certificate `resolveradm pki --qemu-dir` made."""
    factory = GuestFactory(lab_libvirtd, lab_image, lab_pki, lab_run_dir / "disks-install-path", lab_domain_type)
    key = teardown.register(factory.cleanup)
    qemu = site / "qemu"
    with lab_pki.qemu_identity(qemu / "ca-cert.pem", CertPair(qemu / "server-cert.pem", qemu / "server-key.pem")):
        made = factory(name="install-path", consoles={"serial", "tls-serial"})
    yield made
    teardown.unregister(key)
    factory.cleanup()


@pytest.fixture(scope="module")
def enabled(build, lab_libvirtd, guest, proxyd) -> List[dict]:
    """The consoles `resolveradm enable --json` reports, with their URLs."""
    result = packaged(build, "resolveradm", "--connect", lab_libvirtd.uri, "enable", guest.name, "--json",
                      "--proxy-url", f"https://localhost:{proxyd.port}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["consoles"]


def open_console(url: str, certificates: Path, deadline: float = 20) -> ClientConnection:
    """The tenant's websocket; retried while resolverd has yet to see the new metadata."""
    until = time.monotonic() + deadline
    while True:
        try:
            return connect(url, ssl=ssl.create_default_context(cafile=str(certificates / "ca-cert.pem")),
                           open_timeout=10, max_size=None)
        except Exception:
            if time.monotonic() > until:
                raise
            time.sleep(0.5)


def banner_through(console: ClientConnection) -> bytes:
    """ENQ in, the guest's banner line out: the console works both ways."""
    console.send(ENQ)
    received = b""
    until = time.monotonic() + 15
    while BANNER not in received:
        received += console.recv(timeout=max(0.1, until - time.monotonic()))
    return received


def test_both_daemons_signal_readiness(resolverd, proxyd):
    assert "READY=1" in resolverd.notify.received
    assert "READY=1" in proxyd.notify.received


def test_daemons_hold_only_what_their_units_grant(resolverd, proxyd, users):
    for daemon, user, capabilities in ((resolverd, users["resolverd"], 0), (proxyd, users["proxyd"],
                                                                         CAP_NET_BIND_SERVICE)):
        status = daemon.status()
        assert status["Uid"].split()[0] == str(user.uid)
        assert status["NoNewPrivs"] == "1"
        assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == capabilities
        assert status["Groups"] == ""


def test_enable_prints_a_url_for_every_console(enabled, proxyd):
    assert sorted(console["index"] for console in enabled if console["type"] == "serial") == [0, 1]
    for console in enabled:
        assert console["url"] == f"wss://localhost:{proxyd.port}/websockify?token={console['token']}"


def test_tenant_opens_each_serial_console_at_its_url(enabled, certificates):
    for console in enabled:
        if console["type"] in ("serial", "console"):
            with open_console(console["url"], certificates) as session:
                assert BANNER in banner_through(session)


def test_resolverd_reload_keeps_answering(enabled, certificates, resolverd):
    resolverd.process.send_signal(signal.SIGHUP)  # systemctl reload virt-console-resolverd
    time.sleep(3)
    assert resolverd.process.poll() is None
    for console in enabled:  # the pty consoles go through the reloaded worker's console bridge
        with open_console(console["url"], certificates) as session:
            assert BANNER in banner_through(session)


def test_proxyd_reload_keeps_sessions_open(build, site, users, certificates, resolverd, enabled):
    with running(start_proxyd(build, site, users, certificates, resolverd, instance="-reload")) as own:
        token = next(console["token"] for console in enabled if console["type"] == "serial")
        url = f"wss://localhost:{own.port}/websockify?token={token}"
        with open_console(url, certificates) as session:
            banner_through(session)
            before = len(own.notify.received)
            own.process.send_signal(signal.SIGHUP)  # systemctl reload: ExecReload=kill -HUP $MAINPID
            try:
                own.notify.wait_for("READY=1", 30, after=before)
            finally:
                assert own.process.poll() is None, f"proxyd died on SIGHUP:\n{own.log_tail()}"
            assert "RELOADING=1" in own.notify.received[before:]
            assert BANNER in banner_through(session)
        with open_console(url, certificates) as fresh:
            assert BANNER in banner_through(fresh)


def test_stop_drains_then_exits_cleanly(proxyd, resolverd):
    for daemon in (proxyd, resolverd):
        daemon.process.send_signal(signal.SIGTERM)  # systemctl stop, KillMode=mixed
        assert daemon.process.wait(60) == 0
    proxyd.notify.wait_for("STOPPING=1", 5)
