"""A worker's side of the SPICE session table (proxyd.spice_sessions), over its channel to the master.

Requests are answered asynchronously: each carries a ``ref`` and waits for
the answer with that ``ref``, for at most ``timeout`` seconds.  The
directory also knows the worker's sessions by SPICE session id, so that
when the master says a session ended, its channels here are closed.
"""

import asyncio
import hashlib
import hmac
import itertools
import logging
import socket
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Protocol, Set

from proxyd import channel, spice_sessions
from proxyd.channel import Message
from proxyd.resolver import Console

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


class DirectoryUnavailable(Exception):
    """The master did not take the request or did not answer in time."""


class Closable(Protocol):
    def end(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True)
class Joinable:
    """A live session a secondary channel may join."""

    console: Console
    qemu_id: int
    digest: str

    def opened_by(self, token: str) -> bool:
        return hmac.compare_digest(self.digest, token_digest(token))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class SessionDirectory:
    def __init__(self, link: socket.socket, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._link = link
        self._timeout = timeout
        self._refs = itertools.count(1)
        self._waiting: Dict[int, "asyncio.Future[Message]"] = {}
        self._members: Dict[int, Set[Closable]] = {}

    async def register(self, console: Console, qemu_id: int, token: str) -> int:
        """The session id to give the client in MAIN_INIT."""
        answer = await self._ask({"kind": spice_sessions.REGISTER, "console": asdict(console), "qemu_id": qemu_id,
                                  "digest": token_digest(token)})
        session = answer.get("session")
        if not isinstance(session, int):
            raise DirectoryUnavailable("the master's answer has no session id")
        return session

    async def lookup(self, session: int) -> Optional[Joinable]:
        answer = await self._ask({"kind": spice_sessions.LOOKUP, "session": session})
        entry = answer.get("entry")
        if entry is None:
            return None
        try:
            return Joinable(Console(**entry["console"]), int(entry["qemu_id"]), str(entry["digest"]))
        except (KeyError, TypeError) as exc:
            raise DirectoryUnavailable(f"malformed answer from the master: {exc}") from None

    def join(self, session: int, member: Closable) -> None:
        """``member`` (a channel of ``session`` on this worker) is ended with the session."""
        self._members.setdefault(session, set()).add(member)

    def leave(self, session: int, member: Closable) -> None:
        members = self._members.get(session)
        if members is not None:
            members.discard(member)
            if not members:
                del self._members[session]

    def end(self, session: int) -> None:
        """The session's main channel closed here."""
        if not channel.send(self._link, {"kind": spice_sessions.END, "session": session}):
            log.warning("could not tell the master that SPICE session %08x ended", session)

    def on_message(self, message: Message) -> None:
        """A message from the master."""
        kind = message["kind"]
        if kind == spice_sessions.ENDED:
            session = message.get("session")
            for member in list(self._members.pop(session, ())):  # type: ignore[arg-type]
                member.end(1000, "the SPICE session ended")
            return
        waiter = self._waiting.pop(message.get("ref"), None)  # type: ignore[arg-type]
        if waiter is None:
            log.warning("unexpected %r message from the master", kind)
        elif not waiter.done():
            waiter.set_result(message)

    async def _ask(self, request: Message) -> Message:
        ref = next(self._refs)
        waiter: "asyncio.Future[Message]" = asyncio.get_running_loop().create_future()
        self._waiting[ref] = waiter
        try:
            if not channel.send(self._link, {**request, "ref": ref}):
                raise DirectoryUnavailable("the channel to the master is full or closed")
            return await asyncio.wait_for(waiter, self._timeout)
        except asyncio.TimeoutError:
            raise DirectoryUnavailable(f"no answer from the master within {self._timeout:g} s") from None
        finally:
            self._waiting.pop(ref, None)
