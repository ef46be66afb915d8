"""Where the demo listens and the names its URLs and certificates carry."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Optional

from resolveradm.pki import host_names

from ..pki import LOCAL_SANS
from ..ports import bindable, free_port

#: An address of TEST-NET-1: "connecting" a UDP socket to it sends nothing
#: but tells which local address the default route would use.
_OUTSIDE = ("192.0.2.1", 9)


@dataclass(frozen=True)
class Listen:
    """An ADDR:PORT to listen on; port 0 means any free port."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Listen":
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"expected ADDR:PORT, got {text!r}")
        ipaddress.ip_address(host)
        return cls(host, int(port))

    def resolved(self) -> "Listen":
        """This address with a port nobody listens on: the one asked for if free, else any free one."""
        if self.port and bindable(self.host, self.port):
            return self
        return Listen(self.host, free_port(self.host))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def outward_address() -> Optional[str]:
    """The local address of the default route (None without one); no packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_OUTSIDE)
        except OSError:
            return None
        return probe.getsockname()[0]


def default_public_host(listen: Listen) -> str:
    """The host name the printed URLs use when none is given."""
    if not ipaddress.ip_address(listen.host).is_unspecified:
        return listen.host
    return outward_address() or socket.getfqdn()


def certificate_names(public_host: str, listen: Listen) -> tuple[str, ...]:
    """Every name a browser may reach the demo by: the URLs' host, this machine's names and addresses."""
    names = [public_host, *host_names(), *LOCAL_SANS]
    address = outward_address()
    if address:
        names.append(address)
    if not ipaddress.ip_address(listen.host).is_unspecified:
        names.append(listen.host)
    return tuple(dict.fromkeys(names))
