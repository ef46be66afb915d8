"""Clients for the lab guest's serial ports, with a common read-until API.

- :class:`LibvirtConsole`: the pty console (COM1) through libvirt's
  virDomainOpenConsole, on a non-blocking stream polled without an event
  loop (so it works in any test process, whether or not it registered one).
- :class:`TlsSerial`: the TLS TCP chardev (COM2), as proxyd will reach it.

Both are context managers with ``send(data)``, ``read_some(timeout)`` and
``read_until(needle, timeout)``.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Optional

import libvirt


class SerialTimeout(TimeoutError):
    """``read_until`` gave up; ``.data`` holds what was read."""

    def __init__(self, needle: bytes, data: bytes, timeout: float) -> None:
        super().__init__(f"{needle!r} not seen within {timeout}s; got {data[-300:]!r}")
        self.data = data


class _ByteChannel:
    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def read_some(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` s (b"" if nothing)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def read_until(self, needle: bytes, timeout: float = 10.0) -> bytes:
        """Read until ``needle`` was seen; return everything read so far."""
        data = b""
        deadline = time.monotonic() + timeout
        while needle not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SerialTimeout(needle, data, timeout)
            data += self.read_some(min(left, 0.5))
        return data

    def drain(self, quiet: float = 0.2) -> bytes:
        """Read until nothing arrived for ``quiet`` s."""
        data = b""
        while True:
            chunk = self.read_some(quiet)
            if not chunk:
                return data
            data += chunk

    def __enter__(self) -> "_ByteChannel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LibvirtConsole(_ByteChannel):
    """A domain console opened with virDomainOpenConsole."""

    def __init__(self, conn: libvirt.virConnect, domain: libvirt.virDomain,
                 device: Optional[str] = None, force: bool = False) -> None:
        self._conn = conn
        self._stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        flags = libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else libvirt.VIR_DOMAIN_CONSOLE_SAFE
        domain.openConsole(device, self._stream, flags)
        self._closed = False

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 10
        while view:
            sent = self._stream.send(bytes(view))
            if sent == -2:
                if time.monotonic() > deadline:
                    raise TimeoutError("console stream does not accept data")
                time.sleep(0.01)
                continue
            view = view[sent:]

    def read_some(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            data = self._stream.recv(65536)
            if data == -2:
                # Without an event loop nothing reads the connection's socket
                # for a non-blocking stream; any RPC call does, and queues the
                # stream data that arrived in the meantime.
                self._conn.getLibVersion()
                data = self._stream.recv(65536)
            if data == -2:
                if time.monotonic() >= deadline:
                    return b""
                time.sleep(0.02)
                continue
            if data == b"":
                raise EOFError("console stream closed")
            return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.abort()
        except libvirt.libvirtError:
            pass


#: QEMU 7.2's TLS chardev reads a TLS record only as far as the serial FIFO
#: has room at that moment (14 bytes at most, fewer while the guest has not
#: drained it) and leaves the rest of the record inside GnuTLS, where nothing
#: looks until more bytes arrive on the socket: a 40-byte write shows 14
#: bytes in the guest and the other 26 only after the next write, and even
#: 14-byte records stall when they meet a half-full FIFO.  One-byte records
#: are always consumed whole, so that is what the lab's client sends.
QEMU_TLS_CHARDEV_RECORD = 1


class TlsSerial(_ByteChannel):
    """A TLS client of a guest's TLS TCP chardev.

    ``send`` cuts data into TLS records of ``record_size`` bytes (see
    :data:`QEMU_TLS_CHARDEV_RECORD`); pass ``record_size=None`` to send
    each call as one write.
    """

    def __init__(self, port: int, context: ssl.SSLContext, host: str = "127.0.0.1",
                 timeout: float = 10.0,
                 record_size: Optional[int] = QEMU_TLS_CHARDEV_RECORD) -> None:
        self.record_size = record_size
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            self.sock = context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise

    def send(self, data: bytes) -> None:
        if not self.record_size:
            self.sock.sendall(data)
            return
        for start in range(0, len(data), self.record_size):
            self.sock.sendall(data[start:start + self.record_size])

    def read_some(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return b""
        if not data:
            raise EOFError("TLS serial closed")
        return data

    def close(self) -> None:
        self.sock.close()
