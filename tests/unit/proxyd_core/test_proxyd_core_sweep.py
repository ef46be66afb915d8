"""The once-a-second look at a worker's sessions, over real relays on loopback socket pairs."""

import asyncio
import socket
import time
from typing import List, Tuple

from loopback_legs import leg_pair, until
from proxyd import sweep as sweep_module
from proxyd.metrics import WorkerMetrics
from proxyd.resolver import Console
from proxyd.session import Session
from proxyd.stream_leg import StreamLeg
from proxyd.sweep import sweep

CONSOLE = Console("serial", "127.0.0.1", 5000, insecure=False, tls_tunnel=False)


async def open_sessions(count: int, metrics: WorkerMetrics) -> Tuple[List[Session], List[socket.socket]]:
    """Relaying sessions, and the tenant ends of their connections."""
    sessions, tenants = [], []
    for _ in range(count):
        client, tenant = await leg_pair(StreamLeg)
        console, console_peer = await leg_pair()
        session = Session(client, console, CONSOLE, "tenant", metrics, lambda ended, peer=console_peer: peer.close())
        session.start("token-ref")
        sessions.append(session)
        tenants.append(tenant)
    return sessions, tenants


def test_a_sweep_looks_at_one_chunk_per_loop_iteration_and_counts_every_byte(monkeypatch):
    monkeypatch.setattr(sweep_module, "CHUNK", 3)

    async def scenario() -> None:
        metrics = WorkerMetrics()
        sessions, tenants = await open_sessions(7, metrics)
        for tenant in tenants:
            tenant.send(b"abcd")
        await until(lambda: all(session.to_console == 4 for session in sessions))
        done = asyncio.Event()
        sweep(sessions, time.monotonic(), idle_timeout=0, ping_interval=0, done=done.set)
        assert metrics.bytes[("serial", "to_console")] == 3 * 4  # the rest waits for the loop's next turns
        await asyncio.wait_for(done.wait(), 5)
        assert metrics.bytes[("serial", "to_console")] == 7 * 4
        tenants[0].send(b"more")
        await until(lambda: sessions[0].to_console == 8)
        sessions[0].end(1000, "done")  # what moved since the last sweep is counted at the end
        assert metrics.bytes[("serial", "to_console")] == 8 * 4
        for tenant in tenants:
            tenant.close()

    asyncio.run(scenario())


def test_a_session_without_console_data_for_the_idle_timeout_is_ended():
    async def scenario() -> None:
        metrics = WorkerMetrics()
        (quiet, busy), tenants = await open_sessions(2, metrics)
        tenants[1].send(b"typing")
        await until(lambda: busy.to_console == 6)
        done = asyncio.Event()
        sweep([quiet, busy], time.monotonic() + 10, idle_timeout=5, ping_interval=0, done=done.set)
        await asyncio.wait_for(done.wait(), 5)
        assert quiet.ended and not busy.ended
        assert metrics.sessions_open["serial"] == 1
        for tenant in tenants:
            tenant.close()

    asyncio.run(scenario())
