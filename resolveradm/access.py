"""What resolveradm does to a domain's console access: enable, disable, show, list and rotate.

Every change is all or nothing.  ``enable`` makes the secrets first and
writes the metadata last; if anything fails, or the command is interrupted,
the secrets it made are undefined again and the metadata it may have half
written (live but not config) is put back.  ``rotate`` puts the old token
values back when a later step fails.  ``disable`` undefines the secrets first,
so the tokens stop working at once, then removes the metadata; whatever stops
it half way, running it again finishes the job.
"""

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Dict, List, Optional, Sequence, Tuple

import libvirt

from resolverd import metadata
from resolverd.metadata import Console, MetadataError
from resolveradm import domains, tokens
from resolveradm.domains import DomainFacts
from resolveradm.errors import Inconsistent, NoConsoles, NotEnabled
from resolveradm.expiry import Expiry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grant:
    """How the proxy may use the consoles enable gives it (the optional metadata attributes)."""

    host: Optional[str] = None
    insecure: bool = False
    once: bool = False
    expires: Optional[datetime] = None


@dataclass(frozen=True)
class ConsoleAccess:
    console: Console
    token: Optional[str]  # None when the secret the metadata names no longer exists


@dataclass(frozen=True)
class Outcome:
    domain: DomainFacts
    changed: bool
    message: str
    consoles: Tuple[ConsoleAccess, ...] = ()
    removed_secrets: Tuple[str, ...] = ()

    @property
    def missing(self) -> Tuple[ConsoleAccess, ...]:
        return tuple(access for access in self.consoles if access.token is None)


@dataclass(frozen=True)
class Listed:
    domain: DomainFacts
    consoles: Tuple[Console, ...]
    problem: Optional[str] = None  # why the metadata could not be read


def enable(connection: libvirt.virConnect, domain: libvirt.virDomain, grant: Grant, add: bool = False) -> Outcome:
    """A secret and a metadata entry for every console; with ``add``, for those not enabled yet."""
    facts = domains.facts(domain)
    previous = domains.read_metadata(domain)
    existing = _parse(previous, facts) if previous is not None else []
    if existing and not add:
        return Outcome(facts, False, "console access is already enabled; nothing changed "
                                     "(enable --add picks up consoles added since)",
                       _with_tokens(connection, existing))
    enabled = {(console.type, console.index) for console in existing}
    devices = [(kind, index) for kind, index, _ in metadata.consoles_of(domains.current_xml(domain))
               if (kind, index) not in enabled]
    if not devices:
        if existing:
            return Outcome(facts, False, "no console was added since access was enabled; nothing changed",
                           _with_tokens(connection, existing))
        raise NoConsoles(f"domain {facts.name} has no SPICE or VNC graphics, serial or console device")
    created: List[libvirt.virSecret] = []
    added: List[ConsoleAccess] = []
    try:
        for kind, index in devices:
            secret, token = tokens.create(connection, kind, index, facts.uuid)
            created.append(secret)
            added.append(ConsoleAccess(Console(type=kind, secret_uuid=secret.UUIDString(), index=index,
                                               host=grant.host, insecure=grant.insecure, once=grant.once,
                                               expires=grant.expires), token))
        _write_metadata(domain, metadata.render(existing + [access.console for access in added]), previous)
    except BaseException:
        for secret in reversed(created):
            tokens.undefine_quietly(secret)
        raise
    message = f"{_count(added)} added" if existing else "console access enabled"
    return Outcome(facts, True, message, _with_tokens(connection, existing) + tuple(added))


def disable(connection: libvirt.virConnect, domain: libvirt.virDomain) -> Outcome:
    """Undefine the console secrets (those the metadata names and any this tool left behind), drop the metadata."""
    facts = domains.facts(domain)
    texts = domains.read_every_metadata(domain)
    named: List[str] = []
    unreadable = ""
    for text in texts:
        try:
            named += [console.secret_uuid for console in metadata.parse(text)]
        except MetadataError as exc:
            unreadable = f" (its metadata was malformed: {exc})"
    doomed: Dict[str, libvirt.virSecret] = {}
    for secret_uuid in named:
        secret = tokens.lookup(connection, secret_uuid)
        if secret is not None:
            doomed[secret.UUIDString()] = secret
    for secret in tokens.left_behind(connection, facts.uuid):
        doomed.setdefault(secret.UUIDString(), secret)
    if not texts and not doomed:
        return Outcome(facts, False, "console access is not enabled; nothing to do")
    for secret_uuid, secret in doomed.items():
        try:
            secret.undefine()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
                raise
        log.debug("secret %s undefined", secret_uuid)
    if texts:
        domains.write_metadata(domain, None)
    return Outcome(facts, True, f"console access disabled, {len(doomed)} secret(s) removed{unreadable}",
                   removed_secrets=tuple(doomed))


def show(connection: libvirt.virConnect, domain: libvirt.virDomain) -> Outcome:
    facts = domains.facts(domain)
    consoles = _enabled_consoles(domains.read_metadata(domain), facts)
    return Outcome(facts, False, "console access is enabled", _with_tokens(connection, consoles))


def rotate(connection: libvirt.virConnect, domain: libvirt.virDomain, console_type: Optional[str] = None,
           index: Optional[int] = None, once: bool = False, expiry: Optional[Expiry] = None) -> Outcome:
    """New token values for the selected consoles; ``once``/``expiry`` also change their attributes."""
    facts = domains.facts(domain)
    previous = domains.read_metadata(domain)
    consoles = _enabled_consoles(previous, facts)
    selected = [console for console in consoles
                if (console_type is None or console.type == console_type) and (index is None or console.index == index)]
    if not selected:
        wanted = " ".join(part for part in (console_type, None if index is None else str(index)) if part)
        raise NoConsoles(f"domain {facts.name} has no enabled {wanted} console")
    secrets: Dict[str, libvirt.virSecret] = {}
    for console in selected:
        secret = tokens.lookup(connection, console.secret_uuid)
        if secret is None:
            raise Inconsistent(f"the secret {console.secret_uuid} of the {console.type} console {console.index} of "
                               f"domain {facts.name} no longer exists; 'disable' then 'enable' makes new ones")
        secrets[console.secret_uuid] = secret
    old_values = {secret_uuid: secret.value() for secret_uuid, secret in secrets.items()}
    changed_attributes = once or expiry is not None
    updated = [_restricted(console, once, expiry) if console in selected and changed_attributes else console
               for console in consoles]
    renewed: Dict[str, str] = {}
    try:
        for secret_uuid, secret in secrets.items():
            renewed[secret_uuid] = tokens.renew(secret)
        if changed_attributes:
            _write_metadata(domain, metadata.render(updated), previous)
    except BaseException:
        for secret_uuid in renewed:
            _put_back(secrets[secret_uuid], old_values[secret_uuid])
        raise
    accesses = tuple(ConsoleAccess(console, renewed[console.secret_uuid]) for console in updated
                     if console.secret_uuid in renewed)
    return Outcome(facts, True, f"new tokens for {_count(accesses)}", accesses)


def list_enabled(connection: libvirt.virConnect) -> List[Listed]:
    """Every domain of the connection whose current definition carries lcp metadata, by name."""
    listed = []
    for domain in connection.listAllDomains(0):
        try:
            text = domains.read_metadata(domain)
            if text is None:
                continue
            facts = domains.facts(domain)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # undefined while we were listing
            raise
        try:
            listed.append(Listed(facts, tuple(metadata.parse(text))))
        except MetadataError as exc:
            listed.append(Listed(facts, (), f"malformed console metadata: {exc}"))
    return sorted(listed, key=lambda entry: (entry.domain.name, entry.domain.uuid))


# -- helpers ------------------------------------------------------------------------------------

def _parse(text: str, facts: DomainFacts) -> List[Console]:
    try:
        return metadata.parse(text)
    except MetadataError as exc:
        raise Inconsistent(f"the console metadata of domain {facts.name} is malformed ({exc}); "
                           f"'disable' removes it") from None


def _enabled_consoles(text: Optional[str], facts: DomainFacts) -> List[Console]:
    consoles = _parse(text, facts) if text is not None else []
    if not consoles:
        raise NotEnabled(f"console access to domain {facts.name} is not enabled")
    return consoles


def _with_tokens(connection: libvirt.virConnect, consoles: Sequence[Console]) -> Tuple[ConsoleAccess, ...]:
    values: Dict[str, Optional[str]] = {}
    for console in consoles:
        if console.secret_uuid not in values:
            secret = tokens.lookup(connection, console.secret_uuid)
            values[console.secret_uuid] = tokens.value(secret) if secret is not None else None
    return tuple(ConsoleAccess(console, values[console.secret_uuid]) for console in consoles)


def _write_metadata(domain: libvirt.virDomain, xml: str, previous: Optional[str]) -> None:
    """Write, and on failure put the previous element back (a live+config write may stop half way)."""
    try:
        domains.write_metadata(domain, xml)
    except BaseException:
        try:
            domains.write_metadata(domain, previous)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                log.warning("could not put the previous console metadata of %s back: %s", domain.UUIDString(),
                            exc.get_error_message())
        raise


def _put_back(secret: libvirt.virSecret, old_value: bytes) -> None:
    try:
        secret.setValue(old_value)
    except libvirt.libvirtError as exc:
        log.warning("could not put the previous token of secret %s back: %s", secret.UUIDString(),
                    exc.get_error_message())


def _restricted(console: Console, once: bool, expiry: Optional[Expiry]) -> Console:
    return replace(console, once=console.once or once, expires=expiry.at if expiry is not None else console.expires)


def _count(consoles: Sequence[object]) -> str:
    return f"{len(consoles)} console{'' if len(consoles) == 1 else 's'}"
