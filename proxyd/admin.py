"""The master's admin listener: ``GET /metrics`` (Prometheus text) and ``GET /healthz``.

Plain HTTP/1.0-style exchanges (one request, then close) on a loopback
address by default; the requests are tiny and answered from memory, so the
master's loop is never held up by them.
"""

import asyncio
import socket
from http import HTTPStatus
from typing import Callable, Tuple

from resolverd.metrics import CONTENT_TYPE

MAX_REQUEST = 8192
READ_TIMEOUT = 5.0

Page = Tuple[int, str, str]  # status, content type, body


class AdminServer:
    def __init__(self, metrics_page: Callable[[], str], health: Callable[[], Tuple[bool, str]]) -> None:
        self._metrics_page = metrics_page
        self._health = health

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            status, content_type, body = self.answer(head)
        except asyncio.LimitOverrunError:
            status, content_type, body = 431, "text/plain", "request header too large\n"
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        payload = body.encode()
        writer.write(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    def answer(self, head: bytes) -> Page:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "text/plain", "bad request\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method != "GET":
            return 405, "text/plain", "only GET\n"
        if target == "/metrics":
            return 200, CONTENT_TYPE, self._metrics_page()
        if target == "/healthz":
            healthy, text = self._health()
            return (200 if healthy else 503), "text/plain", text + "\n"
        return 404, "text/plain", "not found: try /metrics or /healthz\n"


async def serve(server: AdminServer, sock: socket.socket) -> asyncio.AbstractServer:
    return await asyncio.start_server(server.handle, sock=sock, limit=MAX_REQUEST)
