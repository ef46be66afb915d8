"""The lcp console metadata: the one definition of what resolveradm writes and resolverd reads.

In a domain's XML it reads::

    <metadata>
      <lcp:consoles xmlns:lcp="http://libvirt.org/schemas/console-proxy/1.0">
        <lcp:console type="spice" token="SECRET-UUID" port="0" insecure="no"/>
        <lcp:console type="serial" token="SECRET-UUID" port="1" insecure="no" once="yes"
                     expires="2026-01-01T12:00:00Z"/>
      </lcp:consoles>
    </metadata>

``token`` is the UUID of the libvirt secret whose value is the token a tenant
presents; ``port`` is the console's ordinal among the domain's consoles of its
type (``index`` is read as a synonym: libvirt-console-proxy documents it,
although its tool writes ``port``).  ``host`` and ``insecure`` come from
libvirt-console-proxy; ``once`` and ``expires`` are our extensions, extra
attributes that older readers ignore.

libvirt's virDomainSetMetadata wants the element without prefix and namespace
declaration (it adds both, with the key ``lcp``), and virDomainGetMetadata
hands it back the same way, so :func:`render` writes that form and
:func:`parse` reads it as well as a whole domain XML.

The devices a console ordinal refers to are found by :func:`consoles_of`, the
walk both sides share.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Dict, Iterable, List, Optional, Tuple, Union

from lxml import etree

NAMESPACE = "http://libvirt.org/schemas/console-proxy/1.0"
PREFIX = "lcp"
CONSOLE_TYPES = ("spice", "vnc", "serial", "console")

_CONSOLES = "consoles"
_CONSOLE = "console"
_ORDINAL = re.compile(r"[0-9]{1,9}")
_MAX_ORDINAL = 999_999_999
# libvirt's own reading of a UUID: 32 hex digits, dashes optional at the usual places.
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_HOST = re.compile(r"[A-Za-z0-9._:%\[\]-]{1,255}")
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)


class MetadataError(ValueError):
    """Console metadata (or domain XML) that cannot be read; the message says what is wrong."""


@dataclass(frozen=True)
class Console:
    """One ``<lcp:console>``: which console of the domain, and the secret holding its token."""

    type: str  # one of CONSOLE_TYPES
    secret_uuid: str  # the token= attribute
    index: int  # the port= (or index=) attribute
    host: Optional[str] = None
    insecure: bool = False
    once: bool = False
    expires: Optional[datetime] = None  # aware, UTC


def parse(xml: str) -> List[Console]:
    """The consoles of an lcp ``consoles`` element, or of a domain XML (none when it has no such element).

    The element may come from virDomainGetMetadata (no prefix, no namespace)
    or carry the lcp namespace, as it does inside a domain's ``<metadata>``.
    """
    root = _parse_xml(xml)
    if root.tag == "domain":
        element = root.find(f"metadata/{{{NAMESPACE}}}{_CONSOLES}")
        if element is None:
            return []
    elif root.tag in (_CONSOLES, f"{{{NAMESPACE}}}{_CONSOLES}"):
        element = root
    else:
        raise MetadataError(f"expected an lcp <{_CONSOLES}> element or a domain XML, not <{root.tag}>")
    namespace = etree.QName(element).namespace
    console_tag = f"{{{namespace}}}{_CONSOLE}" if namespace else _CONSOLE
    consoles = []
    for position, child in enumerate(element, start=1):
        if not isinstance(child.tag, str):
            raise MetadataError(f"unexpected content in <{_CONSOLES}>: {child!r}")
        if child.tag != console_tag:
            raise MetadataError(f"unexpected element <{etree.QName(child).localname}> in <{_CONSOLES}>")
        consoles.append(_console(child, position))
    return consoles


def render(consoles: Iterable[Console]) -> str:
    """The ``consoles`` element to give virDomainSetMetadata (key PREFIX, uri NAMESPACE)."""
    root = etree.Element(_CONSOLES)
    for console in consoles:
        _check(console)
        element = etree.SubElement(root, _CONSOLE)
        element.set("type", console.type)
        element.set("token", console.secret_uuid)
        element.set("port", str(console.index))
        if console.host:
            element.set("host", console.host)
        element.set("insecure", _yes_no(console.insecure))
        if console.once:
            element.set("once", "yes")
        if console.expires is not None:
            element.set("expires", format_timestamp(console.expires))
    return etree.tostring(root, encoding="unicode", pretty_print=True).rstrip("\n")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time (offset required) as an aware datetime in UTC."""
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise MetadataError(f"{text!r} is not an RFC 3339 time such as 2026-01-31T18:00:00Z")
    year, month, day, hour, minute, second, fraction, zulu, sign, offset_hours, offset_minutes = match.groups()
    if zulu:
        zone = timezone.utc
    else:
        offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        if offset >= timedelta(hours=24):
            raise MetadataError(f"{text!r} has an offset of 24 hours or more")
        zone = timezone(-offset if sign == "-" else offset)
    microseconds = int((fraction or "0").ljust(6, "0")[:6])
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), microseconds,
                          tzinfo=zone)
    except ValueError as exc:
        raise MetadataError(f"{text!r} is not a valid time: {exc}") from None
    return moment.astimezone(timezone.utc)


def valid_host(text: str) -> bool:
    """Whether ``text`` may be a console's host= (a host name or IP address, as the proxy connects to it)."""
    return bool(_HOST.fullmatch(text))


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, e.g. 2026-01-31T18:00:00Z."""
    if moment.tzinfo is None:
        raise MetadataError("a console expiry needs a time zone")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the domain's consoles ----------------------------------------------------------------------

ConsoleDevice = Tuple[str, int, etree._Element]  # (console type, ordinal, device element)


def consoles_of(domain: Union[str, etree._Element]) -> List[ConsoleDevice]:
    """Every console of a domain XML, in the order resolveradm numbers and lists them.

    Each SPICE ``<graphics>``, then each VNC ``<graphics>``, each ``<serial>``
    and each ``<console>``, whatever their source type; the ordinal counts
    the devices of one type in document order.
    """
    root = _parse_xml(domain) if isinstance(domain, str) else domain
    if root.tag != "domain":
        raise MetadataError(f"expected a domain XML, not <{root.tag}>")
    found: List[ConsoleDevice] = []
    for console_type, path in (("spice", "devices/graphics[@type='spice']"),
                               ("vnc", "devices/graphics[@type='vnc']"),
                               ("serial", "devices/serial"),
                               ("console", "devices/console")):
        found += [(console_type, ordinal, device) for ordinal, device in enumerate(root.findall(path))]
    return found


def console_devices(domain: Union[str, etree._Element]) -> Dict[Tuple[str, int], etree._Element]:
    """The device element of each console, keyed by (console type, ordinal)."""
    return {(console_type, ordinal): device for console_type, ordinal, device in consoles_of(domain)}


# -- helpers ------------------------------------------------------------------------------------

def _parse_xml(xml: str) -> etree._Element:
    if not isinstance(xml, str):
        raise MetadataError(f"expected XML text, got {type(xml).__name__}")
    try:
        return etree.fromstring(xml.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise MetadataError(f"malformed XML: {exc}") from None


def _console(element: etree._Element, position: int) -> Console:
    where = f"console #{position}"
    console_type = element.get("type")
    if console_type is None:
        raise MetadataError(f"{where} has no type attribute")
    if console_type not in CONSOLE_TYPES:
        raise MetadataError(f"{where}: type {console_type!r} is not one of {', '.join(CONSOLE_TYPES)}")
    secret_uuid = element.get("token")
    if secret_uuid is None:
        raise MetadataError(f"{where} has no token attribute")
    if not _UUID.fullmatch(secret_uuid):
        raise MetadataError(f"{where}: token {secret_uuid!r} is not a secret UUID")
    expires = element.get("expires")
    try:
        expiry = parse_timestamp(expires) if expires is not None else None
    except MetadataError as exc:
        raise MetadataError(f"{where}: expires: {exc}") from None
    return Console(type=console_type, secret_uuid=secret_uuid, index=_index(element, where),
                   host=element.get("host") or None, insecure=_flag(element, "insecure", where),
                   once=_flag(element, "once", where), expires=expiry)


def _index(element: etree._Element, where: str) -> int:
    values = {}
    for name in ("port", "index"):
        text = element.get(name)
        if text is not None:
            if not _ORDINAL.fullmatch(text):
                raise MetadataError(f"{where}: {name} {text!r} is not a console number")
            values[name] = int(text)
    if len(set(values.values())) > 1:
        raise MetadataError(f"{where}: port {values['port']} and index {values['index']} disagree")
    return next(iter(values.values()), 0)


def _flag(element: etree._Element, name: str, where: str) -> bool:
    text = element.get(name)
    if text is None or text == "no":
        return False
    if text == "yes":
        return True
    raise MetadataError(f"{where}: {name} must be 'yes' or 'no', not {text!r}")


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _check(console: Console) -> None:
    if console.type not in CONSOLE_TYPES:
        raise MetadataError(f"console type {console.type!r} is not one of {', '.join(CONSOLE_TYPES)}")
    if not isinstance(console.secret_uuid, str) or not _UUID.fullmatch(console.secret_uuid):
        raise MetadataError(f"{console.secret_uuid!r} is not a secret UUID")
    if type(console.index) is not int or not 0 <= console.index <= _MAX_ORDINAL:
        raise MetadataError(f"console number {console.index!r} is not a whole number from 0 to {_MAX_ORDINAL}")
    if console.host is not None and not valid_host(console.host):
        raise MetadataError(f"host {console.host!r} is not a host name or IP address")
    if console.expires is not None and console.expires.tzinfo is None:
        raise MetadataError("a console expiry needs a time zone")
