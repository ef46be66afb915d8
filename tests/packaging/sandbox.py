"""Starting a packaged daemon the way its systemd unit would, as far as this machine allows without systemd.

No systemd runs here (PID 1 is not systemd), so the unit's process settings
are applied by hand: the unit's ExecStart from the unpacked payload; a
stand-in for its User= (the unit's own user exists only once the RPM is
installed); its capability bounding, inheritable and ambient sets and
NoNewPrivileges with setpriv(1); MemoryDenyWriteExecute with mdwe_exec.py;
UMask; and a NOTIFY_SOCKET to receive its sd_notify messages.  Namespaces
and the seccomp filter are not reproduced; systemd-analyze checks those.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from lab.notify import NotifySocket

MDWE_EXEC = Path(__file__).with_name("mdwe_exec.py")
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class StandIn:
    """The existing account a daemon runs as instead of its unit's User=."""

    name: str
    uid: int
    gid: int


def unit_settings(path: Path) -> Dict[str, List[str]]:
    """[Service] keys of a unit file, each with the list of its values."""
    settings: Dict[str, List[str]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _capabilities(settings: Dict[str, List[str]], key: str) -> str:
    names = " ".join(settings.get(key, [])).split()
    return ",".join(["-all"] + [f"+{name.lower().removeprefix('cap_')}" for name in names])


def _enabled(settings: Dict[str, List[str]], key: str) -> bool:
    return settings.get(key, ["no"])[-1] in ("yes", "true", "on", "1")


class UnitProcess:
    """One daemon started from its unit's settings; stop() or kill() ends its whole process group."""

    def __init__(self, unit: Path, root: Path, python_path: str, user: StandIn, args: Sequence[str],
                 run_dir: Path, port: int, instance: str = "") -> None:
        self.port = port  # where the daemon serves, for its clients
        self.settings = unit_settings(unit)
        self.notify = NotifySocket(run_dir / f"{unit.stem}{instance}.notify")
        self.log_path = run_dir / f"{unit.stem}{instance}.log"
        (exec_start,) = self.settings["ExecStart"]
        program, *unit_args = exec_start.split()
        argv = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
                f"--inh-caps={_capabilities(self.settings, 'AmbientCapabilities')}",
                f"--ambient-caps={_capabilities(self.settings, 'AmbientCapabilities')}",
                f"--bounding-set={_capabilities(self.settings, 'CapabilityBoundingSet')}"]
        if _enabled(self.settings, "NoNewPrivileges"):
            argv.append("--no-new-privs")
        if _enabled(self.settings, "MemoryDenyWriteExecute"):
            argv += [SYSTEM_PYTHON, str(MDWE_EXEC)]
        argv += [str(root / program.lstrip("/")), *unit_args, *args]
        environment = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8",
                       "NOTIFY_SOCKET": str(self.notify.path), "PYTHONPATH": python_path}
        umask = int(self.settings.get("UMask", ["0022"])[-1], 8)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, env=environment, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True, umask=umask)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> List[str]:
        try:
            return self.notify.wait_for("READY=1", timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nexit status: {self.process.poll()}\n{self.log_tail()}") from None

    def status(self) -> Dict[str, str]:
        """/proc/PID/status as a dict."""
        lines = Path(f"/proc/{self.pid}/status").read_text().splitlines()
        return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}

    def stop(self, timeout: float = 60) -> Optional[int]:
        """What systemctl stop does with KillMode=mixed: SIGTERM to the main process, then SIGKILL to
        whatever is left of the group; the main process's exit status (None when it had to be killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.kill()
        return self.process.returncode

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        self.notify.close()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]
