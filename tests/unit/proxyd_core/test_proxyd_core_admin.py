import asyncio

import pytest

from proxyd.admin import AdminServer


def server(healthy: bool = True) -> AdminServer:
    return AdminServer(lambda: "proxyd_workers 2\n", lambda: (healthy, "ok 2/2 workers" if healthy else "draining"))


@pytest.mark.parametrize("head, status, body", [
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, "proxyd_workers 2\n"),
    (b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", 200, "proxyd_workers 2\n"),
    (b"GET /healthz HTTP/1.1\r\n\r\n", 200, "ok 2/2 workers\n"),
    (b"POST /metrics HTTP/1.1\r\n\r\n", 405, "only GET\n"),
    (b"GET /other HTTP/1.1\r\n\r\n", 404, "not found: try /metrics or /healthz\n"),
    (b"garbage\r\n\r\n", 400, "bad request\n"),
    (b"GET /metrics SPDY/3\r\n\r\n", 400, "bad request\n"),
])
def test_answers(head, status, body):
    answer = server().answer(head)
    assert (answer[0], answer[2]) == (status, body)


def test_unhealthy_is_503():
    assert server(healthy=False).answer(b"GET /healthz HTTP/1.1\r\n\r\n")[0] == 503


def test_over_a_real_socket_and_oversized_header():
    async def scenario():
        admin = server()
        listener = await asyncio.start_server(admin.handle, "127.0.0.1", 0, limit=8192)
        port = listener.sockets[0].getsockname()[1]

        async def ask(raw: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            answer = await reader.read()
            writer.close()
            return answer

        ok = await ask(b"GET /metrics HTTP/1.1\r\n\r\n")
        huge = await ask(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        listener.close()
        return ok, huge

    ok, huge = asyncio.run(scenario())
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nproxyd_workers 2\n")
    assert b"Content-Type: text/plain; version=0.0.4" in ok
    assert huge.startswith(b"HTTP/1.1 431 ")
