"""Finding and ending the processes one lab run started.

Every process the lab starts (its libvirtd, the QEMU guests libvirtd forks,
anything else libvirtd spawns) names the run directory in its command line
or its environment (XDG_RUNTIME_DIR, monitor socket paths, ...).  That is how
the lab finds them again, also those of an earlier run whose pytest was
killed, without ever touching anybody else's processes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path
from typing import Iterable, Optional


PR_SET_PDEATHSIG = 1


def end_with_this_process() -> None:
    """``preexec_fn`` of a daemon the lab starts: SIGTERM when its parent dies.

    The teardown stops daemons when pytest ends or is interrupted; this also
    covers a pytest killed with SIGKILL, whose daemons would otherwise go on.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _ancestors() -> set[int]:
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        stat = _read(f"/proc/{pid}/stat")
        try:
            pid = int(stat.rsplit(b")", 1)[1].split()[1])
        except (IndexError, ValueError):
            break
    return pids


def processes_under(run_dir: Path, uid: Optional[int] = None) -> list[int]:
    """Pids whose command line or environment mentions ``run_dir``.

    Only processes of ``uid`` (when given) count; this process and its
    ancestors never do.
    """
    needle = str(run_dir).encode()
    mine = _ancestors()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in mine:
            continue
        if uid is not None:
            try:
                if os.stat(f"/proc/{pid}").st_uid != uid:
                    continue
            except OSError:
                continue
        if needle in _read(f"/proc/{pid}/cmdline") or needle in _read(f"/proc/{pid}/environ"):
            found.append(pid)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def terminate(pids: Iterable[int], grace: float = 5.0) -> list[int]:
    """SIGTERM ``pids``, then SIGKILL those still alive after ``grace`` seconds.

    Returns the pids that had to be killed.
    """
    pids = [pid for pid in pids if alive(pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    killed = [pid for pid in pids if alive(pid)]
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(alive(pid) for pid in killed):
        time.sleep(0.05)
    return killed


def start_time(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (to tell a reused pid apart)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    try:
        return stat.rsplit(b")", 1)[1].split()[19].decode()
    except IndexError:
        return None
