"""The per-run directory that holds everything a lab run creates.

``/tmp/vcp-lab-XXXXXXXX``: short on purpose, because QEMU's and libvirt's
UNIX socket paths live below it and a socket path is limited to 107 bytes.
An ``owner`` file records the pytest process (pid and start time); a later
run that finds a directory whose owner is gone ends the processes that
still name it (see :mod:`processes`) and removes it, so even a SIGKILLed
pytest leaves nothing behind for longer than until the next run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from .processes import processes_under, start_time, terminate

PREFIX = "vcp-lab-"
BASE = Path(tempfile.gettempdir())


def _owner_alive(run_dir: Path) -> bool:
    try:
        pid_text, started = (run_dir / "owner").read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        # No owner file yet: a run that is just starting, or not ours.
        return True
    return start_time(pid) == started


def reap_stale_runs(uid: Optional[int] = None, base: Path = BASE) -> list[Path]:
    """End the processes of dead runs and delete their directories."""
    reaped = []
    for run_dir in sorted(base.glob(PREFIX + "*")):
        if not run_dir.is_dir() or not (run_dir / "owner").exists():
            continue
        if _owner_alive(run_dir):
            continue
        terminate(processes_under(run_dir, uid), grace=2.0)
        shutil.rmtree(run_dir, ignore_errors=True)
        reaped.append(run_dir)
    return reaped


def make_run_dir(base: Path = BASE) -> Path:
    """Create this run's directory (mode 0755) and record its owner."""
    run_dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    os.chmod(run_dir, 0o755)
    (run_dir / "owner").write_text(f"{os.getpid()} {start_time(os.getpid())}\n")
    return run_dir
