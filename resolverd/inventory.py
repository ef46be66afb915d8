"""Reading one domain's consoles from libvirt into a DomainRecord for the index.

One ``XMLDesc(VIR_DOMAIN_XML_SECURE)`` per domain gives the metadata, the
devices with the ports QEMU was given, the SPICE/VNC passwords, and whether the
domain runs (the live XML carries an ``id``); then one secret read per console.
"""

import logging
from typing import Callable, Dict, List, Optional

import libvirt
from lxml import etree

from resolverd import metadata
from resolverd.index import DomainRecord, IndexedConsole
from resolverd.targets import Target, Unroutable, target_for

log = logging.getLogger(__name__)

SecretValue = Callable[[str], Optional[bytes]]


def secret_reader(connection: libvirt.virConnect, known: Optional[Dict[str, libvirt.virSecret]] = None
                  ) -> SecretValue:
    """Reads secret values by UUID; ``known`` (from listAllSecrets) saves a look-up per secret in a full resync."""
    def value(secret_uuid: str) -> Optional[bytes]:
        try:
            secret = known[secret_uuid] if known is not None and secret_uuid in known \
                else connection.secretLookupByUUIDString(secret_uuid)
            return secret.value()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_SECRET, libvirt.VIR_ERR_INVALID_SECRET):
                log.warning("secret %s cannot be read: %s", secret_uuid, exc.get_error_message())
                return None
            raise
    return value


def read_domain(uri: str, domain_xml: str, connection_host: str, bridge_address: Optional[str],
                secret_value: SecretValue) -> Optional[DomainRecord]:
    """The record of a domain, or None when it carries no (valid) console metadata."""
    tree = etree.fromstring(domain_xml.encode())
    name, domain_uuid = tree.findtext("name", ""), tree.findtext("uuid", "")
    try:
        consoles = metadata.parse(domain_xml)
    except metadata.MetadataError as exc:
        log.warning("domain %s (%s): console metadata ignored: %s", name, uri, exc)
        return None
    if not consoles:
        return None
    running = tree.get("id") is not None
    devices = metadata.console_devices(tree)
    indexed: List[IndexedConsole] = []
    for console in consoles:
        token = secret_value(console.secret_uuid)
        if not token:
            log.warning("domain %s (%s): %s console %d skipped: its secret %s has no value", name, uri,
                        console.type, console.index, console.secret_uuid)
            continue
        target: Optional[Target] = None
        unroutable: Optional[str] = None
        if running:
            device = devices.get((console.type, console.index))
            try:
                if device is None:
                    raise Unroutable(f"the domain has no {console.type} console number {console.index}")
                target = target_for(console.type, device, console.insecure, console.host, connection_host,
                                    bridge_address)
            except Unroutable as exc:
                unroutable = str(exc)
        indexed.append(IndexedConsole(
            token=token, uri=uri, domain_uuid=domain_uuid, domain_name=name, console_type=console.type,
            index=console.index, secret_uuid=console.secret_uuid, once=console.once, expires=console.expires,
            running=running, target=target, unroutable=unroutable))
    return DomainRecord(uri=uri, domain_uuid=domain_uuid, domain_name=name, running=running,
                        secret_uuids=frozenset(c.secret_uuid for c in consoles), consoles=tuple(indexed))
