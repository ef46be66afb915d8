"""QEMU -> client traffic of a SPICE main channel, split just enough to act on it.

After the link, the main channel carries SpiceMiniDataHeader (u16 type,
u32 size) or SpiceDataHeader (u64 serial, u16 type, u32 size, u32 sub_list)
framed messages; spice-server uses the mini header exactly when the link
message it received advertised ``MINI_HEADER``.  Two kinds matter to the
proxy:

- ``MAIN_INIT`` (103) carries the session id, the ``connection_id`` every
  later channel of the session presents;
- ``MIGRATE_BEGIN`` (101), ``MIGRATE_SWITCH_HOST`` (111) and
  ``MIGRATE_BEGIN_SEAMLESS`` (116) name another host for the client to dial,
  around the proxy; the caller drops or rewrites them.

Only those messages are buffered (bounded); every other byte is handed
straight back as ``PassThrough`` without waiting for its message to end.
Dropping a message in full-header mode leaves a gap in the serial numbers,
which spice-gtk tolerates; messages inside a SPICE_MSG_LIST are not looked
at (spice-server never sends these in one).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import List, Union

from .errors import MalformedMessage, Oversized

MSG_MIGRATE_BEGIN = 101
MSG_MAIN_INIT = 103
MSG_MIGRATE_SWITCH_HOST = 111
MSG_MIGRATE_BEGIN_SEAMLESS = 116
MIGRATE_MESSAGES = frozenset({MSG_MIGRATE_BEGIN, MSG_MIGRATE_SWITCH_HOST, MSG_MIGRATE_BEGIN_SEAMLESS})

MAX_INSPECTED_SIZE = 64 * 1024

_MINI_HEADER = struct.Struct("<HI")
_FULL_HEADER = struct.Struct("<QHII")
_MAIN_INIT = struct.Struct("<8I")
_SESSION_ID = struct.Struct("<I")


@dataclass(frozen=True)
class PassThrough:
    data: bytes


@dataclass(frozen=True)
class MainInit:
    session_id: int
    display_channels_hint: int
    supported_mouse_modes: int
    current_mouse_mode: int
    agent_connected: int
    agent_tokens: int
    multi_media_time: int
    ram_hint: int
    raw: bytes
    """The whole message, header included, to forward as it is."""


def with_session_id(init: MainInit, session_id: int, *, mini_header: bool) -> bytes:
    """``init``'s bytes with another session id: the one the proxy hands the client instead of QEMU's."""
    offset = (_MINI_HEADER if mini_header else _FULL_HEADER).size
    return init.raw[:offset] + _SESSION_ID.pack(session_id) + init.raw[offset + _SESSION_ID.size:]


@dataclass(frozen=True)
class MigrateMessage:
    msg_type: int
    raw: bytes
    """The whole message, header included; forward nothing, or a rewrite."""


Event = Union[PassThrough, MainInit, MigrateMessage]


class _State(enum.Enum):
    HEADER = "header"
    INSPECT = "inspect"
    SKIP = "skip"


class MainChannelFilter:
    def __init__(self, *, mini_header: bool) -> None:
        self._header = _MINI_HEADER if mini_header else _FULL_HEADER
        self._mini_header = mini_header
        self._state = _State.HEADER
        self._pending = bytearray()  # a header, then the body of an inspected message
        self._need = self._header.size  # length of _pending that completes it
        self._skip = 0  # body bytes to pass through unseen
        self._type = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._pending)

    def receive_data(self, data: bytes) -> List[Event]:
        events: List[Event] = []
        passed: List[bytes] = []
        pos = 0
        while True:
            if self._state is _State.SKIP:
                if pos == len(data):
                    break
                chunk = data[pos:pos + self._skip]
                pos += len(chunk)
                passed.append(chunk)
                self._skip -= len(chunk)
                if not self._skip:
                    self._expect_header()
                continue
            missing = self._need - len(self._pending)
            if missing:
                if pos == len(data):
                    break
                chunk = data[pos:pos + missing]
                pos += len(chunk)
                self._pending += chunk
                if len(chunk) < missing:
                    break
            if self._state is _State.HEADER:
                self._on_header(passed)
            else:
                if passed:
                    events.append(PassThrough(b"".join(passed)))
                    passed = []
                events.append(self._on_message())
        if passed:
            events.append(PassThrough(b"".join(passed)))
        return events

    def _expect_header(self) -> None:
        self._state = _State.HEADER
        self._pending.clear()
        self._need = self._header.size

    def _on_header(self, passed: List[bytes]) -> None:
        if self._mini_header:
            self._type, size = self._header.unpack(self._pending)
        else:
            _, self._type, size, _ = self._header.unpack(self._pending)
        if self._type == MSG_MAIN_INIT or self._type in MIGRATE_MESSAGES:
            if size > MAX_INSPECTED_SIZE:
                raise Oversized(f"message {self._type} of {size} bytes, over {MAX_INSPECTED_SIZE}")
            if self._type == MSG_MAIN_INIT and size < _MAIN_INIT.size:
                raise MalformedMessage(f"MAIN_INIT of {size} bytes, under {_MAIN_INIT.size}")
            self._state = _State.INSPECT
            self._need = self._header.size + size
            return
        passed.append(bytes(self._pending))
        self._pending.clear()
        if size:
            self._state = _State.SKIP
            self._skip = size
        else:
            self._expect_header()

    def _on_message(self) -> Union[MainInit, MigrateMessage]:
        raw = bytes(self._pending)
        self._expect_header()
        if self._type == MSG_MAIN_INIT:
            return MainInit(*_MAIN_INIT.unpack_from(raw, self._header.size), raw=raw)
        return MigrateMessage(self._type, raw)
