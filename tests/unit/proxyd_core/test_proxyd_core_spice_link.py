"""proxyd.spice's link of a secondary channel against a stand-in SPICE server on a loopback socket.

QEMU pushes a port channel's PORT_INIT (and the SET_ACK of channels that
ack) right behind its link result, often in the same read: those bytes
must reach the relay, not stay in the link parser.
"""

import asyncio
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lab.spice_link import HEADER, authenticate, link
from loopback_legs import leg_pair, until
from proxyd.backends import Outbound
from proxyd.protocol.spice_link import TicketKey
from proxyd.resolver import Console
from proxyd.spice import Access, spice_link
from proxyd.spice_directory import Joinable, token_digest

CHANNEL_PORT = 10
QEMU_SESSION = 0x1234
PROXY_SESSION = 0x5678
TOKEN = "tenant-token"
PASSWORD = "qemu-password"
# A message in a mini header (type 201 is SPICE_MSG_PORT_INIT); its body is opaque to the proxy.
AFTER_RESULT = struct.pack("<HI", 201, 14) + struct.pack("<IIB", 5, 9, 0) + b"port\0"
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


class Directory:
    def __init__(self, console: Console) -> None:
        self.console = console

    async def lookup(self, session: int) -> Joinable:
        assert session == PROXY_SESSION
        return Joinable(self.console, QEMU_SESSION, token_digest(TOKEN))


async def nothing(*_args: object) -> None:
    raise AssertionError("a secondary channel asks the resolver nothing")


def test_what_qemu_sends_with_its_link_result_reaches_the_relay():
    async def scenario():
        qemu_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        linked_by_qemu = []

        async def qemu(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            size = HEADER.unpack(await reader.readexactly(HEADER.size))[3]
            connection_id, channel_type = struct.unpack_from("<IB", await reader.readexactly(size))
            linked_by_qemu.append((connection_id, channel_type))
            pub_key = qemu_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            body = struct.pack("<I", 0) + pub_key + struct.pack("<IIII", 1, 0, 4 + 162 + 12, 0b1011)
            writer.write(HEADER.pack(b"REDQ", 2, 2, len(body)) + body)
            assert struct.unpack("<I", await reader.readexactly(4)) == (1,)  # the SPICE ticket
            assert qemu_key.decrypt(await reader.readexactly(128), OAEP) == PASSWORD.encode() + b"\0"
            writer.write(struct.pack("<I", 0) + AFTER_RESULT)  # one write: the result and the first message
            await writer.drain()
            await reader.read()  # until the proxy closes
            writer.close()

        server = await asyncio.start_server(qemu, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        console = Console("spice", "127.0.0.1", port, insecure=True, tls_tunnel=False, password=PASSWORD)
        access = Access(check_brake=lambda: None, failed=lambda: None, resolve=nothing, unspent=nothing,
                        claim=nothing)
        outbound = Outbound(connect=None, bridge=None, server_name=None, allow_insecure=True)
        tenant, tenant_end = await leg_pair()

        def tenant_links() -> int:
            tenant_end.setblocking(True)
            tenant_end.settimeout(20)
            reply = link(tenant_end, CHANNEL_PORT, 0, PROXY_SESSION)
            assert reply.error == 0
            return authenticate(tenant_end, reply, TOKEN)

        linking = asyncio.ensure_future(spice_link(tenant, TicketKey.generate(), outbound, Directory(console),
                                                   access))
        assert await asyncio.to_thread(tenant_links) == 0
        channel = await asyncio.wait_for(linking, 20)
        assert linked_by_qemu == [(QEMU_SESSION, CHANNEL_PORT)]
        relayed = bytearray()
        channel.console_leg.deliver_to(relayed.extend)
        await until(lambda: len(relayed) >= len(AFTER_RESULT), timeout=5)
        assert bytes(relayed) == AFTER_RESULT
        channel.console_leg.abort()
        tenant_end.close()
        server.close()
        await server.wait_closed()
    asyncio.run(scenario())
