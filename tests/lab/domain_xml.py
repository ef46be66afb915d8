"""Domain XML for a lab guest.

A small q35 machine booting the lab boot sector from a raw SATA disk, with
any subset of these consoles:

- ``spice``: ``<graphics type='spice' autoport='yes' listen='127.0.0.1'
  passwd=...>`` (qemu.conf's spice_tls gives it a TLS port);
- ``vnc``: ``<graphics type='vnc' autoport='yes' listen='127.0.0.1'>``
  (VeNCrypt x509 with client verification from qemu.conf);
- ``serial``: a pty serial on COM1 and its ``<console>``;
- ``tls-serial``: a TCP server chardev with TLS on COM2 at 127.0.0.1:PORT.

``spice_devices`` (off by default; needs the ``spice`` console) adds what
SPICE's other channels serve: an ich9 sound card on the SPICE audio backend
(the playback and record channels), a qemu-xhci controller with a spicevmc
USB redirection device (the usbredir channel), the spice vdagent's
virtio-serial port (the main channel's agent, for the clipboard: connected
only once a vdagent in the guest opens it, which the lab's boot sector
never does) and a spiceport channel (a port channel).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

#: Every console a lab guest can have.
ALL_CONSOLES: frozenset[str] = frozenset({"spice", "vnc", "serial", "tls-serial"})


@dataclass
class GuestSpec:
    """What to put in a lab guest's domain XML."""

    name: str
    uuid: str
    disk: Path
    domain_type: str = "kvm"
    memory_mib: int = 32
    consoles: frozenset[str] = field(default_factory=lambda: ALL_CONSOLES)
    spice_password: Optional[str] = None
    tls_serial_port: Optional[int] = None
    listen: str = "127.0.0.1"
    video: str = "vga"
    spice_devices: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.consoles) - ALL_CONSOLES
        if unknown:
            raise ValueError(f"unknown consoles {sorted(unknown)}; known: {sorted(ALL_CONSOLES)}")
        if "tls-serial" in self.consoles and not self.tls_serial_port:
            raise ValueError("a tls-serial console needs tls_serial_port")
        if self.spice_devices and "spice" not in self.consoles:
            raise ValueError("spice_devices needs the spice console")


def _sub(parent: ET.Element, tag: str, text: Optional[str] = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def render(spec: GuestSpec) -> str:
    """The domain XML for ``spec``."""
    domain = ET.Element("domain", type=spec.domain_type)
    _sub(domain, "name", spec.name)
    _sub(domain, "uuid", spec.uuid)
    _sub(domain, "title", "virt-console-proxy test lab guest")
    _sub(domain, "memory", str(spec.memory_mib), unit="MiB")
    _sub(domain, "vcpu", "1")
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_, "boot", dev="hd")
    # No <cpu mode='host-passthrough'/>: under nested KVM (Firecracker)
    # QEMU 7.2 aborts setting MSR 0x10a; the default model boots everywhere.
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")

    devices = _sub(domain, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="raw")
    _sub(disk, "source", file=str(spec.disk))
    _sub(disk, "target", dev="sda", bus="sata")

    if "serial" in spec.consoles:
        serial = _sub(devices, "serial", type="pty")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port="0")
    if "tls-serial" in spec.consoles:
        serial = _sub(devices, "serial", type="tcp")
        _sub(serial, "source", mode="bind", host=spec.listen,
             service=str(spec.tls_serial_port), tls="yes")
        _sub(serial, "protocol", type="raw")
        _sub(serial, "target", port="1")

    if "spice" in spec.consoles:
        attrs = {"type": "spice", "autoport": "yes", "listen": spec.listen}
        if spec.spice_password is not None:
            attrs["passwd"] = spec.spice_password
        graphics = _sub(devices, "graphics", **attrs)
        _sub(graphics, "listen", type="address", address=spec.listen)
    if "vnc" in spec.consoles:
        graphics = _sub(devices, "graphics", type="vnc", autoport="yes", listen=spec.listen)
        _sub(graphics, "listen", type="address", address=spec.listen)

    video = _sub(devices, "video")
    _sub(video, "model", type=spec.video)
    if spec.spice_devices:
        _spice_devices(devices)
    else:
        _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")


#: The spiceport channel's name (spice-glib's PortChannel ``port-name``).
SPICE_PORT_NAME = "org.virt-console-proxy.lab.0"


def _spice_devices(devices: ET.Element) -> None:
    """Audio, USB redirection, the vdagent port and a spiceport, all served by SPICE channels."""
    # libvirt 9.0: the sound card names its audio backend; type='spice' feeds SPICE's playback/record.
    sound = _sub(devices, "sound", model="ich9")
    _sub(sound, "audio", id="1")
    _sub(devices, "audio", id="1", type="spice")
    _sub(devices, "controller", type="usb", model="qemu-xhci")
    _sub(devices, "redirdev", bus="usb", type="spicevmc")
    agent = _sub(devices, "channel", type="spicevmc")
    _sub(agent, "target", type="virtio", name="com.redhat.spice.0")
    port = _sub(devices, "channel", type="spiceport")
    _sub(port, "source", channel=SPICE_PORT_NAME)
    _sub(port, "target", type="virtio", name=SPICE_PORT_NAME)
