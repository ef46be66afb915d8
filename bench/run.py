#!/usr/bin/env python3
"""Benchmark proxyd against websockify and a direct TLS connection, on loopback, and print one table.

Run as root from the repository (it starts the test lab's private libvirtd)::

    .venv/bin/python -m pip install -e '.[bench]'     # websockify, for its column
    .venv/bin/python bench/run.py [--quick|--smoke] [--backend echo|qemu-vnc] [--workers N]
                                  [--targets proxyd,websockify,direct]
                                  [--sections throughput,aggregate,latency,sessions,memory]

What it starts, all on this machine:

- the lab (tests/lab): a throwaway PKI, a private libvirtd and one paused
  guest with a TLS serial chardev, enabled like ``resolveradm enable`` does;
  its console's metadata carries ``host=127.0.0.2``, so the live resolverd
  answers ``127.0.0.2:<the chardev's port>`` for its token;
- a TLS backend on exactly that address (mutual TLS like QEMU's: the
  client certificate is checked when one is offered): after a one-byte mode
  it echoes (``e``), swallows a counted upload (``k``) or streams a counted
  download (``s``);
- resolverd (gunicorn, mTLS) watching the private libvirtd: every proxyd
  session is looked up live;
- proxyd with its default settings (``--workers`` aside), and websockify
  (``--ssl-only --ssl-target`` with a TokenFile naming the same backend).

The client speaks websocket itself (binary frames, a fixed mask, the
upgrade by hand), so the client costs the same for both proxies and about
as little as a plain TLS client: what differs between the columns is the
proxy.  Client and backend run on uvloop, so that they leave the proxies
as much of the shared CPUs as they can (QEMU, the real backend, is C).  What is measured:

- throughput of one stream each way, and of ``--streams`` at once;
- round trips of 64-byte messages: one session back to back, then
  ``--active`` sessions each sending one every ``--interval`` ms (a rate
  this machine's Python client keeps up with: at 20 ms even the direct
  column queues); the full run splits each into five turns per column,
  the columns taking turns with every column's sessions open, and pools
  each column's round trips;
- new sessions per second from ``--concurrency`` clients that each open a
  session (TLS, upgrade, live resolverd look-up, backend TLS), see the first
  echo and close, with the set-up time's p50 and p99;
- PSS of all the server's processes with idle channels open (websockify
  forks a process per connection, so it gets fewer and a per-channel figure);
- the server's CPU seconds per GB, per round trip and per session set-up,
  which depend less on what else the machine runs than the rates do.

``--backend qemu-vnc`` measures against the lab guest's real QEMU VNC server
instead (VeNCrypt X509None, as proxyd reaches it; bench/vnc_client.py):
whole-screen raw updates (paced by QEMU's refresh timer, so they show
whether proxyd holds the screen back rather than what it can carry), round
trips that QEMU answers at once (SetEncodings naming its extended key event
pseudo-encoding) with 1 and 10 sessions (QEMU takes 32 VNC clients at most),
and new sessions up to ServerInit one at a time (QEMU listens with a
backlog of 1).  websockify has no column there: its
``--ssl-target`` starts TLS on connect, QEMU's VeNCrypt after RFB security.

Everything shares the machine's CPUs; the load average is printed with the
table.  ``--quick`` (under two minutes) and ``--smoke`` (seconds, for the
test that the script works) shrink every part.
"""

import argparse
import asyncio
import os
import random
import resource
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

import psutil
import uvloop

import vnc_client

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

BACKEND_HOST = "127.0.0.2"  # the guest's chardev listens on 127.0.0.1:PORT, the backend on this:PORT
CHUNK = 64 * 1024
COUNT = struct.Struct("!Q")
ECHO, SINK, SOURCE = b"e", b"k", b"s"
PING = b"p" * 64
WEBSOCKIFY_VENCRYPT = ("websockify is not measured against QEMU's VNC: its --ssl-target starts TLS on connect, "
                       "QEMU's VeNCrypt after the RFB security handshake")
WEBSOCKIFY_HINT = "websockify is not installed: .venv/bin/python -m pip install -e '.[bench]'"


def raise_file_limit(wanted: int = 65536) -> None:
    """Children inherit it: 10,000 channels are 10,000 descriptors here, 20,000 in proxyd, 10,000 in the backend."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, soft), max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Client and backend read into one buffer per process, as proxyd's legs do: asyncio's default path would
# allocate 256 KiB per TLS record, which glibc serves with a fresh mapping in some heap states, and the
# direct column then ran at 800 or 1,500 MB/s by the luck of the heap.
INBOX = memoryview(bytearray(256 * 1024))


# -- the backend (a subprocess) ------------------------------------------------------------------

class Backend(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.mode: Optional[bytes] = None
        self.head = b""
        self.remaining = 0
        self.counting = False
        self.to_send = 0
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=4 * CHUNK, low=CHUNK)

    def get_buffer(self, sizehint: int) -> memoryview:
        return INBOX

    def buffer_updated(self, nbytes: int) -> None:
        data = INBOX[:nbytes]
        if self.mode is None:
            self.mode, data = bytes(data[:1]), data[1:]
        if self.mode == ECHO:
            if data:
                self.transport.write(bytes(data))
            return
        if not self.counting:
            self.head += data
            if len(self.head) < COUNT.size:
                return
            (size,), data, self.head = COUNT.unpack(self.head[:COUNT.size]), self.head[COUNT.size:], b""
            self.counting = True
            if self.mode == SOURCE:
                self.to_send = size
                self.counting = False
                self._stream()
                return
            self.remaining = size
        self.remaining -= len(data)
        if self.remaining <= 0:
            self.counting = False
            self.transport.write(b"received")

    _block = b"\0" * CHUNK

    def _stream(self) -> None:
        while self.to_send > 0 and not self.paused:
            size = min(self.to_send, CHUNK)
            self.transport.write(self._block[:size])
            self.to_send -= size

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._stream()


def serve_backend(host: str, port: int, cert: str, key: str, ca: str) -> None:
    raise_file_limit()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_OPTIONAL  # proxyd and the direct client offer one; websockify cannot
    # websockify's --ssl-target selects on the raw socket, then makes a blocking SSL read: a TLS 1.3 session
    # ticket arriving alone wakes it up with no application data, and it blocks there for good.
    context.num_tickets = 0

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Backend, host, port, ssl=context, backlog=4096)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvloop.run(main())


# -- the client: plain TLS, or websocket over TLS -------------------------------------------------

MASK = b"\x00\x00\x00\x00"  # a fixed key: the server still unmasks every byte, the client need not mask


def ws_frame(data: bytes, opcode: int = 0x2) -> bytes:
    size = len(data)
    if size < 126:
        return bytes((0x80 | opcode, 0x80 | size)) + MASK
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 0xFE, size) + MASK
    return struct.pack("!BBQ", 0x80 | opcode, 0xFF, size) + MASK


class Closed(ConnectionError):
    pass


class Conn(asyncio.BufferedProtocol):
    """One client connection; with ``websocket`` its payload travels in binary frames (pings answered)."""

    def __init__(self, websocket: bool) -> None:
        self.websocket = websocket
        self.upgraded = not websocket
        self.raw = bytearray()  # websocket bytes not parsed yet
        self.data = bytearray()  # payload received
        self.waiter: "Optional[asyncio.Future[None]]" = None
        self.want = 0
        self.drained: "Optional[asyncio.Future[None]]" = None
        self.error: Optional[Exception] = None
        self.transport: Optional[asyncio.Transport] = None

    # asyncio.BufferedProtocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return INBOX

    def buffer_updated(self, nbytes: int) -> None:
        data = INBOX[:nbytes]
        if not self.websocket:
            self.data += data
        else:
            self.raw += data
            self._parse()
        if self.waiter is not None and (len(self.data) >= self.want or self.error) and not self.waiter.done():
            self.waiter.set_result(None)

    def _parse(self) -> None:
        raw = self.raw
        if not self.upgraded:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(raw[:end]).split(b"\r\n", 1)[0]
            del raw[:end + 4]
            if b" 101 " not in status + b" ":
                self.error = Closed(f"upgrade refused: {status.decode(errors='replace')}")
                return
            self.upgraded = True
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)
        while len(raw) >= 2:
            first, second = raw[0], raw[1]
            size, at = second & 0x7F, 2
            if size == 126:
                if len(raw) < 4:
                    return
                size, at = int.from_bytes(raw[2:4], "big"), 4
            elif size == 127:
                if len(raw) < 10:
                    return
                size, at = int.from_bytes(raw[2:10], "big"), 10
            if len(raw) < at + size:
                return
            opcode = first & 0x0F
            if opcode in (0x0, 0x1, 0x2):
                self.data += raw[at:at + size]
            elif opcode == 0x8:
                code = int.from_bytes(raw[at:at + 2], "big") if size >= 2 else None
                reason = bytes(raw[at + 2:at + size]).decode(errors="replace")
                self.error = Closed(f"closed by the proxy: {code} {reason}")
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(ws_frame(bytes(raw[at:at + size]), 0xA) + bytes(raw[at:at + size]))
            del raw[:at + size]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.error = self.error or Closed(f"connection lost: {exc}" if exc else "connection closed")
        for future in (self.waiter, self.drained):
            if future is not None and not future.done():
                future.set_result(None)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    # the client's side
    async def _wait(self, size: int) -> None:
        while len(self.data) < size:
            if self.error is not None:
                raise self.error
            self.want = size
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None

    async def upgrade(self, path: str, host: str) -> None:
        assert self.transport is not None
        self.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: binary\r\n\r\n".encode())
        while not self.upgraded:  # RFC 6455: no frame before the 101
            if self.error is not None:
                raise self.error
            self.want = 1 << 62
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        if self.websocket:
            self.transport.write(ws_frame(data) + data)
        else:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.drained is not None:
            await self.drained
        if self.error is not None:
            raise self.error

    async def exact(self, size: int) -> bytes:
        await self._wait(size)
        out = bytes(self.data[:size])
        del self.data[:size]
        return out

    async def discard(self, size: int) -> None:
        """Receive ``size`` bytes and forget them."""
        while size > 0:
            if not self.data:
                await self._wait(1)
            taken = min(size, len(self.data))
            del self.data[:taken]
            size -= taken

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- what is measured: proxyd, websockify, direct -------------------------------------------------

@dataclass
class Target:
    name: str
    host: str
    port: int
    websocket: bool
    context: ssl.SSLContext
    server_hostname: str
    path: str = ""
    process: Optional[subprocess.Popen] = None
    per_channel_limit: int = 10 ** 9  # websockify forks a process per connection
    open_batch: int = 50  # sessions opened at once
    notes: List[str] = field(default_factory=list)

    async def connect(self) -> Conn:
        """TLS to the target, and the websocket upgrade when it is a proxy."""
        _, conn = await asyncio.get_running_loop().create_connection(
            lambda: Conn(self.websocket), self.host, self.port, ssl=self.context, server_hostname=self.server_hostname)
        if self.websocket:
            await conn.upgrade(self.path, f"{self.server_hostname}:{self.port}")
        return conn

    async def open(self, mode: bytes) -> Conn:
        conn = await self.connect()
        conn.send(mode)
        return conn

    async def ready(self, mode: bytes = ECHO) -> Conn:
        """A channel that has proved both ways work (the first echo came back)."""
        conn = await self.open(mode)
        if mode == ECHO:
            conn.send(b"x")
            assert await conn.exact(1) == b"x"
        return conn

    round_trip_label = "64 B"

    async def round_trip(self, conn: Conn) -> None:
        conn.send(PING)
        await conn.exact(len(PING))

    def processes(self) -> List[psutil.Process]:
        if self.process is None:
            return []
        try:
            main = psutil.Process(self.process.pid)
            return [main] + main.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> float:
        """CPU seconds of the server's processes so far, reaped children included."""
        total = 0.0
        for index, process in enumerate(self.processes()):
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + (times.children_user + times.children_system if index == 0 else 0)
        return total

    def pss(self) -> int:
        total = 0
        for process in self.processes():
            try:
                total += process.memory_full_info().pss
            except psutil.NoSuchProcess:
                pass
        return total


@dataclass
class VncTarget(Target):
    """The lab's QEMU VNC server (VeNCrypt X509None), through proxyd or straight; a session is ready at ServerInit
    plus one ping."""

    screen: Optional[vnc_client.Screen] = None
    # QEMU's VNC server listens with a backlog of 1: connections that arrive together wait for the kernel to
    # retransmit its SYN-ACK (1 s, 2 s, ...), through proxyd or not.
    open_batch: int = 1

    async def ready(self, mode: bytes = b"") -> Conn:
        loop = asyncio.get_running_loop()
        if self.websocket:
            conn = await self.connect()
            self.screen = await vnc_client.open_through_proxy(conn)
        else:  # VeNCrypt starts in clear text
            _, conn = await loop.create_connection(lambda: Conn(False), self.host, self.port)

            async def start_tls() -> None:
                assert conn.transport is not None
                conn.transport = await loop.start_tls(conn.transport, conn, self.context,
                                                      server_hostname=self.server_hostname)
            self.screen = await vnc_client.open_vencrypt(conn, start_tls)
        await self.round_trip(conn)
        return conn

    round_trip_label = "VNC ping"

    async def round_trip(self, conn: Conn) -> None:
        await vnc_client.ping(conn)


async def screens(target: VncTarget, seconds: float) -> float:
    """Whole-screen raw updates back to back for ``seconds``: MB/s."""
    conn = await target.ready()
    assert target.screen is not None
    received = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        received += await vnc_client.update(conn, target.screen, target.screen.width, target.screen.height)
    elapsed = time.perf_counter() - started
    conn.close()
    return received / elapsed / 1e6


async def upload(target: Target, size: int, conn: Optional[Conn] = None) -> float:
    conn = conn or await target.ready(SINK)
    block = b"\1" * CHUNK
    started = time.perf_counter()
    conn.send(COUNT.pack(size))
    for offset in range(0, size, CHUNK):
        conn.send(block if size - offset >= CHUNK else block[:size - offset])
        await conn.drain()
    assert await conn.exact(8) == b"received"
    elapsed = time.perf_counter() - started
    conn.close()
    return size / elapsed / 1e6


async def download(target: Target, size: int, conn: Optional[Conn] = None) -> float:
    conn = conn or await target.ready(SOURCE)
    started = time.perf_counter()
    conn.send(COUNT.pack(size))
    await conn.discard(size)
    elapsed = time.perf_counter() - started
    conn.close()
    return size / elapsed / 1e6


async def aggregate(target: Target, run: Callable, streams: int, size: int) -> float:
    """All streams open first, then they move ``size`` bytes together: MB/s from the first byte to the last."""
    mode = SINK if run is upload else SOURCE
    conns: List[Conn] = []
    for start in range(0, streams, 50):
        conns += await asyncio.gather(*(target.ready(mode) for _ in range(min(50, streams - start))))
    started = time.perf_counter()
    await asyncio.gather(*(run(target, size // streams, conn) for conn in conns))
    return size // streams * streams / (time.perf_counter() - started) / 1e6


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def open_sessions(target: Target, sessions: int) -> List[Conn]:
    conns: List[Conn] = []
    for start in range(0, sessions, target.open_batch):
        conns += await asyncio.gather(*(target.ready() for _ in range(min(target.open_batch, sessions - start))))
    return conns


async def round_trips(target: Target, conns: List[Conn], seconds: float, interval: float) -> Tuple[List[float], float]:
    """Round trips (64-byte echoes, or pings through QEMU's VNC server) for ``seconds``, each session back to back
    or each every ``interval``: their times (s) and the server's CPU seconds meanwhile."""
    times: List[float] = []

    async def pinger(conn: Conn) -> None:
        deadline = time.perf_counter() + seconds
        due = time.perf_counter() + random.random() * interval  # a fixed schedule: sessions never fall into step
        while time.perf_counter() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += interval
            began = time.perf_counter()
            await target.round_trip(conn)
            times.append(time.perf_counter() - began)

    await asyncio.sleep(0.2)
    cpu = target.cpu()
    await asyncio.gather(*(pinger(conn) for conn in conns))
    return times, target.cpu() - cpu


async def new_sessions(target: Target, seconds: float, concurrency: int) -> Tuple[float, float, float, float]:
    """Open, one echo, close, by ``concurrency`` clients; sessions/s, set-up p50 and p99 (ms), server CPU ms each."""
    setups: List[float] = []
    failures: List[str] = []
    deadline = time.perf_counter() + seconds

    async def one_after_another() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                conn = await target.ready()
            except (ConnectionError, ssl.SSLError, OSError) as exc:
                failures.append(str(exc))
                await asyncio.sleep(0.01)
                continue
            setups.append(time.perf_counter() - began)
            conn.close()

    cpu = target.cpu()
    began = time.perf_counter()
    await asyncio.gather(*(one_after_another() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await asyncio.sleep(0.5)  # closes done, children reaped
    cpu_each = (target.cpu() - cpu) / max(1, len(setups)) * 1e3
    if not setups:
        raise RuntimeError(f"no session opened in {seconds:g} s" + (f": {failures[0]}" if failures else ""))
    if failures:
        target.notes.append(f"{len(failures)} failed set-ups, e.g. {failures[0]}")
    return len(setups) / elapsed, percentile(setups, 0.5) * 1e3, percentile(setups, 0.99) * 1e3, cpu_each


async def idle_channels(target: Target, channels: int) -> Tuple[float, float]:
    """PSS of the server with ``channels`` open idle channels: total (MiB) and per channel (KiB)."""
    before = target.pss()
    conns: List[Conn] = []
    try:
        for start in range(0, channels, 100):
            opened = await asyncio.gather(*(target.ready() for _ in range(min(100, channels - start))),
                                          return_exceptions=True)
            errors = [o for o in opened if isinstance(o, BaseException)]
            conns += [o for o in opened if isinstance(o, Conn)]
            if errors:
                raise RuntimeError(f"{target.name}: {len(errors)} of {channels} channels failed to open "
                                   f"after {len(conns)}: {errors[0]!r}")
        await asyncio.sleep(1.0)
        after = target.pss()
    finally:
        for conn in conns:
            conn.close()
    await asyncio.sleep(2.0 + channels / 5000)
    return (after - before) / 2 ** 20, (after - before) / channels / 1024


# -- setting it all up --------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def start(self) -> Dict[str, Target]:
        from lab import teardown
        from lab.consoles import console_spec, enable
        from lab.guests import GuestFactory, GuestImage
        from lab.proxyd import Proxyd
        from lab.resolverd import Resolverd
        from lab.standalone import start_lab
        from resolverd import metadata, tls

        self.teardown = teardown
        lab = start_lab()
        run_dir = self.run_dir = lab.run_dir
        pki, daemon, kind = lab.pki, lab.libvirtd, lab.domain_type
        factory = GuestFactory(daemon, GuestImage(run_dir / "image"), pki, run_dir / "disks", kind)
        teardown.register(factory.cleanup)
        echo = self.args.backend == "echo"
        target_class: type = Target if echo else VncTarget
        if echo:
            guest = factory(consoles={"tls-serial"}, wait=False)
            guest.domain.suspend()  # QEMU keeps its ports; the CPUs are left to the benchmark
            ordinal = next(n for kind_, n, device in metadata.consoles_of(guest.xml())
                           if kind_ == "serial" and device.get("type") == "tcp")
            (token,) = enable(daemon.connection(), guest, console_spec("serial", ordinal, host=BACKEND_HOST))
            host, port = BACKEND_HOST, guest.tls_serial_port
            assert port is not None
            self._start_backend(pki, port)
        else:
            guest = factory(consoles={"vnc"}, wait=False)
            guest.domain.suspend()  # the screen stays, QEMU's VNC server answers; the CPUs are left to the bench
            (token,) = enable(daemon.connection(), guest, console_spec("vnc"))
            host, port = "127.0.0.1", guest.vnc_port
            assert port is not None

        resolver = Resolverd(run_dir, pki, [daemon.uri], log_level="info")
        teardown.register(resolver.stop)
        resolver.start()
        if echo:
            answer = resolver.lookup(token)
            assert answer.status_code == 200 and answer.json()["address"] == f"{host}:{port}", answer.text

        client_tls = tls.client_context(pki.ca_cert)
        targets: Dict[str, Target] = {}
        wanted = self.args.targets
        if "proxyd" in wanted:
            proxy = Proxyd(run_dir, pki, resolver, "--log-level", "info", workers=self.args.workers).start()
            teardown.register(proxy.kill)
            targets["proxyd"] = target_class("proxyd", "127.0.0.1", proxy.port, True, client_tls, "localhost",
                                             f"/websockify?token={token}", proxy.process)
        if "websockify" in wanted and echo:  # qemu-vnc: see WEBSOCKIFY_VENCRYPT
            command = shutil.which("websockify", path=str(Path(sys.executable).parent)) or shutil.which("websockify")
            if command is None:
                print(WEBSOCKIFY_HINT, file=sys.stderr)
            else:
                targets["websockify"] = self._websockify(command, run_dir, pki, token, port, client_tls)
        if "direct" in wanted:
            direct_tls = tls.client_context(pki.ca_cert, pki.proxyd_qemu_client.cert, pki.proxyd_qemu_client.key)
            targets["direct"] = target_class("direct", host, port, False, direct_tls, host)
        return targets

    def _start_backend(self, pki, port: int) -> None:
        """The TLS echo/sink/source server on the guest chardev's port, at BACKEND_HOST."""
        backend_pair = pki.issue("bench-backend", server=True, sans=(BACKEND_HOST,))
        backend = subprocess.Popen([sys.executable, __file__, "--serve-backend", f"{BACKEND_HOST}:{port}",
                                    str(backend_pair.cert), str(backend_pair.key), str(pki.ca_cert)],
                                   stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.teardown.register(lambda: backend.poll() is None and (backend.kill(), backend.wait()))
        assert backend.stdout is not None and backend.stdout.readline().strip() == "ready"

    def _websockify(self, command: str, run_dir: Path, pki, token: str, port: int,
                    client_tls: ssl.SSLContext) -> Target:
        from lab.ports import free_port
        tokens = run_dir / "websockify-tokens"
        tokens.write_text(f"{token}: {BACKEND_HOST}:{port}\n")
        listen = free_port()
        environment = dict(os.environ, SSL_CERT_FILE=str(pki.ca_cert))  # --ssl-target verifies with the defaults
        environment.pop("SSL_CERT_DIR", None)
        with open(run_dir / "websockify.log", "ab") as log:
            process = subprocess.Popen(
                [command, "--cert", str(pki.proxyd_server.cert), "--key", str(pki.proxyd_server.key), "--ssl-only",
                 "--ssl-target", "--token-plugin", "TokenFile", "--token-source", str(tokens),
                 f"127.0.0.1:{listen}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environment,
                start_new_session=True)
        self.teardown.register(lambda: process.poll() is None and (os.killpg(process.pid, signal.SIGKILL),
                                                                  process.wait()))
        deadline = time.monotonic() + 20
        while not any(c.laddr.port == listen for c in psutil.Process(process.pid).net_connections("tcp")
                      if c.status == psutil.CONN_LISTEN):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"websockify did not start: {(run_dir / 'websockify.log').read_text()[-2000:]}")
            time.sleep(0.05)
        return Target("websockify", "127.0.0.1", listen, True, client_tls, "localhost", f"/websockify?token={token}",
                      process, per_channel_limit=self.args.websockify_channels)

    def close(self) -> None:
        if hasattr(self, "teardown"):
            self.teardown.run_all()


# -- the table ---------------------------------------------------------------------------------

class Table:
    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.rows: List[Tuple[str, Dict[str, str], str]] = []

    def add(self, measure: str, values: Dict[str, str], note: str = "") -> None:
        self.rows.append((measure, values, note))
        print(f"  {measure}: " + ", ".join(f"{k} {v}" for k, v in values.items()) + (f"  ({note})" if note else ""),
              file=sys.stderr, flush=True)

    def render(self) -> str:
        width = max(len(row[0]) for row in self.rows) + 1
        head = f"{'measure':{width}}" + "".join(f"{name:>12}" for name in self.names) + "  ratios / notes"
        lines = [head, "-" * len(head)]
        for measure, values, note in self.rows:
            lines.append(f"{measure:{width}}" + "".join(f"{values.get(name, ''):>12}" for name in self.names)
                         + (f"  {note}" if note else ""))
        return "\n".join(lines)


def ratios(values: Dict[str, Optional[float]]) -> str:
    proxy = values.get("proxyd")
    if not proxy:
        return ""
    return ", ".join(f"proxyd/{other} {proxy / values[other]:.{0 if proxy >= 0.1 * values[other] else 1}%}"
                     for other in ("direct", "websockify") if values.get(other))


def cells(values: Dict[str, Optional[float]], spec: str) -> Dict[str, str]:
    return {name: "failed" if value is None else format(value, spec) for name, value in values.items()}


async def guarded(target: Target, what: str, work: Awaitable, seconds: float) -> Optional[Any]:
    """The result, or None with a note on the target when it fails or takes longer than ``seconds``."""
    try:
        return await asyncio.wait_for(work, seconds)
    except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError, RuntimeError, AssertionError) as exc:
        target.notes.append(f"{what}: {type(exc).__name__}: {str(exc) or 'no answer in time'}")
        return None


@dataclass(frozen=True)
class Plan:
    """How much of everything a run does."""

    limit: float  # seconds before one measurement of one target counts as failed
    stream_mib: int  # single stream, each way
    aggregate_mib: int  # all streams together, each way
    rtt_seconds: float  # one session back to back
    active_seconds: float  # the active sessions
    sessions_seconds: float
    channels: Tuple[int, ...]
    websockify_channels: int  # websockify forks a process per connection: fewer
    repeats: int = 1  # turns per column: single streams (the median is shown) and round trips (pooled)


PLANS = {
    "full": Plan(300, 256, 512, 10, 15, 15, (2000, 10000), 500, repeats=5),
    "quick": Plan(30, 32, 64, 2, 3, 4, (500, 2000), 100),
    "smoke": Plan(60, 2, 4, 0.5, 1, 1, (20,), 20),
}


async def latency_in_turns(targets: Dict[str, Target], sessions: int, seconds: float, interval: float,
                           plan: Plan, what: str) -> Dict[str, Optional[Tuple[float, float, float]]]:
    """Round trips with every column's sessions open, the columns taking ``plan.repeats`` turns (so that the
    machine's other load hits them alike): p50 and p99 (us) of all of a column's round trips, and its server's
    CPU per round trip (us); None for a column that failed."""
    conns = {name: await guarded(target, f"{what}: opening", open_sessions(target, sessions), plan.limit)
             for name, target in targets.items()}
    samples: Dict[str, List[float]] = {name: [] for name in targets}
    cpu: Dict[str, float] = {name: 0.0 for name in targets}
    failed = {name for name, opened in conns.items() if opened is None}
    for _ in range(plan.repeats):
        for name, target in targets.items():
            if name in failed:
                continue
            result = await guarded(target, what, round_trips(target, conns[name], seconds / plan.repeats, interval),
                                   plan.limit)
            if result is None:
                failed.add(name)
            else:
                samples[name] += result[0]
                cpu[name] += result[1]
    for opened in conns.values():
        for conn in opened or ():
            conn.close()
    return {name: None if name in failed or not samples[name] else
            (percentile(samples[name], 0.5) * 1e6, percentile(samples[name], 0.99) * 1e6,
             cpu[name] / len(samples[name]) * 1e6)
            for name in targets}


async def measure(targets: Dict[str, Target], args: argparse.Namespace, plan: Plan) -> Table:
    table = Table(list(targets))
    sections = args.sections
    names = list(targets)
    limit = plan.limit
    cores = os.cpu_count() or 1
    qemu_vnc = args.backend == "qemu-vnc"
    round_trip_label = targets[names[0]].round_trip_label
    for name in names:  # warm up: the workers' first resolver connections, imports, caches
        for _ in range(4):
            conn = await guarded(targets[name], "warm-up", targets[name].ready(), limit)
            if conn is not None:
                conn.close()

    if "throughput" in sections and qemu_vnc:
        seconds = 2 * plan.rtt_seconds
        cpu_before = {name: targets[name].cpu() for name in names}
        rates = {name: await guarded(targets[name], "screen updates", screens(targets[name], seconds), limit)
                 for name in names}
        table.add("whole-screen raw updates backend->client (MB/s)", cells(rates, ".0f"), ratios(rates))
        per_gb = {name: (targets[name].cpu() - cpu_before[name]) / (rate * seconds / 1e3)
                  for name, rate in rates.items() if name != "direct" and rate}
        table.add("server CPU s per GB relayed", cells(per_gb, ".2f"), "screen updates")

    if "throughput" in sections and not qemu_vnc:
        size = plan.stream_mib * 2 ** 20
        cpu: Dict[str, float] = {}
        for label, run in (("client->backend", upload), ("backend->client", download)):
            rates: Dict[str, List[float]] = {name: [] for name in names}
            for _ in range(plan.repeats):  # the columns take turns: the machine's other load hits them alike
                for name in names:
                    before = targets[name].cpu()
                    rate = await guarded(targets[name], f"1 stream {label}", run(targets[name], size), limit)
                    if rate is not None:
                        rates[name].append(rate)
                    await asyncio.sleep(0.3)
                    cpu[name] = cpu.get(name, 0.0) + targets[name].cpu() - before
            values: Dict[str, Optional[float]] = {name: sorted(r)[len(r) // 2] if r else None
                                                  for name, r in rates.items()}
            table.add(f"1 stream {label} (MB/s)" + (f", median of {plan.repeats}" if plan.repeats > 1 else ""),
                      cells(values, ".0f"), ratios(values))
        per_gb: Dict[str, Optional[float]] = {name: cpu[name] / (2 * plan.repeats * size / 1e9)
                                              for name in names if name != "direct"}
        table.add("server CPU s per GB relayed", cells(per_gb, ".2f"),
                  "single streams, both ways" + (f"; websockify/proxyd {per_gb['websockify'] / per_gb['proxyd']:.1f}x"
                                                 if per_gb.get("websockify") and per_gb.get("proxyd") else ""))

    if "aggregate" in sections and not qemu_vnc:
        size = plan.aggregate_mib * 2 ** 20
        for label, run in (("client->backend", upload), ("backend->client", download)):
            values = {name: await guarded(targets[name], f"{args.streams} streams {label}",
                                          aggregate(targets[name], run, args.streams, size), limit)
                      for name in names}
            table.add(f"{args.streams} streams {label} (MB/s)", cells(values, ".0f"), ratios(values))

    if "latency" in sections:
        for sessions, interval, seconds in ((1, 0.0, plan.rtt_seconds),
                                            (args.active, args.interval / 1000, plan.active_seconds)):
            what = "1 session, back to back" if sessions == 1 else \
                f"{sessions} sessions, each every {args.interval:g} ms"
            results = await latency_in_turns(targets, sessions, seconds, interval, plan, f"RTT {what}")
            for index, label in ((0, "p50"), (1, "p99")):
                values = {name: None if result is None else result[index] for name, result in results.items()}
                direct = values.get("direct")
                note = ", ".join(f"{name} +{values[name] - direct:.0f}" for name in names
                                 if name != "direct" and values[name] is not None) + " us added" if direct else ""
                table.add(f"RTT {round_trip_label} {label}, {what} (us)", cells(values, ".0f"), note)
            table.add("  server CPU per round trip (us)",
                      cells({name: None if r is None else r[2] for name, r in results.items() if name != "direct"},
                            ".0f"),
                      f"{plan.repeats} turns of {seconds / plan.repeats:.1f} s per column" if plan.repeats > 1 else "")

    if "sessions" in sections:
        results = {name: await guarded(targets[name], "new sessions",
                                       new_sessions(targets[name], plan.sessions_seconds, args.concurrency), limit)
                   for name in names}
        column = {index: {name: None if r is None else r[index] for name, r in results.items()} for index in range(4)}
        table.add("new sessions per second", cells(column[0], ".0f"),
                  f"{args.concurrency} client{'s' if args.concurrency != 1 else ''} in a loop; {ratios(column[0])}")
        table.add("session set-up p50 (ms)", cells(column[1], ".1f"))
        table.add("session set-up p99 (ms)", cells(column[2], ".1f"))
        per_session = {k: v for k, v in column[3].items() if k != "direct"}
        table.add("  server CPU per session (ms)", cells(per_session, ".2f"),
                  f"so {cores} CPUs of its own would open {cores * 1000 / per_session['proxyd']:.0f}/s with proxyd"
                  if per_session.get("proxyd") else "")

    if "memory" in sections and not qemu_vnc:
        measured: Dict[Tuple[str, int], Tuple[float, float]] = {}
        for channels in args.channels or plan.channels:
            totals: Dict[str, str] = {}
            each: Dict[str, Optional[float]] = {}
            notes = []
            for name in names:
                if name == "direct":
                    continue
                count = min(channels, targets[name].per_channel_limit)
                if (name, count) not in measured:
                    result = await guarded(targets[name], f"{count} idle channels",
                                           idle_channels(targets[name], count), limit + count / 20)
                    if result is not None:
                        measured[(name, count)] = result
                total, each[name] = measured.get((name, count), (None, None))
                totals[name] = "failed" if total is None else "-" if count != channels else f"{total:.0f}"
                if count != channels:
                    notes.append(f"{name}: from {count} channels (a process each)")
            table.add(f"PSS, {channels} idle channels (MiB)", totals)
            table.add("  per channel (KiB)", cells(each, ".0f"),
                      "; ".join(filter(None, [ratios(each) if each.get("websockify") else ""] + notes)))
    return table


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs: the whole benchmark in under 2 minutes")
    parser.add_argument("--smoke", action="store_true", help="tiny runs that only prove every part works")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="proxyd --workers (default: its own default, one per CPU: %(default)s)")
    parser.add_argument("--targets", default="proxyd,websockify,direct", type=lambda s: s.split(","),
                        help="columns (default: %(default)s)")
    parser.add_argument("--backend", choices=("echo", "qemu-vnc"), default="echo",
                        help="echo: the TLS echo/sink server; qemu-vnc: the lab guest's QEMU VNC server with "
                             "VeNCrypt, proxyd and direct only (default: %(default)s)")
    parser.add_argument("--sections", type=lambda s: s.split(","),
                        help="what to measure (default: throughput,aggregate,latency,sessions,memory; "
                             "with qemu-vnc: throughput,latency,sessions)")
    parser.add_argument("--streams", type=int, default=None, help="concurrent streams for the aggregate (100)")
    parser.add_argument("--active", type=int, default=None,
                        help="active sessions for the second latency run (100; qemu-vnc: 10, QEMU's VNC server "
                             "takes 32 clients at most by default)")
    parser.add_argument("--interval", type=float, default=100.0,
                        help="ms between one active session's messages (default: %(default)s)")
    parser.add_argument("--concurrency", type=int,
                        help="clients opening sessions in a loop (default: 16; qemu-vnc: 1, QEMU listens with a "
                             "backlog of 1)")
    parser.add_argument("--channels", type=lambda s: [int(n) for n in s.split(",")], default=None,
                        help="idle channels to hold open for the memory figures (default: 2000,10000; "
                             "--quick: 500,2000)")
    parser.add_argument("--websockify-channels", type=int, default=None,
                        help="at most this many idle websockify channels (each is a process; default 500, "
                             "--quick 100)")
    parser.add_argument("--serve-backend", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_backend:
        where, cert, key, ca = args.serve_backend
        host, port = where.rsplit(":", 1)
        serve_backend(host, int(port), cert, key, ca)
        return 0
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.concurrency is None:
        args.concurrency = 1 if args.backend == "qemu-vnc" else 16
    if args.sections is None:
        args.sections = ["throughput", "latency", "sessions"] + ([] if args.backend == "qemu-vnc" else
                                                                   ["aggregate", "memory"])
    if args.websockify_channels is None:
        args.websockify_channels = plan.websockify_channels
    args.streams = args.streams or (10 if args.smoke else 100)
    args.active = args.active or (10 if args.smoke or args.backend == "qemu-vnc" else 100)
    if os.geteuid() != 0:
        parser.error("run as root: the lab starts a private libvirtd under its own account")
    raise_file_limit()
    bench = Bench(args)
    began = time.monotonic()
    try:
        targets = bench.start()
        load_before = os.getloadavg()
        table = uvloop.run(measure(targets, args, plan))
        load_after = os.getloadavg()
    finally:
        bench.close()
    print(table.render())
    for target in targets.values():
        for note in target.notes:
            print(f"note: {target.name}: {note}")
    if "websockify" in args.targets and "websockify" not in targets:
        print(f"note: {WEBSOCKIFY_HINT if args.backend == 'echo' else WEBSOCKIFY_VENCRYPT}")
    print(f"machine: {os.cpu_count()} CPUs shared by client, backend, resolverd and the proxy; load average "
          f"{' '.join(f'{v:.2f}' for v in load_before)} before, {' '.join(f'{v:.2f}' for v in load_after)} after; "
          f"proxyd --workers {args.workers}; {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
