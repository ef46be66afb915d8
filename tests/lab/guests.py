"""Lab guests: the boot disk, the Guest object and the factory that makes them."""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import ssl
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import libvirt

from resolverd.tls import client_context

from .account import Account
from .bootsector import BANNER, assemble, serial_banner, write_disk_image
from .domain_xml import ALL_CONSOLES, GuestSpec, render
from .libvirtd import PrivateLibvirtd
from .pki import Pki
from .ports import free_port
from .serial import QEMU_TLS_CHARDEV_RECORD, LibvirtConsole, TlsSerial
from .timings import record


class GuestImage:
    """The boot disk every guest copies: the boot sector assembled at test time."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.sector = assemble()
        self.path = write_disk_image(directory / "lab-guest.img", self.sector)

    def copy_to(self, path: Path, account: Account) -> Path:
        """A private copy (QEMU opens its disk read-write), owned by ``account``."""
        shutil.copyfile(self.path, path)
        os.chown(path, account.uid, account.gid)
        os.chmod(path, 0o640)
        return path


@dataclass
class Guest:
    """One lab guest.

    ``spice_port``/``spice_tls_port``/``vnc_port`` are read from the live
    XML when the guest runs (None while it is shut off or lacks that
    console); ``tls_serial_port`` is fixed at creation.
    """

    name: str
    uuid: str
    spec: GuestSpec
    persistent: bool
    libvirtd: PrivateLibvirtd
    pki: Pki
    spice_password: Optional[str]
    tls_serial_port: Optional[int]
    spice_port: Optional[int] = None
    spice_tls_port: Optional[int] = None
    vnc_port: Optional[int] = None
    #: Seconds from "create" to the banner on a serial port (None if not waited).
    boot_seconds: Optional[float] = None
    consoles: frozenset[str] = field(default_factory=lambda: ALL_CONSOLES)

    #: What every banner the guest prints starts with.
    banner = BANNER

    @staticmethod
    def serial_banner(index: int) -> bytes:
        """The full line the guest prints on serial ``index`` (0 = pty/COM1, 1 = TLS/COM2)."""
        return serial_banner(index)

    @property
    def domain(self) -> libvirt.virDomain:
        """The libvirt domain, on the lab's shared connection (survives restarts)."""
        return self.libvirtd.connection().lookupByUUIDString(self.uuid)

    @property
    def disk(self) -> Path:
        return self.spec.disk

    def xml(self, flags: int = 0) -> str:
        return self.domain.XMLDesc(flags)

    def is_active(self) -> bool:
        return self.domain.isActive() == 1

    def refresh_ports(self) -> None:
        """Read the graphics ports libvirt allocated from the live XML."""
        self.spice_port = self.spice_tls_port = self.vnc_port = None
        if not self.is_active():
            return
        root = ET.fromstring(self.xml())
        for graphics in root.findall("./devices/graphics"):
            kind = graphics.get("type")
            if kind == "spice":
                self.spice_port = _port(graphics.get("port"))
                self.spice_tls_port = _port(graphics.get("tlsPort"))
            elif kind == "vnc":
                self.vnc_port = _port(graphics.get("port"))

    def qemu_log(self) -> str:
        return self.libvirtd.qemu_log(self.name)

    # -- consoles -------------------------------------------------------

    def console(self, force: bool = False) -> LibvirtConsole:
        """The pty console (COM1) through virDomainOpenConsole."""
        return LibvirtConsole(self.libvirtd.connection(), self.domain, None, force)

    def tls_serial(self, context: Optional[ssl.SSLContext] = None,
                   record_size: Optional[int] = QEMU_TLS_CHARDEV_RECORD) -> TlsSerial:
        """A TLS client of the TLS chardev (COM2); proxyd's client cert by default."""
        if self.tls_serial_port is None:
            raise ValueError(f"{self.name} has no tls-serial console")
        if context is None:
            context = client_context(self.pki.ca_cert, *self.pki.proxyd_qemu_client.as_tuple)
        return TlsSerial(self.tls_serial_port, context, host=self.spec.listen,
                         record_size=record_size)

    def wait_for_banner(self, timeout: float = 60.0) -> None:
        """Block until the guest prints its banner (on COM1, else on COM2)."""
        if "serial" in self.consoles:
            with self.console() as console:
                console.read_until(BANNER, timeout)
        elif "tls-serial" in self.consoles:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with self.tls_serial() as serial:
                        serial.read_until(BANNER, max(deadline - time.monotonic(), 0.1))
                    return
                except (ConnectionError, ssl.SSLError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        else:
            raise ValueError(f"{self.name} has no serial console to wait on")

    def qemu_pid(self) -> int:
        """The pid of the guest's QEMU process (to stop or kill it behind libvirt's back)."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmdline and b"qemu" in cmdline[0] and f"guest={self.name},".encode() in b" ".join(cmdline):
                    return int(entry.name)
        raise LookupError(f"no QEMU process for {self.name}")

    # -- life cycle -----------------------------------------------------

    def start(self, wait: bool = True, timeout: float = 60.0) -> None:
        """Start a shut-off persistent guest."""
        began = time.monotonic()
        _with_port_retry(self, lambda: self.domain.create())
        self._after_start(began, wait, timeout)

    def _after_start(self, began: float, wait: bool, timeout: float) -> None:
        if wait and self.consoles & {"serial", "tls-serial"}:
            self.wait_for_banner(timeout)
            self.boot_seconds = time.monotonic() - began
            record("guest boot to banner", self.boot_seconds)
        self.refresh_ports()

    def destroy(self) -> None:
        """Power off (a transient guest disappears)."""
        try:
            self.domain.destroy()
        except libvirt.libvirtError as error:
            if error.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN,
                                              libvirt.VIR_ERR_OPERATION_INVALID):
                raise
        self.spice_port = self.spice_tls_port = self.vnc_port = None

    def remove(self) -> None:
        """Destroy, undefine and delete the disk copy."""
        try:
            dom = self.domain
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError:
                pass
            try:
                if dom.isPersistent():
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError:
                pass
        try:
            self.spec.disk.unlink()
        except FileNotFoundError:
            pass


def _port(value: Optional[str]) -> Optional[int]:
    if value is None or int(value) <= 0:
        return None
    return int(value)


# QEMU's chardev and VNC say the first two; SPICE says "reds_init_socket: binding socket to HOST:PORT failed".
_PORT_CLASH = ("Address already in use", "Failed to bind socket", "binding socket to")


def _with_port_retry(guest: Guest, action: Callable[[], object], attempts: int = 4) -> None:
    """Run ``action``; if QEMU lost a port race, try again with new ports.

    libvirt re-allocates SPICE/VNC autoports on each start; the chardev
    port is re-picked here.  Other failures raise with QEMU's log tail.
    """
    for attempt in range(attempts):
        try:
            action()
            return
        except libvirt.libvirtError as error:
            clash = any(text in str(error) for text in _PORT_CLASH)
            if not clash or attempt == attempts - 1:
                log = "\n".join(guest.qemu_log().splitlines()[-5:])
                raise GuestStartError(f"{guest.name} did not start: {error}\n{log}") from error
            if guest.tls_serial_port is not None:
                guest.tls_serial_port = guest.spec.tls_serial_port = free_port(guest.spec.listen)
                if guest.persistent:
                    guest.libvirtd.connection().defineXML(render(guest.spec))


class GuestStartError(RuntimeError):
    """libvirt could not start a lab guest (the message has QEMU's log tail)."""


class GuestFactory:
    """Makes lab guests and removes them again.

    Call it: ``factory(name=None, *, running=True, persistent=False,
    consoles=ALL_CONSOLES, memory_mib=32, spice_password=None, wait=True,
    spice_devices=False)``; ``spice_devices`` gives a SPICE guest audio, USB
    redirection, the vdagent port and a spiceport (lab.domain_xml).
    """

    _counter = itertools.count(1)

    def __init__(self, libvirtd: PrivateLibvirtd, image: GuestImage, pki: Pki,
                 disk_dir: Path, domain_type: str) -> None:
        self.libvirtd = libvirtd
        self.image = image
        self.pki = pki
        self.disk_dir = disk_dir
        self.domain_type = domain_type
        self.created: list[Guest] = []
        disk_dir.mkdir(parents=True, exist_ok=True)
        os.chown(disk_dir, libvirtd.account.uid, libvirtd.account.gid)

    def __call__(
        self,
        name: Optional[str] = None,
        *,
        running: bool = True,
        persistent: bool = False,
        consoles: Iterable[str] = ALL_CONSOLES,
        memory_mib: int = 32,
        spice_password: Optional[str] = None,
        wait: bool = True,
        timeout: float = 60.0,
        spice_devices: bool = False,
    ) -> Guest:
        if not running and not persistent:
            raise ValueError("a transient guest only exists while it runs")
        consoles = frozenset(consoles)
        number = next(self._counter)
        name = name or f"lab{number}-{secrets.token_hex(3)}"
        if "spice" in consoles and spice_password is None:
            spice_password = secrets.token_urlsafe(12)
        listen = "127.0.0.1"
        spec = GuestSpec(
            name=name,
            uuid=str(uuidlib.uuid4()),
            disk=self.image.copy_to(self.disk_dir / f"{name}.img", self.libvirtd.account),
            domain_type=self.domain_type,
            memory_mib=memory_mib,
            consoles=consoles,
            spice_password=spice_password if "spice" in consoles else None,
            tls_serial_port=free_port(listen) if "tls-serial" in consoles else None,
            listen=listen,
            spice_devices=spice_devices,
        )
        guest = Guest(
            name=name,
            uuid=spec.uuid,
            spec=spec,
            persistent=persistent,
            libvirtd=self.libvirtd,
            pki=self.pki,
            spice_password=spec.spice_password,
            tls_serial_port=spec.tls_serial_port,
            consoles=consoles,
        )
        self.created.append(guest)
        conn = self.libvirtd.connection()
        began = time.monotonic()
        if persistent:
            conn.defineXML(render(spec))
            if running:
                _with_port_retry(guest, lambda: guest.domain.create())
        else:
            _with_port_retry(guest, lambda: conn.createXML(render(spec), 0))
        if running:
            guest._after_start(began, wait, timeout)
        return guest

    def cleanup(self) -> None:
        """Remove every guest this factory made (best effort, never raises)."""
        if self.created and not self.libvirtd.running:
            # A test stopped the daemon and did not bring it back.
            self.libvirtd.start()
        while self.created:
            guest = self.created.pop()
            try:
                guest.remove()
            except Exception:
                pass
