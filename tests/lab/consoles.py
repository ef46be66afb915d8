"""Enabling a lab guest's consoles: with libvirt directly, or with resolveradm's own code.

``enable`` does what ``resolveradm enable`` does (a libvirt secret per
console whose value is the token, plus the lcp metadata naming the secret)
with nothing but the schema, so resolverd's tests do not depend on
resolveradm; ``tokens_of`` runs resolveradm's code, as proxyd's tests do.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Dict, List, Optional

import libvirt

from resolveradm import access
from resolverd import metadata

from .guests import Guest


def console_spec(console_type: str, index: int = 0, **extra) -> metadata.Console:
    """A console to enable; its secret_uuid is filled in by enable()."""
    return metadata.Console(**{"type": console_type, "secret_uuid": "", "index": index, **extra})


def enable(conn: libvirt.virConnect, guest: Guest, *consoles: metadata.Console) -> List[str]:
    """Create one secret per console, write the metadata, and return the tokens in order."""
    tokens, written = [], []
    for console in consoles:
        secret = conn.secretDefineXML(
            "<secret ephemeral='no' private='no'><description>vcp-lab</description></secret>")
        token = secrets.token_urlsafe(24)
        secret.setValue(token.encode())
        tokens.append(token)
        written.append(replace(console, secret_uuid=secret.UUIDString()))
    write_metadata(guest, metadata.render(written))
    return tokens


def write_metadata(guest: Guest, xml: Optional[str]) -> None:
    """Replace the guest's lcp metadata (None removes it), live and persistent as the domain is."""
    domain = guest.domain
    flags = (libvirt.VIR_DOMAIN_AFFECT_LIVE if domain.isActive() else 0) | \
        (libvirt.VIR_DOMAIN_AFFECT_CONFIG if domain.isPersistent() else 0)
    domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, metadata.PREFIX if xml else None,
                       metadata.NAMESPACE, flags)


def secret_of(conn: libvirt.virConnect, guest: Guest, position: int) -> libvirt.virSecret:
    """The libvirt secret holding the token of the guest's ``position``-th console."""
    consoles = metadata.parse(guest.xml())
    return conn.secretLookupByUUIDString(consoles[position].secret_uuid)


def tokens_of(conn: libvirt.virConnect, guest: Guest) -> Dict[str, str]:
    """Enable every console of ``guest`` with resolveradm's code: tokens by 'spice', 'vnc', 'serial0', ..."""
    outcome = access.enable(conn, guest.domain, access.Grant())
    named = {}
    for console in outcome.consoles:
        kind = console.console.type
        named[kind if kind in ("spice", "vnc") else f"{kind}{console.console.index}"] = console.token
    return named
