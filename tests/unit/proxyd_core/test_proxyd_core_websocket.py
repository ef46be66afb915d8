"""The websocket leg over a real loopback connection, with the websockets library's client as the tenant."""

import asyncio
import base64
import socket
from typing import Awaitable, Callable, List, Optional

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

from loopback_legs import READ_SIZE, leg_pair, until
from proxyd.relay import HIGH_WATER, link
from proxyd.websocket import MAX_MESSAGE, HandshakeFailed, WebSocketLeg

Tenant = Callable[[str], Awaitable[None]]


class Server:
    """Accepts one connection into a WebSocketLeg and accepts its upgrade."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.leg: Optional[WebSocketLeg] = None
        self.received: List[bytes] = []
        self.closing: List[tuple] = []
        self.status: Optional[int] = None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        sock, _ = await loop.sock_accept(self.listener)
        self.leg = leg = WebSocketLeg()
        await loop.connect_accepted_socket(lambda: leg, sock)
        request = await leg.request()
        response = leg.accept(request)
        self.status = response.status_code
        leg.respond(response)
        leg.on_closing = lambda code, reason: self.closing.append((code, reason))
        leg.deliver_to(self.received.append)


def run(tenant: Callable[[Server, str], Awaitable[None]]) -> Server:
    async def scenario() -> Server:
        server = Server()
        serving = asyncio.get_running_loop().create_task(server.serve())
        await tenant(server, f"ws://127.0.0.1:{server.port}/websockify?token=t")
        await serving
        server.listener.close()
        return server
    return asyncio.run(asyncio.wait_for(scenario(), 10))


async def settle() -> None:
    await asyncio.sleep(0.05)


def test_binary_preferred_and_bytes_both_ways():
    async def tenant(server: Server, uri: str) -> None:
        async with connect(uri, subprotocols=["base64", "binary"]) as ws:
            assert ws.subprotocol == "binary"
            await ws.send(b"abc")
            await settle()
            server.leg.send(b"xyz")
            assert await ws.recv() == b"xyz"
    server = run(tenant)
    assert server.received == [b"abc"] and server.leg.received == 3


def test_no_subprotocol_means_binary():
    async def tenant(server: Server, uri: str) -> None:
        async with connect(uri) as ws:
            assert ws.subprotocol is None
            server.leg.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
    run(tenant)


def test_base64_both_ways_and_fragmented_messages():
    async def tenant(server: Server, uri: str) -> None:
        async with connect(uri, subprotocols=["base64"]) as ws:
            assert ws.subprotocol == "base64"
            await ws.send("aGVsbG8=")
            await ws.send(["d29y", "bGQ="])  # one message in two frames
            await settle()
            server.leg.send(b"hi")
            assert await ws.recv() == "aGk="
    server = run(tenant)
    assert server.received == [b"hello", b"world"]


@pytest.mark.parametrize("subprotocols, message, code", [
    (["base64"], "not base64!", 1007),
    (["binary"], "text", 1003),
    (["binary"], b"x" * (MAX_MESSAGE + 1), 1009),
])
def test_bad_messages_close_with_a_code(subprotocols, message, code):
    async def tenant(server: Server, uri: str) -> None:
        async with connect(uri, subprotocols=subprotocols, max_size=None) as ws:
            await ws.send(message)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == code
    server = run(tenant)
    assert server.received == [] and server.closing[0][0] == code


def test_a_tenant_still_sending_an_oversized_message_gets_the_close_frame():
    """The leg fails the connection at the frame header; 32 MiB more follow, more than socket buffers hold."""
    async def tenant(server: Server, uri: str) -> None:
        def blocking_client() -> int:
            with sync_connect(uri, max_size=None, close_timeout=10) as ws:
                ws.send(b"x" * (32 << 20))  # a reset connection would fail this send
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=10)
            return closed.value.rcvd.code
        assert await asyncio.get_running_loop().run_in_executor(None, blocking_client) == 1009
    server = run(tenant)
    assert server.received == [] and server.closing[0][0] == 1009


def test_a_tenant_that_does_not_read_stops_the_console_instead_of_filling_the_proxy():
    async def tenant(server: Server, uri: str) -> None:
        loop = asyncio.get_running_loop()
        async with connect(uri, max_queue=1, max_size=None) as ws:  # reads nothing while we do not recv()
            await until(lambda: server.leg is not None and server.leg.transport is not None)
            console, console_peer = await leg_pair()
            link(server.leg, console)
            total = 32 << 20
            flood = loop.create_task(loop.sock_sendall(console_peer, b"z" * total))
            await until(lambda: not console.transport.is_reading())
            assert server.leg.transport.get_write_buffer_size() <= HIGH_WATER + READ_SIZE
            assert not flood.done()  # QEMU's side waits: the proxy holds no more than its buffers
            received = 0
            while received < total:  # the tenant reads at last: every byte arrives
                received += len(await ws.recv())
            await flood
            console_peer.close()
    run(tenant)


@pytest.mark.parametrize("subprotocol", ["binary", "base64"])
def test_console_bytes_reach_the_tenant_unchanged_though_passed_as_views_of_the_read_buffer(subprotocol):
    payload = b"".join(n.to_bytes(4, "big") for n in range(2 << 20))  # 8 MiB, no two reads alike

    async def tenant(server: Server, uri: str) -> None:
        loop = asyncio.get_running_loop()
        async with connect(uri, subprotocols=[subprotocol], max_size=None) as ws:
            await until(lambda: server.leg is not None and server.leg.transport is not None)
            console, console_peer = await leg_pair()
            link(server.leg, console)
            assert console.view_sink == server.leg.send and server.leg.view_sink is None
            sending = loop.create_task(loop.sock_sendall(console_peer, payload))
            received = bytearray()
            while len(received) < len(payload):
                message = await ws.recv()
                received += base64.b64decode(message) if subprotocol == "base64" else message
            await sending
            assert received == payload and console.received == len(payload)
            console.hold()  # a protocol machine takes over again: it may keep what it gets, so it gets copies
            assert console.view_sink is None
            console_peer.close()
    run(tenant)


def test_close_with_reason_reaches_the_tenant():
    async def tenant(server: Server, uri: str) -> None:
        async with connect(uri) as ws:
            await settle()
            server.leg.close_with(1008, "unknown or expired token " + "x" * 200)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1008
            assert closed.value.rcvd.reason.startswith("unknown or expired token")
            assert len(closed.value.rcvd.reason.encode()) <= 123
    run(tenant)


def test_tenant_close_is_reported():
    async def tenant(server: Server, uri: str) -> None:
        async with connect(uri) as ws:
            await ws.close(1000, "bye")
        await settle()
    server = run(tenant)
    assert server.closing == [(1000, "bye")]


def test_pings_both_ways():
    async def tenant(server: Server, uri: str) -> None:
        async with connect(uri, ping_interval=None) as ws:
            await asyncio.wait_for(await ws.ping(), 2)  # the library answers our ping
            await settle()
            server.leg.ping()
            assert server.leg.ping_sent is not None
            await asyncio.sleep(0.2)  # the client library answers with a pong while we wait
            assert server.leg.ping_sent is None
    run(tenant)


async def raw_exchange(request: bytes) -> bytes:
    """Send ``request`` to a fresh leg whose upgrade is answered by the library; return what comes back."""
    server = Server()
    serving = asyncio.get_running_loop().create_task(server.serve())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    answer = await reader.read()
    writer.close()
    await serving
    server.listener.close()
    return answer


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /websockify?token=t HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
    (b"POST /websockify HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
    (b"GET /websockify HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Version: 13\r\n\r\n", b"400"),
])
def test_plain_http_gets_a_clear_4xx(request_bytes, status):
    answer = asyncio.run(asyncio.wait_for(raw_exchange(request_bytes), 10))
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")


def test_not_http_at_all_gets_400_and_handshake_failed():
    async def scenario() -> bytes:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        sock, _ = await loop.sock_accept(listener)
        leg = WebSocketLeg()
        await loop.connect_accepted_socket(lambda: leg, sock)
        writer.write(b"\x00\x01garbage\r\n\r\n")
        with pytest.raises(HandshakeFailed):
            await leg.request()
        answer = await reader.read()
        writer.close()
        listener.close()
        return answer
    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_first_bytes_are_parsed_before_the_rest():
    async def scenario() -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        sock, _ = await loop.sock_accept(listener)
        leg = WebSocketLeg(b"GET /websockify?token=t HTTP/1.1\r\n")
        await loop.connect_accepted_socket(lambda: leg, sock)
        writer.write(b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: " + base64.b64encode(b"0123456789abcdef") + b"\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        request = await leg.request()
        writer.close()
        listener.close()
        return request.path
    assert asyncio.run(scenario()) == "/websockify?token=t"
