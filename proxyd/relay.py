"""The two legs of a session as asyncio protocols, and the flow control between them.

Each leg hands what it receives to its ``sink``: during a handshake a
protocol machine (or a small hold buffer), afterwards the other leg's
``send``.  When a leg's transport has more than HIGH_WATER bytes queued,
asyncio calls its ``pause_writing`` and the *other* leg stops reading until
the queue drains below LOW_WATER: a slow reader never makes the proxy buffer
without bound.  Bytes are passed through as the transports deliver them
(up to 256 KiB per read), never inspected one by one.

Legs read into one buffer per worker (``asyncio.BufferedProtocol``): what a
read brings is consumed, or copied once, before the loop reads again.  The
library's default path allocates 256 KiB for every TLS record it decrypts,
which glibc serves, in some heap states, with a fresh mapping per record:
page faults that made a stream cost up to half as much CPU again.  A relay
towards a websocket skips even that copy: the websocket leg frames what it
is sent into new bytes before ``send`` returns, so it gets a view.
"""

import asyncio
from typing import Callable, List, Optional, cast

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
HOLD_LIMIT = 256 * 1024  # bytes a leg keeps while nobody consumes them yet

Sink = Callable[[bytes], None]
ViewSink = Callable[[memoryview], None]  # done with the view when it returns

_INBOX = memoryview(bytearray(256 * 1024))  # every leg of the worker reads into it


class Leg(asyncio.BufferedProtocol):
    """What both legs share: transport, sink, hold buffer, flow control towards the peer."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.peer: Optional["Leg"] = None
        self.sink: Sink = self._hold
        self.view_sink: Optional[ViewSink] = None  # takes the place of sink where the leg can pass views
        self._held = bytearray()
        self._held_paused = False
        self._on_lost: Callable[[Optional[Exception]], None] = lambda exc: None
        self._more: "Optional[asyncio.Future[None]]" = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = True
        self._wake()
        self._on_lost(exc)

    def on_lost(self, callback: Callable[[Optional[Exception]], None]) -> None:
        self._on_lost = callback
        if self.lost:
            callback(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _INBOX

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_INBOX[:nbytes]))

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def send_view(self) -> Optional[ViewSink]:
        """``send`` for a view of the read buffer, if this leg is done with what it is sent when ``send`` returns."""
        return None

    def deliver_to(self, sink: Sink, view_sink: Optional[ViewSink] = None) -> None:
        """From now on received payload goes to ``sink``, starting with whatever was held."""
        self.sink, self.view_sink = sink, view_sink
        held, self._held = bytes(self._held), bytearray()
        if self._held_paused:
            self._held_paused = False
            self.resume_reading()
        if held:
            sink(held)

    def hold(self, prefix: bytes = b"") -> None:
        """Keep received payload here again (a handshake is over), behind ``prefix``."""
        self.sink, self.view_sink = self._hold, None
        self._held[0:0] = prefix

    @property
    def held_bytes(self) -> int:
        return len(self._held)

    def _hold(self, data: bytes) -> None:
        self._held += data
        if len(self._held) >= HOLD_LIMIT and not self._held_paused:
            self._held_paused = True
            self.pause_reading()
        self._wake()

    def _wake(self) -> None:
        if self._more is not None and not self._more.done():
            self._more.set_result(None)

    async def read_line(self, limit: int) -> bytes:
        """The next LF-terminated line of what this leg holds (without the LF); the rest stays held."""
        while True:
            end = self._held.find(b"\n")
            if end >= 0:
                line = bytes(self._held[:end])
                del self._held[:end + 1]
                return line
            if len(self._held) > limit:
                raise ValueError(f"no end of line within {limit} bytes")
            if self.lost:
                raise ConnectionError("connection closed before the end of the line")
            self._more = asyncio.get_running_loop().create_future()
            await self._more

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class ConsoleLeg(Leg):
    """The leg towards QEMU (or resolverd's console bridge): raw bytes both ways."""

    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.eof = False
        self._corked: Optional[List[bytes]] = None

    def buffer_updated(self, nbytes: int) -> None:
        if self.view_sink is None:
            super().buffer_updated(nbytes)
        else:
            self.received += nbytes
            self.view_sink(_INBOX[:nbytes])

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.sink(data)

    def eof_received(self) -> Optional[bool]:
        self.eof = True
        return False

    def send(self, data: bytes) -> None:
        if not data:
            return
        if self._corked is not None:
            self._corked.append(data)
        else:
            self._write([data])

    def cork(self) -> None:
        """Keep what ``send`` gets until ``uncork``: the frames of one websocket read become one write."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        chunks, self._corked = self._corked, None
        if chunks:
            self._write(chunks)

    def _write(self, chunks: List[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(chunks)


class TlsChardevLeg(ConsoleLeg):
    """The leg towards a serial console's TLS chardev: the last byte of every write in a TLS record of its own.

    QEMU (7.2 at least) reads a TLS record from a chardev only as far as the
    guest's serial FIFO has room at that moment (16 bytes at most) and leaves
    the rest inside GnuTLS, where nothing looks while the socket has no more
    bytes: the tail of a pasted line would wait for the next keystroke.  GnuTLS
    hands out what it buffered before it reads the next record, so while a
    later record waits in the socket QEMU keeps reading, and the last record,
    one byte long, is always read whole.  A write, however long and however
    many chunks it gathers, ends with one such record.
    """

    def _write(self, chunks: List[bytes]) -> None:
        assert self.transport is not None
        last = memoryview(chunks[-1])  # split without copying it
        self.transport.writelines(chunks[:-1] + [last[:-1], last[-1:]] if len(last) > 1 else chunks)


def link(a: Leg, b: Leg) -> None:
    """Relay from now on: each leg's payload goes to the other, with flow control both ways."""
    a.peer, b.peer = b, a
    a.deliver_to(b.send, b.send_view())
    b.deliver_to(a.send, a.send_view())
