"""The libvirt secrets that hold console tokens: making, reading, renewing and removing them.

A secret per console, ``private='no'`` (resolverd reads the value back) and
without a usage element, as libvirt-console-proxy makes them; its
description names the console type, ordinal and domain UUID, so that a
secret left behind by a crash can still be told apart and removed.
"""

import logging
import re
import secrets
from typing import List, Optional, Tuple

import libvirt
from lxml import etree

from resolverd.logs import token_ref

log = logging.getLogger(__name__)

TOKEN_BYTES = 32  # 256 bits; 43 URL-safe characters, within SPICE's 60-byte password limit
_DESCRIPTION = "virt-console-proxy token for the {type} console {index} of domain {domain}"
_OURS = re.compile(r"virt-console-proxy token for the [a-z]+ console [0-9]+ of domain (?P<domain>[0-9a-f-]{36})")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def description(console_type: str, index: int, domain_uuid: str) -> str:
    return _DESCRIPTION.format(type=console_type, index=index, domain=domain_uuid)


def create(connection: libvirt.virConnect, console_type: str, index: int, domain_uuid: str
           ) -> Tuple[libvirt.virSecret, str]:
    """A new secret holding a fresh token; the secret and the token."""
    root = etree.Element("secret", ephemeral="no", private="no")
    etree.SubElement(root, "description").text = description(console_type, index, domain_uuid)
    secret = connection.secretDefineXML(etree.tostring(root, encoding="unicode"))
    token = new_token()
    try:
        secret.setValue(token.encode("ascii"))
    except BaseException:
        undefine_quietly(secret)
        raise
    log.debug("secret %s holds %s for the %s console %d of %s", secret.UUIDString(), token_ref(token),
              console_type, index, domain_uuid)
    return secret, token


def lookup(connection: libvirt.virConnect, secret_uuid: str) -> Optional[libvirt.virSecret]:
    """The secret, None when it does not exist."""
    try:
        return connection.secretLookupByUUIDString(secret_uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
            return None
        raise


def value(secret: libvirt.virSecret) -> str:
    return secret.value().decode("utf-8", "replace")


def renew(secret: libvirt.virSecret) -> str:
    """Give the secret a fresh token and return it; the old one is gone from libvirt at once."""
    token = new_token()
    secret.setValue(token.encode("ascii"))
    log.debug("secret %s now holds %s", secret.UUIDString(), token_ref(token))
    return token


def left_behind(connection: libvirt.virConnect, domain_uuid: str) -> List[libvirt.virSecret]:
    """Secrets this tool made for the domain, by their description."""
    found = []
    for secret in connection.listAllSecrets(0):
        try:
            match = _OURS.fullmatch(etree.fromstring(secret.XMLDesc(0).encode()).findtext("description") or "")
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
                continue
            raise
        if match is not None and match.group("domain") == domain_uuid:
            found.append(secret)
    return found


def undefine_quietly(secret: libvirt.virSecret) -> None:
    """Undefine while undoing a failed change: a failure here is logged, the first error is the one reported."""
    try:
        secret.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
            log.warning("could not remove secret %s while undoing: %s", secret.UUIDString(),
                        exc.get_error_message())
