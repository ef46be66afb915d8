"""A private libvirtd in session mode that never sees the host's VMs.

It runs in the foreground as the lab account (see :mod:`account`), under
a subreaper (see :mod:`reaper`) that also adopts its QEMU guests, with its
own HOME and XDG directories below the run directory, so its domains,
secrets, sockets, logs and capability cache all live there; the host's
system libvirtd is never contacted, started or stopped.  The tests (root)
reach it through the URI ``qemu+unix:///session?socket=<run>/run/libvirt/libvirt-sock``.

Stopping it (:meth:`PrivateLibvirtd.stop`, :meth:`kill`) leaves its QEMU
guests running, like a real libvirtd restart; :meth:`start` reconnects to
them.  :meth:`close` is the final teardown: destroys every domain, stops the
daemon and ends any process that still names the run directory.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import libvirt

from .account import Account
from .daemon_config import libvirtd_conf, qemu_conf
from .processes import alive, processes_under, terminate

_REAPER = Path(__file__).with_name("reaper.py")
_SYSTEM_PYTHON = "/usr/bin/python3"


class LibvirtdError(RuntimeError):
    """The private libvirtd did not come up."""


class PrivateLibvirtd:
    """One private session-mode libvirtd.

    Attributes:
        root: the daemon's directory (HOME, XDG dirs, logs below it).
        uri: the libvirt URI to connect to it.
        socket_path: its UNIX socket.
        log_path: libvirtd's own log (warnings and errors).
        stdio_path: libvirtd's stdout/stderr.
        qemu_log_dir: where each guest's QEMU log (``NAME.log``) goes.
        startup_seconds: how long the last :meth:`start` took.
        display_ports: the range SPICE/VNC autoports come from.
    """

    def __init__(self, root: Path, account: Account, x509_dir: Path, debug: bool = False) -> None:
        self.root = root
        self.account = account
        self.x509_dir = x509_dir
        self.debug = debug
        self.home = root / "home"
        self.runtime_dir = root / "run"
        self.config_dir = root / "config"
        self.cache_dir = root / "cache"
        self.data_dir = root / "data"
        self.log_path = root / "libvirtd.log"
        self.stdio_path = root / "libvirtd.out"
        self.socket_path = self.runtime_dir / "libvirt" / "libvirt-sock"
        self.qemu_log_dir = self.cache_dir / "libvirt" / "qemu" / "log"
        self.uri = f"qemu+unix:///session?socket={self.socket_path}"
        self.startup_seconds: Optional[float] = None
        # SPICE/VNC autoports: 1000 ports of their own, below the kernel's
        # ephemeral range (32768+) where lab.ports and clients' sockets live.
        base = 10000 + 1000 * random.randrange(22)
        self.display_ports: tuple[int, int] = (base, base + 999)
        self._pid: Optional[int] = None
        self._reapers: list[subprocess.Popen[bytes]] = []
        self._conn: Optional[libvirt.virConnect] = None
        self._conn_lock = threading.Lock()
        self._prepare()

    # -- set-up ---------------------------------------------------------

    def _prepare(self) -> None:
        for directory in (self.root, self.home, self.runtime_dir, self.config_dir,
                          self.cache_dir, self.data_dir, self.config_dir / "libvirt"):
            directory.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "libvirt" / "libvirtd.conf").write_text(
            libvirtd_conf(self.log_path, self.debug)
        )
        (self.config_dir / "libvirt" / "qemu.conf").write_text(
            qemu_conf(self.x509_dir, self.display_ports)
        )
        shutil.copyfile(_REAPER, self.root / "reaper.py")
        for dirpath, _dirnames, filenames in os.walk(self.root):
            os.chown(dirpath, self.account.uid, self.account.gid)
            for filename in filenames:
                os.chown(os.path.join(dirpath, filename), self.account.uid, self.account.gid)
        os.chmod(self.runtime_dir, 0o700)

    def _environment(self) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "USER": self.account.name,
            "LOGNAME": self.account.name,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.config_dir),
            "XDG_CACHE_HOME": str(self.cache_dir),
            "XDG_DATA_HOME": str(self.data_dir),
            "LANG": "C.UTF-8",
        }

    # -- life cycle -----------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """The daemon's pid while it runs."""
        if self._pid is not None and alive(self._pid):
            return self._pid
        return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 30.0) -> None:
        """Start the daemon and wait until it accepts connections."""
        if self.running:
            return
        began = time.monotonic()
        if self.socket_path.exists():
            self.socket_path.unlink()
        kwargs: dict = {}
        if self.account.switched:
            kwargs.update(user=self.account.uid, group=self.account.gid,
                          extra_groups=os.getgrouplist(self.account.name, self.account.gid))
        python = _SYSTEM_PYTHON if os.path.exists(_SYSTEM_PYTHON) else sys.executable
        with open(self.stdio_path, "ab") as stdio:
            reaper = subprocess.Popen(
                [python, "-I", "-S", str(self.root / "reaper.py"), "libvirtd"],
                env=self._environment(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stdio,
                start_new_session=True,
                **kwargs,
            )
        self._reapers.append(reaper)
        assert reaper.stdout is not None
        deadline = began + timeout
        ready, _, _ = select.select([reaper.stdout], [], [], timeout)
        line = reaper.stdout.readline() if ready else b""
        reaper.stdout.close()
        if not line.strip().isdigit():
            reaper.kill()
            raise LibvirtdError(f"the reaper did not start libvirtd: {self.tail()}")
        self._pid = int(line)
        while True:
            if not alive(self._pid):
                raise LibvirtdError(f"libvirtd exited at start: {self.tail()}")
            if self.socket_path.exists():
                try:
                    probe = libvirt.open(self.uri)
                except libvirt.libvirtError:
                    pass
                else:
                    probe.close()
                    break
            if time.monotonic() > deadline:
                self.kill()
                raise LibvirtdError(f"libvirtd did not answer within {timeout}s: {self.tail()}")
            time.sleep(0.02)
        self.startup_seconds = time.monotonic() - began

    def _signal(self, signum: int, grace: float) -> None:
        self._drop_connection()
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signum)
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._pid = None
        # Reapers whose guests are all gone have exited: collect them.
        for reaper in self._reapers:
            reaper.poll()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the daemon (SIGKILL after ``grace`` s); guests keep running."""
        self._signal(signal.SIGTERM, grace)

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would; guests keep running."""
        self._signal(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        """Stop, then start again (it reattaches to the running guests)."""
        self.stop()
        self.start()

    # -- connections ----------------------------------------------------

    def connect(self) -> libvirt.virConnect:
        """A new read-write connection (the caller closes it)."""
        return libvirt.open(self.uri)

    def connection(self) -> libvirt.virConnect:
        """A shared connection, reopened when the daemon was restarted."""
        with self._conn_lock:
            if self._conn is not None:
                try:
                    alive = self._conn.isAlive() == 1
                except libvirt.libvirtError:
                    alive = False
                if not alive:
                    self._drop_connection_locked()
            if self._conn is None:
                self._conn = self.connect()
            return self._conn

    def _drop_connection(self) -> None:
        with self._conn_lock:
            self._drop_connection_locked()

    def _drop_connection_locked(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    # -- facts ----------------------------------------------------------

    def domain_type(self) -> str:
        """'kvm' when this daemon can use /dev/kvm for x86_64, else 'qemu'."""
        caps = self.connection().getCapabilities()
        if os.access("/dev/kvm", os.R_OK | os.W_OK) and "<domain type='kvm'" in caps:
            return "kvm"
        return "qemu"

    def qemu_log(self, name: str) -> str:
        """The QEMU log of guest ``name`` (empty when there is none)."""
        try:
            return (self.qemu_log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 20) -> str:
        """The end of libvirtd's log and stdio, for error messages."""
        text = []
        for path in (self.stdio_path, self.log_path):
            try:
                text += path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(text)

    # -- teardown -------------------------------------------------------

    def destroy_all_domains(self) -> None:
        """Destroy and undefine every domain this daemon knows."""
        if not self.running:
            return
        conn = self.connection()
        for dom in conn.listAllDomains():
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError:
                pass
            try:
                if dom.isPersistent():
                    dom.undefine()
            except libvirt.libvirtError:
                pass

    def close(self) -> None:
        """Final teardown: no domain, no daemon, no process left behind."""
        try:
            self.destroy_all_domains()
        except libvirt.libvirtError:
            pass
        self.stop(grace=10.0)
        for reaper in self._reapers:
            if reaper.poll() is None:
                reaper.terminate()  # ends whatever it still reaps
        for reaper in self._reapers:
            try:
                reaper.wait(10)
            except subprocess.TimeoutExpired:
                reaper.kill()
                reaper.wait(5)
        terminate(processes_under(self.root, self.account.uid), grace=3.0)
