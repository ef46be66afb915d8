"""One receive buffer per worker for all of asyncio's TLS connections, instead of one per connection.

asyncio's SSL protocol (Python 3.11+) gives each connection a zero-filled
receive buffer of ``SSLProtocol.max_size`` bytes: the socket is read into it
and the bytes are copied into the connection's TLS memory BIO within the same
callback, so between two reads the buffer holds nothing anyone needs.  With
two TLS legs per console channel those buffers were most of an idle channel's
memory, even cut from asyncio's 256 KiB to 64 KiB (which still holds four full
TLS records per read; 256 KiB reads measured no faster on loopback).

Sharing one buffer per process is safe because the event loop runs one
callback at a time and nothing else touches the buffer between a read and
the copy into the BIO: idle channels then cost no buffer at all.  Pythons
whose asyncio lacks this buffer (before 3.11) only get the read size.
"""

import asyncio.sslproto
from typing import Any

READ_SIZE = 64 * 1024


def share_read_buffer(read_size: int = READ_SIZE) -> None:
    """From now on every new asyncio SSL connection of this process reads into one shared buffer."""
    protocol: Any = asyncio.sslproto.SSLProtocol
    protocol.max_size = read_size
    if not hasattr(protocol, "buffer_updated") or getattr(protocol, "_proxyd_shared_buffer", None) is not None:
        return
    shared = bytearray(read_size)
    view = memoryview(shared)
    original_init = protocol.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self.max_size = 1  # what the original zero-fills for this connection alone: one byte
        original_init(self, *args, **kwargs)
        del self.max_size  # back to the class's read size
        if hasattr(self, "_ssl_buffer_view"):
            self._ssl_buffer, self._ssl_buffer_view = shared, view

    protocol.__init__ = __init__
    protocol._proxyd_shared_buffer = shared
