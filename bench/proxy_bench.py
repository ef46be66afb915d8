"""Measure proxyd against a direct TLS connection to the same backend, on loopback.

    .venv/bin/python bench/proxy_bench.py [--quick] [--workers N]

It makes a throwaway PKI (resolveradm's own code), starts a helper process
with a TLS backend (mutual TLS, like QEMU's) and a token resolver that
answers resolverd's JSON for three tokens (echo, sink, source), starts
proxyd, and prints one table: single-stream throughput each way, round-trip
latency of 64-byte messages with 1 and with 100 active sessions, new
sessions per second with set-up time, PSS per idle channel, and CPU seconds
per GB relayed.  The stand-in resolver keeps the numbers about the proxy;
comparing with websockify and a live resolverd is issue 8's full benchmark.
"""

import argparse
import asyncio
import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import psutil
import requests
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from resolveradm import pki  # noqa: E402
from resolverd import tls  # noqa: E402

CHUNK = 64 * 1024
COUNT = struct.Struct("!Q")


# -- the helper process: backend and resolver ----------------------------------------------------

class Backend(asyncio.Protocol):
    """echo: sends back what it gets; sink: reads a length, swallows that much, answers 8 bytes;
    source: reads a length, sends that many bytes."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.buffer = b""
        self.remaining: Optional[int] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.mode == "echo":
            self.transport.write(data)
            return
        if self.remaining is None:
            self.buffer += data
            if len(self.buffer) < COUNT.size:
                return
            (self.remaining,), data = COUNT.unpack(self.buffer[:COUNT.size]), self.buffer[COUNT.size:]
            if self.mode == "source":
                asyncio.get_running_loop().create_task(self.stream(self.remaining))
                return
        self.remaining -= len(data)
        if self.remaining <= 0:
            self.transport.write(b"received")
            self.remaining = None

    async def stream(self, size: int) -> None:
        block = b"\0" * CHUNK
        while size > 0:
            self.transport.write(block[:min(size, CHUNK)])
            size -= CHUNK
            if self.transport.get_write_buffer_size() > 4 * CHUNK:
                await asyncio.sleep(0)
                while self.transport.get_write_buffer_size() > CHUNK:
                    await asyncio.sleep(0.0005)
        self.remaining = None


def serve(directory: Path) -> None:
    """The helper process: prints a JSON line with the ports, serves until killed."""
    context = tls.server_context(directory / "qemu" / "server-cert.pem", directory / "qemu" / "server-key.pem",
                                 directory / "ca-cert.pem")

    async def backends() -> None:
        loop = asyncio.get_running_loop()
        ports = {}
        for mode in ("echo", "sink", "source"):
            server = await loop.create_server(lambda m=mode: Backend(m), "127.0.0.1", 0, ssl=context, backlog=1024)
            ports[mode] = server.sockets[0].getsockname()[1]
        resolver_port = start_resolver(directory, ports)
        print(json.dumps({"backends": ports, "resolver": resolver_port}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(backends())


def start_resolver(directory: Path, ports: Dict[str, int]) -> int:
    answers = {mode: json.dumps({"type": "serial", "address": f"127.0.0.1:{port}", "insecure": False,
                                 "tlsTunnel": False, "domainName": f"bench-{mode}"}).encode()
               for mode, port in ports.items()}

    class Handle(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = answers.get(self.path.rsplit("/", 1)[-1], b'{"error": "No token found"}')
            self.send_response(200 if body in answers.values() else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    server.socket = tls.server_context(directory / "resolverd-cert.pem", directory / "resolverd-key.pem",
                                      directory / "ca-cert.pem").wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


# -- the measuring side --------------------------------------------------------------------------

class Setup:
    def __init__(self, directory: Path, workers: int) -> None:
        self.directory = directory
        pki.make(pki.plan(directory, proxy_names=("localhost", "127.0.0.1"), resolver_names=("localhost",),
                          qemu_dir=directory / "qemu", qemu_names=("127.0.0.1",), qemu_group=None))
        self.helper = subprocess.Popen([sys.executable, __file__, "--serve", str(directory)], stdout=subprocess.PIPE,
                                       text=True)
        assert self.helper.stdout is not None
        ports = json.loads(self.helper.stdout.readline())
        self.backends: Dict[str, int] = ports["backends"]
        self.proxy_port, self.admin_port = free_port(), free_port()
        d = directory
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "proxyd", "--listen", f"127.0.0.1:{self.proxy_port}",
             "--tls-cert", str(d / "proxyd-cert.pem"), "--tls-key", str(d / "proxyd-key.pem"),
             "--resolver-uri", f"https://localhost:{ports['resolver']}/consoleresolver",
             "--resolver-cert", str(d / "proxyd-client-cert.pem"), "--resolver-key", str(d / "proxyd-client-key.pem"),
             "--resolver-ca", str(d / "ca-cert.pem"), "--connect-cert", str(d / "proxyd-client-cert.pem"),
             "--connect-key", str(d / "proxyd-client-key.pem"), "--connect-ca", str(d / "ca-cert.pem"),
             "--workers", str(workers), "--admin-listen", f"127.0.0.1:{self.admin_port}", "--log-level", "warning",
             "--drain-grace", "1"], cwd=REPO)
        deadline = time.monotonic() + 20
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError("proxyd did not start")
            time.sleep(0.05)
        self.client_tls = tls.client_context(d / "ca-cert.pem")
        self.backend_tls = tls.client_context(d / "ca-cert.pem", d / "proxyd-client-cert.pem",
                                              d / "proxyd-client-key.pem")

    def _healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.admin_port}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def proxy_processes(self) -> List[psutil.Process]:
        master = psutil.Process(self.proxy.pid)
        return [master] + master.children()

    def close(self) -> None:
        for process in (self.proxy, self.helper):
            process.send_signal(signal.SIGTERM)
            process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stream:
    """Send and receive bytes over a proxied websocket or a direct TLS connection."""

    @classmethod
    async def proxied(cls, setup: Setup, mode: str) -> "Stream":
        ws = await connect(f"wss://localhost:{setup.proxy_port}/websockify?token={mode}", ssl=setup.client_tls,
                           max_size=None, compression=None, ping_interval=None)
        stream = cls()
        stream.ws = ws
        return stream

    @classmethod
    async def direct(cls, setup: Setup, mode: str) -> "Stream":
        reader, writer = await asyncio.open_connection("127.0.0.1", setup.backends[mode], ssl=setup.backend_tls,
                                                       server_hostname="127.0.0.1", limit=1 << 20)
        stream = cls()
        stream.reader, stream.writer = reader, writer
        return stream

    ws = None
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending = b""

    async def send(self, data: bytes) -> None:
        if self.ws is not None:
            await self.ws.send(data)
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def receive(self, size: int) -> int:
        """Read ``size`` bytes (discarded); returns the count."""
        got = len(self.pending)
        self.pending = b""
        while got < size:
            chunk = await (self.ws.recv() if self.ws is not None else self.reader.read(1 << 20))
            if not chunk:
                raise ConnectionError("closed")
            got += len(chunk)
        return got

    async def exact(self, size: int) -> bytes:
        while len(self.pending) < size:
            chunk = await (self.ws.recv() if self.ws is not None else self.reader.read(1 << 20))
            if not chunk:
                raise ConnectionError("closed")
            self.pending += chunk
        data, self.pending = self.pending[:size], self.pending[size:]
        return data

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        else:
            self.writer.close()


async def upload(stream: Stream, size: int) -> float:
    block = b"\1" * CHUNK
    started = time.perf_counter()
    await stream.send(COUNT.pack(size))
    for _ in range(size // CHUNK):
        await stream.send(block)
    assert await stream.exact(8) == b"received"
    return size / (time.perf_counter() - started) / 1e6


async def download(stream: Stream, size: int) -> float:
    started = time.perf_counter()
    await stream.send(COUNT.pack(size))
    await stream.receive(size)
    return size / (time.perf_counter() - started) / 1e6


async def round_trips(stream: Stream, count: int) -> List[float]:
    message = b"p" * 64
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await stream.send(message)
        await stream.exact(64)
        times.append(time.perf_counter() - started)
    return times


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def latency(setup: Setup, proxied: bool, sessions: int, count: int) -> Tuple[float, float]:
    opener = Stream.proxied if proxied else Stream.direct
    streams = await asyncio.gather(*(opener(setup, "echo") for _ in range(sessions)))
    results = await asyncio.gather(*(round_trips(stream, count) for stream in streams))
    await asyncio.gather(*(stream.close() for stream in streams))
    everything = [t for result in results for t in result]
    return percentile(everything, 0.5) * 1e6, percentile(everything, 0.99) * 1e6


async def new_sessions(setup: Setup, seconds: float, concurrency: int) -> Tuple[float, float, float]:
    setups: List[float] = []
    deadline = time.perf_counter() + seconds

    async def one_after_another() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            stream = await Stream.proxied(setup, "echo")
            await stream.send(b"x")
            await stream.exact(1)
            setups.append(time.perf_counter() - started)
            await stream.close()

    began = time.perf_counter()
    await asyncio.gather(*(one_after_another() for _ in range(concurrency)))
    return len(setups) / (time.perf_counter() - began), percentile(setups, 0.5) * 1e3, percentile(setups, 0.99) * 1e3


async def idle_memory(setup: Setup, channels: int) -> float:
    def pss() -> int:
        return sum(process.memory_full_info().pss for process in setup.proxy_processes())
    before = pss()
    streams = []
    for start in range(0, channels, 100):
        streams += await asyncio.gather(*(Stream.proxied(setup, "echo") for _ in range(min(100, channels - start))))
    for stream in streams:
        await stream.send(b"x")
        await stream.exact(1)
    after = pss()
    await asyncio.gather(*(stream.close() for stream in streams))
    return (after - before) / channels / 1024


def cpu_seconds(setup: Setup) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in setup.proxy_processes())


async def measure(setup: Setup, quick: bool) -> List[Tuple[str, str, str, str]]:
    size = (64 if quick else 512) * 1024 * 1024
    rows = []
    for name, run in (("throughput client->backend (MB/s)", upload), ("throughput backend->client (MB/s)", download)):
        mode = "sink" if run is upload else "source"
        direct = await run(await Stream.direct(setup, mode), size)
        cpu = cpu_seconds(setup)
        proxied = await run(await Stream.proxied(setup, mode), size)
        cpu_per_gb = (cpu_seconds(setup) - cpu) / (size / 1e9)
        rows.append((name, f"{proxied:.0f}", f"{direct:.0f}", f"{proxied / direct:.0%}"))
        rows.append((f"  proxyd CPU s/GB ({mode})", f"{cpu_per_gb:.2f}", "", ""))
    for sessions in (1, 100):
        count = 200 if quick else 2000
        if sessions == 100:
            count //= 10
        direct50, direct99 = await latency(setup, False, sessions, count)
        proxied50, proxied99 = await latency(setup, True, sessions, count)
        rows.append((f"RTT 64 B, {sessions} active, p50 (us)", f"{proxied50:.0f}", f"{direct50:.0f}",
                     f"+{proxied50 - direct50:.0f} us"))
        rows.append((f"RTT 64 B, {sessions} active, p99 (us)", f"{proxied99:.0f}", f"{direct99:.0f}",
                     f"+{proxied99 - direct99:.0f} us"))
    rate, p50, p99 = await new_sessions(setup, 5 if quick else 20, concurrency=16)
    rows.append(("new sessions per second", f"{rate:.0f}", "", f"set-up p50 {p50:.1f} ms, p99 {p99:.1f} ms"))
    channels = 500 if quick else 2000
    rows.append((f"PSS per idle channel, {channels} open (KiB)", f"{await idle_memory(setup, channels):.0f}", "", ""))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller transfers and counts (under a minute)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve))
        return 0
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as directory:
        setup = Setup(Path(directory), args.workers)
        try:
            rows = asyncio.run(measure(setup, args.quick))
        finally:
            setup.close()
    print(f"{'measure':44} {'proxyd':>10} {'direct':>10}  ratio / note")
    for name, proxied, direct, note in rows:
        print(f"{name:44} {proxied:>10} {direct:>10}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
