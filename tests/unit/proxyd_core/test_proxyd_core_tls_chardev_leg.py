"""The leg towards a TLS chardev ends every write with a one-byte TLS record (QEMU 7.2 reads that one whole)."""

import asyncio
import base64
import socket
import ssl
import struct
import threading
from typing import List, Tuple

import pytest
from websockets.frames import Frame, Opcode

from lab.pki import Pki
from proxyd.relay import TlsChardevLeg, link
from proxyd.websocket import WebSocketLeg
from resolverd import tls

APPLICATION_DATA = 23
OVERHEAD = 1 + 16  # TLS 1.3: the inner content type and the AEAD tag


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def serve_handshake(sock: socket.socket, context: ssl.SSLContext) -> Tuple[ssl.SSLObject, ssl.MemoryBIO]:
    """The chardev's end of the handshake on a blocking socket, through memory BIOs so the test sees the records."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    chardev = context.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            chardev.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))
    sock.sendall(outgoing.read())
    return chardev, incoming


def read_records(sock: socket.socket, count: int) -> Tuple[List[Tuple[int, int]], bytes]:
    """The first ``count`` TLS records off the wire: their (type, length), and their bytes."""
    wire = b""
    records: List[Tuple[int, int]] = []
    at = 0
    while len(records) < count:
        wire += sock.recv(65536)
        records, at = [], 0
        while at + 5 <= len(wire) and len(records) < count:
            kind, _, length = struct.unpack_from("!BHH", wire, at)
            if at + 5 + length > len(wire):
                break
            records.append((kind, length))
            at += 5 + length
    return records, wire[:at]


@pytest.mark.parametrize("payload, lengths", [
    (b"x", [1]),
    (b"hello", [4, 1]),
    (bytes(range(256)) * 8, [2047, 1]),
])
def test_each_write_ends_with_a_one_byte_record(pki, payload, lengths):
    ours, theirs = socket.socketpair()
    server = tls.server_context(pki.proxyd_server.cert, pki.proxyd_server.key, None)
    handshake = {}
    chardev_side = threading.Thread(target=lambda: handshake.update(done=serve_handshake(theirs, server)))
    chardev_side.start()

    async def scenario() -> None:
        ours.setblocking(False)
        _, leg = await asyncio.get_running_loop().create_connection(
            TlsChardevLeg, sock=ours, ssl=tls.client_context(pki.ca_cert), server_hostname="localhost")
        await asyncio.get_running_loop().run_in_executor(None, chardev_side.join)
        leg.send(payload)
        await asyncio.sleep(0.1)
        leg.close()  # its close_notify follows the payload's records
    try:
        asyncio.run(scenario())
        records, wire = read_records(theirs, len(lengths))
        assert records == [(APPLICATION_DATA, n + OVERHEAD) for n in lengths]
        chardev, incoming = handshake["done"]
        incoming.write(wire)
        assert b"".join(chardev.read(65536) for _ in lengths) == payload
    finally:
        ours.close()
        theirs.close()


def test_frames_of_one_websocket_read_reach_the_chardev_as_one_write(pki):
    """The tenant's frames that one read brings are corked into one write: one one-byte record after all of them."""
    ours, theirs = socket.socketpair()
    tenant, tenant_peer = socket.socketpair()
    server = tls.server_context(pki.proxyd_server.cert, pki.proxyd_server.key, None)
    handshake = {}
    chardev_side = threading.Thread(target=lambda: handshake.update(done=serve_handshake(theirs, server)))
    chardev_side.start()
    payloads = [b"first", b"second", b"third"]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours.setblocking(False)
        tenant.setblocking(False)
        _, chardev = await loop.create_connection(
            TlsChardevLeg, sock=ours, ssl=tls.client_context(pki.ca_cert), server_hostname="localhost")
        await loop.run_in_executor(None, chardev_side.join)
        leg = WebSocketLeg()
        await loop.connect_accepted_socket(lambda: leg, tenant)
        tenant_peer.sendall(b"GET /websockify HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            b"Sec-WebSocket-Key: " + base64.b64encode(b"0123456789abcdef") + b"\r\n"
                            b"Sec-WebSocket-Version: 13\r\n\r\n")
        leg.respond(leg.accept(await leg.request()))
        link(leg, chardev)
        tenant_peer.sendall(b"".join(Frame(Opcode.BINARY, payload).serialize(mask=True, extensions=[])
                                     for payload in payloads))
        await asyncio.sleep(0.1)
        assert leg.received == sum(map(len, payloads))
        chardev.close()
        leg.close()
    try:
        asyncio.run(scenario())
        lengths = [5, 6, 4, 1]
        records, wire = read_records(theirs, len(lengths))
        assert records == [(APPLICATION_DATA, n + OVERHEAD) for n in lengths]
        chardev, incoming = handshake["done"]
        incoming.write(wire)
        assert b"".join(chardev.read(65536) for _ in lengths) == b"".join(payloads)
    finally:
        for sock in (ours, theirs, tenant, tenant_peer):
            sock.close()
