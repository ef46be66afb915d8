"""The SPICE session table: which live SPICE sessions a tenant's later channels may join.

One SPICE session is many channel connections, each possibly on another
worker, so the table lives in the master and workers ask over their
channel (proxyd.channel).  A session is registered when its main channel
has linked and QEMU's MAIN_INIT named QEMU's session id.  spice-server
draws ids from an unseeded rand(), so every QEMU's first session has the
same id: the proxy gives the client an id of its own instead (rewritten in
MAIN_INIT), unique across the proxy, and keeps (backend, QEMU's id) behind
it.  A secondary channel presents the proxy's id; the table answers with
the console to link to, QEMU's id and the digest of the token that opened
the session, which the worker compares with the channel's ticket.

Messages (worker -> master, answered to that worker; ``ref`` pairs them):

- ``spice-register`` {ref, console, qemu_id, digest} -> ``spice-registered`` {ref, session}
- ``spice-lookup`` {ref, session} -> ``spice-found`` {ref, entry: {console, qemu_id, digest} | null}
- ``spice-end`` {session}: the main channel closed; every worker then gets
  ``spice-ended`` {session} and closes that session's channels.

A worker that dies takes its main channels with it: their sessions end too.
"""

import logging
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from proxyd.channel import Message

log = logging.getLogger(__name__)

REGISTER, REGISTERED = "spice-register", "spice-registered"
LOOKUP, FOUND = "spice-lookup", "spice-found"
END, ENDED = "spice-end", "spice-ended"
REQUESTS = frozenset({REGISTER, LOOKUP, END})

MAX_ID = 2**32 - 1


@dataclass(frozen=True)
class Entry:
    console: Dict[str, Any]
    """proxyd.resolver.Console's fields, to link the session's other channels."""
    qemu_id: int
    digest: str
    """Hex SHA-256 of the token that opened the session."""
    worker: int
    """Slot of the worker holding the main channel."""

    @property
    def backend(self) -> str:
        return f"{self.console.get('host')}:{self.console.get('port')}"


class SessionTable:
    def __init__(self, new_id: Callable[[], int] = lambda: secrets.randbelow(MAX_ID) + 1) -> None:
        self._new_id = new_id
        self._entries: Dict[int, Entry] = {}
        self._by_backend: Dict[Tuple[str, int], int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, entry: Entry) -> Tuple[int, List[int]]:
        """(the client's session id, the ids of sessions this one replaces).

        QEMU lets one client at a time in: a new main link with QEMU's id
        for the same backend means the old session is gone there.
        """
        replaced = []
        old = self._by_backend.get((entry.backend, entry.qemu_id))
        if old is not None:
            self._drop(old)
            replaced.append(old)
        session = self._new_id()
        while session in self._entries or not 0 < session <= MAX_ID:
            session = self._new_id()
        self._entries[session] = entry
        self._by_backend[(entry.backend, entry.qemu_id)] = session
        return session, replaced

    def lookup(self, session: int) -> Optional[Entry]:
        return self._entries.get(session)

    def end(self, session: int, worker: int) -> bool:
        """Forget ``session`` if ``worker`` holds its main channel; False otherwise."""
        entry = self._entries.get(session)
        if entry is None or entry.worker != worker:
            return False
        self._drop(session)
        return True

    def forget_worker(self, worker: int) -> List[int]:
        """End the sessions whose main channel ``worker`` held; their ids."""
        gone = [session for session, entry in self._entries.items() if entry.worker == worker]
        for session in gone:
            self._drop(session)
        return gone

    def _drop(self, session: int) -> None:
        entry = self._entries.pop(session)
        self._by_backend.pop((entry.backend, entry.qemu_id), None)

    def handle(self, worker: int, message: Message) -> Tuple[Optional[Message], List[int]]:
        """A worker's request: (the answer to send it, the sessions that ended and every worker must hear of)."""
        kind = message["kind"]
        try:
            if kind == REGISTER:
                entry = Entry(console=dict(message["console"]), qemu_id=_u32(message["qemu_id"]),
                              digest=str(message["digest"]), worker=worker)
                session, replaced = self.register(entry)
                return {"kind": REGISTERED, "ref": message["ref"], "session": session}, replaced
            if kind == LOOKUP:
                found = self.lookup(_u32(message["session"]))
                answer = None if found is None else {"console": found.console, "qemu_id": found.qemu_id,
                                                     "digest": found.digest}
                return {"kind": FOUND, "ref": message["ref"], "entry": answer}, []
            if kind == END:
                session = _u32(message["session"])
                return None, [session] if self.end(session, worker) else []
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("worker %d sent a malformed %s message: %s", worker, kind, exc)
            return None, []
        raise ValueError(f"not a session table request: {kind}")


def ended(session: int) -> Message:
    return {"kind": ENDED, "session": session}


def _u32(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise ValueError(f"{value!r} is not a u32")
    return value
