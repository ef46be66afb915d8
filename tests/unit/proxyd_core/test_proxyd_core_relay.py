"""The relay over real loopback sockets: bytes go through unchanged, and a slow reader stops the writer."""

import asyncio
import socket

from loopback_legs import READ_SIZE, leg_pair, until
from proxyd.relay import HIGH_WATER, HOLD_LIMIT, link


async def read_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < size:
        data += await loop.sock_recv(sock, size - len(data))
    return bytes(data)


def test_bytes_cross_both_ways_unchanged():
    async def scenario():
        a, a_peer = await leg_pair()
        b, b_peer = await leg_pair()
        link(a, b)
        loop = asyncio.get_running_loop()
        payload = bytes(range(256)) * 4096
        sending = loop.create_task(loop.sock_sendall(a_peer, payload))
        assert await read_exactly(b_peer, len(payload)) == payload
        await sending
        await loop.sock_sendall(b_peer, b"back")
        assert await read_exactly(a_peer, 4) == b"back"
        assert (a.received, b.received) == (len(payload), 4)
        for sock in (a_peer, b_peer):
            sock.close()
    asyncio.run(scenario())


def test_held_bytes_are_delivered_first_when_linked():
    async def scenario():
        a, a_peer = await leg_pair()
        b, b_peer = await leg_pair()
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(a_peer, b"early")
        while a.held_bytes < 5:
            await asyncio.sleep(0.01)
        a.hold(b"prefix-")
        link(a, b)
        assert await read_exactly(b_peer, 12) == b"prefix-early"
        for sock in (a_peer, b_peer):
            sock.close()
    asyncio.run(scenario())


def test_hold_buffer_pauses_reading_when_full():
    async def scenario():
        loop = asyncio.get_running_loop()
        a, a_peer = await leg_pair()
        total = 16 << 20
        sending = loop.create_task(loop.sock_sendall(a_peer, b"x" * total))
        await until(lambda: a.held_bytes >= HOLD_LIMIT)
        assert not a.transport.is_reading()
        assert a.held_bytes < HOLD_LIMIT + READ_SIZE  # at most one read past the limit
        assert not sending.done()  # the rest waits in the sender
        delivered = bytearray()
        a.deliver_to(delivered.extend)  # a consumer at last: reading resumes, nothing was lost
        assert a.transport.is_reading()
        await until(lambda: len(delivered) == total)
        await sending
        assert a.held_bytes == 0
        a_peer.close()
    asyncio.run(scenario())


def test_slow_reader_bounds_what_the_proxy_buffers():
    async def scenario():
        loop = asyncio.get_running_loop()
        fast, fast_peer = await leg_pair()
        slow, slow_peer = await leg_pair()
        link(fast, slow)
        chunk = b"y" * 65536
        writer = loop.create_task(loop.sock_sendall(fast_peer, chunk * 400))  # 25 MiB, nobody reads it
        await until(lambda: not fast.transport.is_reading())
        assert slow.transport.get_write_buffer_size() <= HIGH_WATER + READ_SIZE
        assert not writer.done()  # the fast side is held back, not buffered in the proxy
        received = 0
        while received < 400 * 65536:  # now drain it: everything arrives
            received += len(await loop.sock_recv(slow_peer, 1 << 20))
        await writer
        for sock in (fast_peer, slow_peer):
            sock.close()
    asyncio.run(scenario())


def test_read_line_leaves_the_rest_held():
    async def scenario():
        leg, peer = await leg_pair()
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(peer, b"OK\nconsole bytes")
        assert await leg.read_line(256) == b"OK"
        await asyncio.sleep(0.05)
        assert leg.held_bytes == len(b"console bytes")
        await loop.sock_sendall(peer, b"no end of line" * 30)
        try:
            await leg.read_line(256)
        except ValueError as exc:
            assert "no end of line" in str(exc)
        else:
            raise AssertionError("an over-long line was accepted")
        peer.close()
    asyncio.run(scenario())


def test_read_line_on_closed_connection():
    async def scenario():
        leg, peer = await leg_pair()
        peer.close()
        try:
            await leg.read_line(256)
        except ConnectionError:
            return
        raise AssertionError("no error on a closed connection")
    asyncio.run(scenario())
