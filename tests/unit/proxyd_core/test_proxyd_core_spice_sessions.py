import asyncio
import itertools

import pytest

from proxyd import channel
from proxyd.resolver import Console
from proxyd.spice_directory import DirectoryUnavailable, SessionDirectory, token_digest
from proxyd.spice_sessions import Entry, SessionTable

CONSOLE = Console(type="spice", host="127.0.0.1", port=5901, insecure=False, tls_tunnel=False, password="qemu-pw",
                  domain="demo")
OTHER = Console(type="spice", host="127.0.0.1", port=5902, insecure=False, tls_tunnel=False, password="pw2")
FIRST_RAND = 1804289383  # glibc rand()'s first value: every QEMU's first SPICE session id


def entry(console: Console = CONSOLE, qemu_id: int = FIRST_RAND, worker: int = 0) -> Entry:
    return Entry(console={"host": console.host, "port": console.port}, qemu_id=qemu_id, digest=token_digest("t"),
                 worker=worker)


def test_sessions_with_the_same_qemu_id_on_two_backends_get_distinct_ids():
    table = SessionTable(new_id=iter([7, 7, 8]).__next__)
    first, replaced = table.register(entry(CONSOLE))
    second, _ = table.register(entry(OTHER))
    assert (first, second, replaced) == (7, 8, [])
    assert table.lookup(7).console["port"] == 5901 and table.lookup(8).console["port"] == 5902
    assert table.lookup(9) is None


def test_a_new_main_link_with_the_same_qemu_id_replaces_the_old_session():
    table = SessionTable(new_id=itertools.count(1).__next__)
    old, _ = table.register(entry())
    new, replaced = table.register(entry())
    assert replaced == [old] and table.lookup(old) is None and table.lookup(new) is not None


def test_only_the_worker_holding_main_ends_a_session_and_a_dead_worker_ends_its_own():
    table = SessionTable(new_id=itertools.count(1).__next__)
    mine, _ = table.register(entry(worker=0))
    theirs, _ = table.register(entry(OTHER, worker=1))
    assert not table.end(mine, worker=1)
    assert table.end(mine, worker=0) and table.lookup(mine) is None
    assert table.forget_worker(1) == [theirs] and len(table) == 0


def test_handle_answers_requests_and_drops_malformed_ones():
    table = SessionTable(new_id=lambda: 42)
    answer, ended = table.handle(0, {"kind": "spice-register", "ref": 1, "console": {"host": "h", "port": 1},
                                     "qemu_id": 5, "digest": "d"})
    assert answer == {"kind": "spice-registered", "ref": 1, "session": 42} and ended == []
    assert table.handle(1, {"kind": "spice-lookup", "ref": 2, "session": 42})[0] == {
        "kind": "spice-found", "ref": 2, "entry": {"console": {"host": "h", "port": 1}, "qemu_id": 5, "digest": "d"}}
    assert table.handle(1, {"kind": "spice-lookup", "ref": 3, "session": -1}) == (None, [])
    assert table.handle(0, {"kind": "spice-end", "session": 42}) == (None, [42])


class Member:
    def __init__(self) -> None:
        self.ended = None

    def end(self, code: int, reason: str) -> None:
        self.ended = (code, reason)


def test_directory_over_a_real_channel(ends):
    master_end, worker_end = ends
    table = SessionTable(new_id=lambda: 0x1EE7)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        directory = SessionDirectory(worker_end, timeout=2)

        def serve() -> None:  # the master's side, as master.py runs it
            while (message := channel.receive(master_end)) is not None:
                answer, ended = table.handle(0, message)
                if answer is not None:
                    channel.send(master_end, answer)
                for session in ended:
                    channel.send(master_end, {"kind": "spice-ended", "session": session})

        def deliver() -> None:
            while (message := channel.receive(worker_end)) is not None:
                directory.on_message(message)

        loop.add_reader(master_end.fileno(), serve)
        loop.add_reader(worker_end.fileno(), deliver)
        try:
            session = await directory.register(CONSOLE, FIRST_RAND, "the-token")
            assert session == 0x1EE7
            found = await directory.lookup(session)
            assert found is not None and found.console == CONSOLE and found.qemu_id == FIRST_RAND
            assert found.opened_by("the-token") and not found.opened_by("the-tokeN")
            assert await directory.lookup(session + 1) is None
            member = Member()
            directory.join(session, member)
            directory.end(session)
            while member.ended is None:
                await asyncio.sleep(0.01)
            assert member.ended == (1000, "the SPICE session ended")
        finally:
            loop.remove_reader(master_end.fileno())
            loop.remove_reader(worker_end.fileno())

    asyncio.run(scenario())


def test_directory_without_an_answer_is_unavailable(ends):
    _, worker_end = ends

    async def scenario() -> None:
        with pytest.raises(DirectoryUnavailable, match="no answer"):
            await SessionDirectory(worker_end, timeout=0.1).lookup(1)

    asyncio.run(scenario())
