"""The worker's shared TLS receive buffer: many connections reading at once through it keep their bytes apart.

Runs in a subprocess: the patch is process-wide, as in a worker.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.pki import Pki

REPO = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent("""
    import asyncio, os, ssl, sys
    from proxyd import tlsbuffer
    from resolverd import tls

    tlsbuffer.share_read_buffer()
    cert, key, ca = sys.argv[1:4]
    server_context = tls.server_context(cert, key, None)
    client_context = tls.client_context(ca)
    protocols = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            protocols.append(transport._ssl_protocol)

        def data_received(self, data):
            self.transport.write(data)

    async def one(port, payload):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context,
                                                       server_hostname="localhost")
        writer.write(payload)
        got = await reader.readexactly(len(payload))
        writer.close()
        return got == payload

    async def main():
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        payloads = [os.urandom(300 * 1024 + n) for n in range(40)]
        results = await asyncio.gather(*(one(port, p) for p in payloads))
        server.close()
        assert all(results), results
        buffers = {id(p._ssl_buffer) for p in protocols if hasattr(p, "_ssl_buffer")}
        print(len(protocols), len(buffers), asyncio.sslproto.SSLProtocol.max_size)

    asyncio.run(main())
""")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_forty_connections_echo_through_one_buffer(pki):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(pki.proxyd_server.cert), str(pki.proxyd_server.key),
                           str(pki.ca_cert)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    connections, buffers, read_size = map(int, done.stdout.split())
    assert connections == 40
    assert buffers == (1 if sys.version_info >= (3, 11) else 0)  # every server-side connection reads into the same one
    assert read_size == 64 * 1024
