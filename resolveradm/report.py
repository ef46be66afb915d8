"""How resolveradm prints what it did: text for people, ``--json`` for programs.

JSON of enable, show, rotate and disable::

    {"domain": {"name", "uuid", "state", "active", "persistent"},
     "changed": bool, "message": str, "removedSecrets": [uuid, ...],
     "consoles": [{"type", "index", "token", "secretUuid", "host", "insecure", "once",
                   "expires", "url", "remoteViewer"}, ...]}

``token`` is null when the console's secret no longer exists; ``url`` and
``remoteViewer`` are null without --proxy-url (and ``remoteViewer`` for
anything but SPICE); ``expires`` is RFC 3339 UTC or null.  JSON of list::

    {"domains": [{"domain": {...}, "consoles": [{"type", "index", "secretUuid", "host",
                  "insecure", "once", "expires"}, ...], "problem": str or null}, ...]}
"""

import json
from dataclasses import asdict
from typing import Any, Dict, List, Optional

from resolverd.metadata import Console, format_timestamp
from resolveradm.access import ConsoleAccess, Listed, Outcome
from resolveradm.domains import DomainFacts
from resolveradm.urls import ProxyUrl, remote_viewer_command, websocket_url


def outcome_json(outcome: Outcome, proxy: Optional[ProxyUrl]) -> str:
    document = {
        "domain": asdict(outcome.domain),
        "changed": outcome.changed,
        "message": outcome.message,
        "removedSecrets": list(outcome.removed_secrets),
        "consoles": [_access_json(access, proxy) for access in outcome.consoles],
    }
    return json.dumps(document, indent=2)


def outcome_text(outcome: Outcome, proxy: Optional[ProxyUrl]) -> str:
    lines = [f"{_domain_line(outcome.domain)}: {outcome.message}"]
    for access in outcome.consoles:
        console = access.console
        lines.append(f"  {console.type} {console.index}: token {access.token or '(missing: its secret is gone)'}")
        lines.append(f"    {_attributes(console)}")
        if proxy is not None and access.token is not None:
            lines.append(f"    url: {websocket_url(proxy, access.token)}")
            viewer = remote_viewer_command(console.type, proxy, access.token)
            if viewer is not None:
                lines.append(f"    viewer: {viewer}")
    return "\n".join(lines)


def listing_json(listed: List[Listed]) -> str:
    return json.dumps({"domains": [
        {"domain": asdict(entry.domain), "consoles": [_console_json(console) for console in entry.consoles],
         "problem": entry.problem}
        for entry in listed]}, indent=2)


def listing_text(listed: List[Listed]) -> str:
    if not listed:
        return "No domain has console access enabled."
    rows = [("NAME", "UUID", "STATE", "CONSOLES")]
    for entry in listed:
        consoles = ", ".join(f"{console.type} {console.index}" for console in entry.consoles)
        rows.append((entry.domain.name, entry.domain.uuid, entry.domain.state, entry.problem or consoles))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows)


def _domain_line(domain: DomainFacts) -> str:
    kind = "persistent" if domain.persistent else "transient"
    return f"domain {domain.name} ({domain.uuid}, {domain.state}, {kind})"


def _attributes(console: Console) -> str:
    parts = [f"secret {console.secret_uuid}"]
    if console.host:
        parts.append(f"host {console.host}")
    parts.append("insecure" if console.insecure else "TLS to the hypervisor")
    if console.once:
        parts.append("one-time")
    parts.append(f"expires {format_timestamp(console.expires)}" if console.expires else "no expiry")
    return ", ".join(parts)


def _console_json(console: Console) -> Dict[str, Any]:
    return {
        "type": console.type, "index": console.index, "secretUuid": console.secret_uuid, "host": console.host,
        "insecure": console.insecure, "once": console.once,
        "expires": format_timestamp(console.expires) if console.expires else None,
    }


def _access_json(access: ConsoleAccess, proxy: Optional[ProxyUrl]) -> Dict[str, Any]:
    reachable = proxy is not None and access.token is not None
    document: Dict[str, Any] = {"type": access.console.type, "index": access.console.index, "token": access.token}
    document.update({key: value for key, value in _console_json(access.console).items() if key not in document})
    document["url"] = websocket_url(proxy, access.token) if reachable else None
    document["remoteViewer"] = remote_viewer_command(access.console.type, proxy, access.token) if reachable else None
    return document
