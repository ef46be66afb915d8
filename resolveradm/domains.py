"""Connecting to libvirt, finding a domain, and reading and writing its lcp metadata.

Metadata goes where the domain has a definition: the live one while it runs,
the persistent one when it is defined (a transient running domain: live only;
a shut-off one: config only; a running persistent one: both), so it survives
a restart and resolverd sees it at once.
"""

import logging
import re
from dataclasses import dataclass
from typing import List, Optional

import libvirt

from resolverd.metadata import NAMESPACE, PREFIX
from resolveradm.errors import DomainNotFound, LibvirtUnavailable

log = logging.getLogger(__name__)

# libvirt-console-proxy's test for "this looks like a UUID", kept so a domain is found the same way.
_UUID = re.compile(r"[a-fA-F0-9]{8}-?[a-fA-F0-9]{4}-?[a-fA-F0-9]{4}-?[a-fA-F0-9]{4}-?[a-fA-F0-9]{12}")
_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down", libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


@dataclass(frozen=True)
class DomainFacts:
    name: str
    uuid: str
    state: str
    active: bool
    persistent: bool


def connect(uri: str) -> libvirt.virConnect:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnavailable(f"cannot connect to libvirt at {uri}: {exc.get_error_message()}") from None


def find(connection: libvirt.virConnect, reference: str) -> libvirt.virDomain:
    """The domain named by UUID, numeric id or name, tried in that order."""
    lookups = []
    if _UUID.fullmatch(reference):
        lookups.append(connection.lookupByUUIDString)
    if reference.isdigit():
        lookups.append(lambda text: connection.lookupByID(int(text)))
    lookups.append(connection.lookupByName)
    for lookup in lookups:
        try:
            return lookup(reference)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    raise DomainNotFound(f"no domain {reference!r} at {connection.getURI()}")


def facts(domain: libvirt.virDomain) -> DomainFacts:
    state = domain.state()[0]
    return DomainFacts(name=domain.name(), uuid=domain.UUIDString(), state=_STATES.get(state, "unknown"),
                       active=domain.isActive() == 1, persistent=domain.isPersistent() == 1)


def affected_definitions(domain: libvirt.virDomain) -> int:
    """AFFECT_LIVE when it runs, AFFECT_CONFIG when it is defined: every definition the domain has."""
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if domain.isActive() == 1 else 0
    if domain.isPersistent() == 1:
        flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    return flags


def read_metadata(domain: libvirt.virDomain, flags: int = libvirt.VIR_DOMAIN_AFFECT_CURRENT) -> Optional[str]:
    """The lcp element of one definition (the current one by default), None when there is none."""
    try:
        return domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE, flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise


def read_every_metadata(domain: libvirt.virDomain) -> List[str]:
    """The lcp element of the live and of the persistent definition, those that exist and have one."""
    found: List[str] = []
    for flag in (libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG):
        if affected_definitions(domain) & flag:
            text = read_metadata(domain, flag)
            if text is not None:
                found.append(text)
    return found


def write_metadata(domain: libvirt.virDomain, xml: Optional[str]) -> None:
    """Store ``xml`` as the lcp element of every definition the domain has; None removes it."""
    flags = affected_definitions(domain)
    log.debug("%s lcp metadata of %s (flags %d)", "writing" if xml else "removing", domain.UUIDString(), flags)
    if xml is None:
        domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, NAMESPACE, flags)
    else:
        domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, PREFIX, NAMESPACE, flags)


def current_xml(domain: libvirt.virDomain) -> str:
    """The live XML of a running domain, else its persistent XML."""
    return domain.XMLDesc(0)
