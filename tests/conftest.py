"""Session fixtures of the end-to-end test lab (see tests/lab/__init__.py).

Nothing here runs unless a test asks for a lab fixture, so unit tests stay
fast and need neither root nor libvirt.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest

# Importable as ``lab`` whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab import teardown  # noqa: E402
from lab import account as lab_accounts  # noqa: E402
from lab.account import Account  # noqa: E402
from lab.guests import Guest, GuestFactory, GuestImage  # noqa: E402
from lab.pki import Pki  # noqa: E402
from lab.rundir import make_run_dir, reap_stale_runs  # noqa: E402
from lab.timings import TIMINGS, measure, record, summary  # noqa: E402


@pytest.fixture(scope="session")
def lab_account() -> Account:
    """Who the private libvirtd and QEMU run as (``vcp-lab`` when root)."""
    return lab_accounts.lab_account()


@pytest.fixture(scope="session")
def lab_run_dir(lab_account: Account) -> Iterator[Path]:
    """This run's directory (``/tmp/vcp-lab-XXXXXXXX``), removed at the end."""
    reap_stale_runs(lab_account.uid)
    run_dir = make_run_dir()
    keep = os.environ.get("VCP_LAB_KEEP") == "1"

    def remove() -> None:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)

    key = teardown.register(remove)
    yield run_dir
    teardown.unregister(key)
    remove()


@pytest.fixture(scope="session")
def lab_pki(lab_run_dir: Path, lab_account: Account) -> Pki:
    """The run's PKI (a :class:`lab.pki.Pki`)."""
    with measure("pki"):
        return Pki(lab_run_dir / "pki", group=lab_account.gid)


@pytest.fixture(scope="session")
def lab_libvirtd(lab_run_dir: Path, lab_account: Account, lab_pki: Pki):
    """The private libvirtd (a running :class:`lab.libvirtd.PrivateLibvirtd`)."""
    import libvirt

    from lab.libvirtd import PrivateLibvirtd

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    daemon = PrivateLibvirtd(lab_run_dir / "libvirt", lab_account, lab_pki.qemu_dir,
                             debug=os.environ.get("VCP_LAB_DEBUG") == "1")
    key = teardown.register(daemon.close)
    try:
        daemon.start()
        record("libvirtd start", daemon.startup_seconds or 0.0)
        yield daemon
    finally:
        teardown.unregister(key)
        daemon.close()


@pytest.fixture
def lab_conn(lab_libvirtd):
    """A live read-write connection to the private libvirtd (shared; do not close)."""
    return lab_libvirtd.connection()


@pytest.fixture(scope="session")
def lab_domain_type(lab_libvirtd) -> str:
    """The guests' domain type: VCP_LAB_DOMAIN_TYPE = qemu (default) | kvm | auto.

    TCG is the default because it boots the lab guest 5-10 times faster
    than KVM on these (nested, Firecracker) machines: 0.7-1.7 s against
    5-11 s, SeaBIOS' port I/O being very slow under nested KVM; the guest
    idles in ``hlt`` either way.  ``kvm`` and ``auto`` use KVM when this
    daemon can (``auto`` falls back to qemu silently, ``kvm`` fails).
    """
    wanted = os.environ.get("VCP_LAB_DOMAIN_TYPE", "qemu")
    if wanted not in ("kvm", "qemu", "auto"):
        pytest.fail(f"VCP_LAB_DOMAIN_TYPE={wanted!r}: use qemu, kvm or auto")
    if wanted == "qemu":
        return "qemu"
    usable = lab_libvirtd.domain_type()
    if wanted == "auto":
        return usable
    if usable != "kvm":
        pytest.fail("VCP_LAB_DOMAIN_TYPE=kvm but /dev/kvm is not usable by the lab daemon")
    return "kvm"


@pytest.fixture(scope="session")
def lab_image(lab_run_dir: Path) -> GuestImage:
    """The boot disk (boot sector assembled with nasm at test time)."""
    with measure("guest image"):
        return GuestImage(lab_run_dir / "image")


def _factory(lab_libvirtd, lab_image: GuestImage, lab_pki: Pki, lab_run_dir: Path,
             lab_domain_type: str) -> GuestFactory:
    return GuestFactory(lab_libvirtd, lab_image, lab_pki, lab_run_dir / "disks", lab_domain_type)


@pytest.fixture
def make_guest(lab_libvirtd, lab_image, lab_pki, lab_run_dir, lab_domain_type) -> Iterator[GuestFactory]:
    """Guest factory; everything it made is destroyed and undefined after the test."""
    factory = _factory(lab_libvirtd, lab_image, lab_pki, lab_run_dir, lab_domain_type)
    key = teardown.register(factory.cleanup)
    yield factory
    teardown.unregister(key)
    factory.cleanup()


@pytest.fixture(scope="session")
def lab_guest(lab_libvirtd, lab_image, lab_pki, lab_run_dir, lab_domain_type) -> Iterator[Guest]:
    """One running transient guest with every console, shared by the session.

    Do not stop or reconfigure it; use ``make_guest`` for that.  Its serial
    ports may have stopped repeating the banner (a test typed on them):
    send ENQ (0x05) to get the banner line again.
    """
    factory = _factory(lab_libvirtd, lab_image, lab_pki, lab_run_dir, lab_domain_type)
    key = teardown.register(factory.cleanup)
    guest = factory(name="lab-shared")
    yield guest
    teardown.unregister(key)
    factory.cleanup()


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if TIMINGS:
        terminalreporter.write_line(f"vcp-lab bring-up: {summary()}")
