"""Where the proxy must connect for a console, worked out from a running domain's live XML.

- SPICE: the graphics ``tlsPort`` (``port`` when the console is insecure).
- VNC: the graphics ``port``; TLS happens inside RFB (VeNCrypt).
- serial/console with a TCP chardev in bind mode: its host and service, with
  TLS as the chardev's ``tls`` attribute says (the console's ``insecure``
  flag decides when the attribute is absent).
- serial/console on a pty: the console bridge of this resolverd
  (resolverd.bridge), reached with TLS and a one-use ticket.

A listen address of 0.0.0.0, :: or nothing means "every address": the proxy is
then sent to the libvirt connection's hostname.  A ``host=`` override in the
metadata wins over both (it names how the proxy reaches the hypervisor).
"""

from dataclasses import dataclass
from typing import Optional

from lxml import etree

WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


class Unroutable(Exception):
    """The console exists but the proxy has no way to reach it; the message says why."""


@dataclass(frozen=True)
class Target:
    """What the API tells the proxy about one console (the anchor's ServiceConfig, plus the bridge route)."""

    type: str  # "spice" | "vnc" | "serial"
    address: str  # host:port, IPv6 hosts in brackets
    insecure: bool
    tls_tunnel: bool
    password: Optional[str] = None
    bridge_device: Optional[str] = None  # the device alias virDomainOpenConsole opens, for pty consoles


def join_host_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def target_for(console_type: str, device: etree._Element, insecure: bool, host_override: Optional[str],
               connection_host: str, bridge_address: Optional[str]) -> Target:
    """The target of one console, given its device element (``<graphics>``, ``<serial>`` or ``<console>``)."""
    if console_type in ("spice", "vnc"):
        return _graphics_target(console_type, device, insecure, host_override, connection_host)
    if console_type in ("serial", "console"):
        return _chardev_target(device, insecure, host_override, connection_host, bridge_address)
    raise Unroutable(f"unknown console type {console_type!r}")


def _graphics_target(kind: str, graphics: etree._Element, insecure: bool, host_override: Optional[str],
                     connection_host: str) -> Target:
    port_attribute = "port" if kind == "vnc" or insecure else "tlsPort"
    port = _port(graphics.get(port_attribute))
    if port is None:
        if kind == "spice" and not insecure:
            raise Unroutable("SPICE has no TLS port (is spice_tls enabled in qemu.conf?)")
        raise Unroutable(f"{kind} graphics have no TCP port")
    host = host_override or _reachable(_graphics_listen(kind, graphics), connection_host)
    return Target(type=kind, address=join_host_port(host, port), insecure=insecure, tls_tunnel=False,
                  password=graphics.get("passwd") or None)


def _graphics_listen(kind: str, graphics: etree._Element) -> str:
    listens = graphics.findall("listen")
    if listens and listens[0].get("type") in ("socket", "none"):
        raise Unroutable(f"{kind} graphics listen on {listens[0].get('type')}, not TCP")
    if graphics.get("listen") is not None:
        return graphics.get("listen", "")
    return next((listen.get("address", "") for listen in listens if listen.get("address") is not None), "")


def _chardev_target(chardev: etree._Element, insecure: bool, host_override: Optional[str],
                    connection_host: str, bridge_address: Optional[str]) -> Target:
    source_type = chardev.get("type")
    if source_type == "pty":
        return _bridge_target(chardev, bridge_address)
    if source_type != "tcp":
        raise Unroutable(f"a chardev of type {source_type!r} cannot be proxied (only tcp and pty)")
    source = chardev.find("source")
    if source is None or source.get("mode", "connect") != "bind":
        raise Unroutable("a tcp chardev in connect mode has no listening port")
    port = _port(source.get("service"))
    if port is None:
        raise Unroutable("the tcp chardev has no service port")
    tls = source.get("tls")
    chardev_insecure = insecure if tls is None else tls == "no"
    host = host_override or _reachable(source.get("host", ""), connection_host)
    return Target(type="serial", address=join_host_port(host, port), insecure=chardev_insecure, tls_tunnel=False)


def _bridge_target(chardev: etree._Element, bridge_address: Optional[str]) -> Target:
    if bridge_address is None:
        raise Unroutable("a pty console needs the console bridge (--console-listen)")
    alias = chardev.find("alias")
    if alias is None or not alias.get("name"):
        raise Unroutable("the pty console has no device alias")
    return Target(type="serial", address=bridge_address, insecure=False, tls_tunnel=True,
                  bridge_device=alias.get("name"))


def _reachable(listen: str, connection_host: str) -> str:
    return connection_host if listen.strip() in WILDCARD_HOSTS else listen.strip()


def _port(text: Optional[str]) -> Optional[int]:
    try:
        port = int(text) if text is not None else 0
    except ValueError:
        return None
    return port if 0 < port < 65536 else None
