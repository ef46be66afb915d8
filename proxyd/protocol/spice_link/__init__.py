"""The SPICE link-stage MITM: server towards the tenant, client towards QEMU."""

from .backend_link import BackendLinked, LinkReplyReceived, SpiceBackendLink
from .client_link import LinkRequested, SpiceClientLink, TicketReceived
from .constants import AuthMechanism, ChannelType, CommonCap, LinkError, MainCap
from .errors import (
    BadCapabilities,
    BadPublicKey,
    BadTicket,
    HeaderModeMismatch,
    LinkRefused,
    UnsupportedAuthMechanism,
)
from .messages import LinkHeader, LinkMess, LinkReply, caps_from_bits, encode_link_error, has_cap, set_cap
from .negotiation import mirror_reply_caps, relay_header_mode, reply_first_caps, to_backend
from .ticket import TicketKey, encrypt_ticket, ticket_plaintext

__all__ = [
    "AuthMechanism",
    "BackendLinked",
    "BadCapabilities",
    "BadPublicKey",
    "BadTicket",
    "ChannelType",
    "CommonCap",
    "HeaderModeMismatch",
    "LinkError",
    "LinkHeader",
    "LinkMess",
    "LinkRefused",
    "LinkReply",
    "LinkReplyReceived",
    "MainCap",
    "LinkRequested",
    "SpiceBackendLink",
    "SpiceClientLink",
    "TicketKey",
    "TicketReceived",
    "UnsupportedAuthMechanism",
    "caps_from_bits",
    "encode_link_error",
    "encrypt_ticket",
    "has_cap",
    "mirror_reply_caps",
    "relay_header_mode",
    "reply_first_caps",
    "set_cap",
    "ticket_plaintext",
    "to_backend",
]
