"""The failed-token brake across workers, over real master <-> worker channels."""

import socket
from typing import Iterator, List, Tuple

import pytest

from proxyd import brake, channel
from proxyd.ratelimit import FailedAttempts

Pair = Tuple[socket.socket, socket.socket]


@pytest.fixture
def links() -> Iterator[List[Pair]]:
    """Two workers' channels: (master end, worker end) each."""
    pairs = [channel.pair(), channel.pair()]
    yield pairs
    for master_end, worker_end in pairs:
        master_end.close()
        worker_end.close()


def deliver(pairs: List[Pair], master: brake.MasterBrake, workers: List[brake.WorkerBrake]) -> None:
    """What the master's and the workers' event loops do with the brake messages waiting on the channels."""
    for master_end, _ in pairs:
        while (message := channel.receive(master_end)) is not None:
            master.on_message(message)
    for (_, worker_end), worker in zip(pairs, workers):
        while (message := channel.receive(worker_end)) is not None:
            worker.on_message(message)


def test_failures_on_two_workers_add_up_and_bar_the_address_on_both(links):
    master = brake.MasterBrake(FailedAttempts(burst=5, penalty=30), lambda: [m for m, _ in links])
    workers = [brake.WorkerBrake(worker_end) for _, worker_end in links]
    for attempt in range(4):
        workers[attempt % 2].failed("192.0.2.7")
    deliver(links, master, workers)
    assert all(worker.barred_for("192.0.2.7") == 0 for worker in workers)  # two each: under the burst of 5
    workers[0].failed("192.0.2.7")
    deliver(links, master, workers)
    assert all(25 < worker.barred_for("192.0.2.7") <= 30 for worker in workers)
    assert all(worker.barred_for("192.0.2.8") == 0 for worker in workers)


def test_malformed_messages_are_ignored(links):
    master = brake.MasterBrake(FailedAttempts(), lambda: [m for m, _ in links])
    worker = brake.WorkerBrake(links[0][1])
    master.on_message({"kind": brake.FAILED})
    worker.on_message({"kind": brake.BARRED, "address": "192.0.2.7", "seconds": "forever"})
    assert worker.barred_for("192.0.2.7") == 0
