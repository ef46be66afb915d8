"""SPICE link-stage constants (spice-protocol ``spice/protocol.h``, ``spice/enums.h``)."""

from __future__ import annotations

import enum

MAGIC = b"REDQ"
VERSION_MAJOR = 2
VERSION_MINOR = 2

LINK_HEADER_SIZE = 16
LINK_MESS_SIZE = 18
LINK_REPLY_SIZE = 178
PUBKEY_SIZE = 162
TICKET_SIZE = 128
RESULT_SIZE = 4
AUTH_MECHANISM_SIZE = 4

# spice-server's bounds on what follows the header, and on each caps count.
MAX_LINK_SIZE = 4096
MAX_CAPS_WORDS = 1024
MAX_PASSWORD_LENGTH = 60


class LinkError(enum.IntEnum):
    OK = 0
    ERROR = 1
    INVALID_MAGIC = 2
    INVALID_DATA = 3
    VERSION_MISMATCH = 4
    NEED_SECURED = 5
    NEED_UNSECURED = 6
    PERMISSION_DENIED = 7
    BAD_CONNECTION_ID = 8
    CHANNEL_NOT_AVAILABLE = 9


class ChannelType(enum.IntEnum):
    MAIN = 1
    DISPLAY = 2
    INPUTS = 3
    CURSOR = 4
    PLAYBACK = 5
    RECORD = 6
    TUNNEL = 7
    SMARTCARD = 8
    USBREDIR = 9
    PORT = 10
    WEBDAV = 11


class CommonCap(enum.IntEnum):
    """Bit numbers in the common caps words; the auth mechanisms reuse them."""

    PROTOCOL_AUTH_SELECTION = 0
    AUTH_SPICE = 1
    AUTH_SASL = 2
    MINI_HEADER = 3


class AuthMechanism(enum.IntEnum):
    SPICE = CommonCap.AUTH_SPICE
    SASL = CommonCap.AUTH_SASL


class MainCap(enum.IntEnum):
    """Bit numbers in a main channel's caps."""

    SEMI_SEAMLESS_MIGRATE = 0
    NAME_AND_UUID = 1
    AGENT_CONNECTED_TOKENS = 2
    SEAMLESS_MIGRATE = 3
