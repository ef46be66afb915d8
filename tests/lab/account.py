"""The unprivileged account the private libvirtd and its QEMU guests run as.

As root the lab uses a throwaway system user (created with useradd on first
use, member of the ``kvm`` group when there is one) so that the private
daemon is an ordinary session-mode libvirtd that cannot see or touch the
host's system instance.  Run as an ordinary user, the lab simply uses that
user.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass

#: The throwaway system user made for the lab when the tests run as root.
LAB_USER = "vcp-lab"


@dataclass(frozen=True)
class Account:
    """Who the private libvirtd runs as."""

    name: str
    uid: int
    gid: int
    #: True when the tests run as root and the daemon runs as another user.
    switched: bool


def _kvm_group() -> list[str]:
    try:
        grp.getgrnam("kvm")
    except KeyError:
        return []
    return ["kvm"]


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        command = [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir", "/nonexistent",
            "--shell", "/usr/sbin/nologin",
            "--comment", "virt-console-proxy test lab",
        ]
        groups = _kvm_group()
        if groups:
            command += ["--groups", ",".join(groups)]
        result = subprocess.run(command + [name], capture_output=True, text=True)
        # Another test run may have created it in the meantime.
        if result.returncode not in (0, 9):
            raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}")
        entry = pwd.getpwnam(name)
    else:
        groups = _kvm_group()
        if groups and name not in grp.getgrnam("kvm").gr_mem:
            subprocess.run(["usermod", "--append", "--groups", "kvm", name], check=True)
    return entry


def lab_account() -> Account:
    """The account to run the private libvirtd as (created if needed)."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switched=False)
    entry = _ensure_user(LAB_USER)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switched=True)
