"""Which caps the proxy announces to the client, and whether the relay can stay byte-transparent.

Each SPICE peer picks the mini header from the *other* side's caps
(spice-server from the client's link message, spice-gtk from the server's
reply) and uses it both ways.  The relay copies bytes without reframing, so
the tenant's leg and QEMU's leg must agree on it: both use the mini header
exactly when the client and QEMU both support it, and the proxy must
announce it on both legs accordingly.
"""

from __future__ import annotations

from typing import Tuple

from .constants import ChannelType, CommonCap, MainCap
from .errors import HeaderModeMismatch
from .messages import Caps, LinkMess, LinkReply, caps_from_bits, has_cap, set_cap


def mirror_reply_caps(client: LinkMess, backend_reply: LinkReply) -> Tuple[Caps, Caps]:
    """QEMU's real caps, for answering the client once QEMU has replied."""
    mini = client.mini_header and backend_reply.mini_header
    return set_cap(backend_reply.common_caps, CommonCap.MINI_HEADER, mini), backend_reply.channel_caps


def reply_first_caps(client: LinkMess) -> Tuple[Caps, Caps]:
    """Caps for answering before QEMU is known (a main channel whose token is the ticket).

    They claim nothing of the hypervisor's: no channel caps, and the mini
    header only when the client has it (every QEMU of the last decade does;
    ``relay_header_mode`` catches one that does not).
    """
    return (caps_from_bits(CommonCap.MINI_HEADER) if client.mini_header else ()), ()


def to_backend(client: LinkMess, connection_id: int) -> LinkMess:
    """The link message for QEMU: the client's, with QEMU's session id and no migration caps on main.

    Without the migration caps QEMU never sends MIGRATE_BEGIN(_SEAMLESS),
    which would leave it waiting for the client to dial the destination;
    the MIGRATE_SWITCH_HOST it still sends after a migration is dropped by
    the relay (proxyd.spice).  The common caps are the proxy's own as
    QEMU's client: auth selection (it picks the SPICE ticket whenever QEMU
    offers the choice), never SASL.
    """
    common_caps = set_cap(client.common_caps, CommonCap.PROTOCOL_AUTH_SELECTION, True)
    common_caps = set_cap(common_caps, CommonCap.AUTH_SASL, False)
    channel_caps = client.channel_caps
    if client.channel_type == ChannelType.MAIN:
        for bit in (MainCap.SEMI_SEAMLESS_MIGRATE, MainCap.SEAMLESS_MIGRATE):
            channel_caps = set_cap(channel_caps, bit, False)
    return LinkMess(connection_id, client.channel_type, client.channel_id, common_caps, channel_caps)


def relay_header_mode(client: LinkMess, to_backend: LinkMess, client_reply_common_caps: Caps,
                      backend_reply: LinkReply) -> bool:
    """True when both legs use the mini header; raises HeaderModeMismatch when they would differ."""
    mini = client.mini_header and backend_reply.mini_header
    announced_to_client = has_cap(client_reply_common_caps, CommonCap.MINI_HEADER)
    if to_backend.mini_header != mini or announced_to_client != mini:
        raise HeaderModeMismatch(
            f"mini header: client {client.mini_header}, QEMU {backend_reply.mini_header},"
            f" announced to QEMU {to_backend.mini_header}, to the client {announced_to_client}"
        )
    return mini
