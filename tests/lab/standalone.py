"""The lab outside pytest, for the benchmarks: a run directory, its PKI and a running private libvirtd.

Each part's clean-up is registered with the lab's teardown (lab.teardown),
which runs at exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import libvirt

from . import teardown
from .account import Account, lab_account
from .libvirtd import PrivateLibvirtd
from .pki import Pki
from .rundir import make_run_dir, reap_stale_runs


@dataclass(frozen=True)
class StandaloneLab:
    run_dir: Path
    account: Account
    pki: Pki
    libvirtd: PrivateLibvirtd
    domain_type: str  # VCP_LAB_DOMAIN_TYPE, else KVM when this libvirtd can use it


def start_lab() -> StandaloneLab:
    account = lab_account()
    reap_stale_runs(account.uid)
    run_dir = make_run_dir()
    teardown.register(lambda: shutil.rmtree(run_dir, ignore_errors=True))
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    pki = Pki(run_dir / "pki", group=account.gid)
    daemon = PrivateLibvirtd(run_dir / "libvirt", account, pki.qemu_dir)
    teardown.register(daemon.close)
    daemon.start()
    return StandaloneLab(run_dir, account, pki, daemon, os.environ.get("VCP_LAB_DOMAIN_TYPE") or daemon.domain_type())
